"""The Dagster UI for real: `dagster dev` on the project, headless Chromium clicks "Materialize all".

Then PostgreSQL must hold the migration, the asset graph must show the lineage, the `agents` asset page
its row count, columns and column lineage; the graph's screenshot becomes `docs/asset-graph.png`.
"""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from playwright.sync_api import Page, expect, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from agent_migration.definitions import defs
from agent_migration.sample import write_sample
from agent_migration_tests.conftest import query
from agent_migration_tests.servers import free_port, graphql, start, stop, wait_until_up

pytestmark = pytest.mark.ui  # needs Debian's chromium: `.ci/run` installs it

CHROMIUM = "/usr/bin/chromium"  # Debian's package: Playwright's own browser download is impossible here
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "asset-graph.png"
TABLES = {"users", "agents", "user_balance", "payments", "chat_messages", "battles", "marketplace_listings"}
# One asset per group and stage: the source, its raw and clean frames, the derived users, a target, the report.
LINEAGE = ["source_snapshot", "raw_agents", "derived_users", "clean_agents", "agents", "migration_report"]
UI_TIMEOUT_MS = 60_000
RUN_TIMEOUT_S = 300
TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}

RUNS = "{ runsOrError { ... on Runs { results { runId status } } } }"
MATERIALIZED = """query ($runId: ID!) { logsForRun(runId: $runId) { ... on EventConnection { events {
  __typename ... on MaterializationEvent { assetKey { path } } } } } }"""
FAILURES = """query ($runId: ID!) { logsForRun(runId: $runId) { ... on EventConnection { events {
  __typename ... on ExecutionStepFailureEvent { stepKey error { message } } ... on RunFailureEvent { message }
} } } }"""


@pytest.fixture
def dagster_dev(tmp_path, pg_url):
    """`dagster dev` on the project, a tiny sample source and a fresh database; killed at the end."""
    work = tmp_path / "work"
    work.mkdir()
    sqlite_path = work / "db.sqlite"
    write_sample(sqlite_path, scale="tiny", seed=1)
    home = tmp_path / "dagster_home"
    home.mkdir()
    # No "Join the Dagster community" dialog over the graph, no telemetry calls.
    (home / "dagster.yaml").write_text("nux:\n  enabled: false\ntelemetry:\n  enabled: false\n")
    port = free_port()
    log = tmp_path / "dagster-dev.log"
    env = {**os.environ, "SQLITE_PATH": str(sqlite_path), "DATABASE_URL": pg_url, "DAGSTER_HOME": str(home)}
    env = {k: v for k, v in env.items() if k not in ("EXPORT_SQLITE_PATH", "MIGRATION_BACKUP_DIR")}
    dagster = Path(sys.executable).with_name("dagster")
    cmd = [str(dagster), "dev", "-m", "agent_migration", "-p", str(port), "-h", "127.0.0.1"]
    proc = start(cmd, work, env, log)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_up(base, proc, log)
        yield SimpleNamespace(url=base, pg_url=pg_url, log=log, work=work)
    finally:
        stop(proc)


@pytest.fixture
def page():
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            # 2x pixels: the screenshot stays sharp when the README's reader zooms in.
            page = browser.new_page(viewport={"width": 1600, "height": 1000}, device_scale_factor=2)
            page.set_default_timeout(UI_TIMEOUT_MS)  # the first page waits for the code location to load
            expect.set_options(timeout=UI_TIMEOUT_MS)
            yield page
        finally:
            browser.close()


def wait_for_run(server, short_id: str) -> dict:
    """The run "Materialize all" launched, once finished; its step failures in the message if it failed."""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while True:
        runs = graphql(server.url, RUNS)["runsOrError"]["results"]
        run = next((r for r in runs if r["runId"].startswith(short_id)), None)
        if run and run["status"] in TERMINAL:
            break
        assert time.monotonic() < deadline, f"run {short_id} not finished after {RUN_TIMEOUT_S} s: {runs}"
        time.sleep(1)
    if run["status"] != "SUCCESS":
        events = graphql(server.url, FAILURES, runId=run["runId"])["logsForRun"]["events"]
        failures = [
            f"{e.get('stepKey', 'run')}: {e['error']['message'] if e.get('error') else e.get('message')}"
            for e in events
            if e["__typename"] in ("ExecutionStepFailureEvent", "RunFailureEvent")
        ]
        pytest.fail(f"run {run['runId']} {run['status']}:\n" + "\n".join(failures))
    return run


def show_whole_graph(page: Page) -> None:
    """Every group expanded, top to bottom (the graph is wide, not tall), fitted to the window."""
    page.get_by_role("button", name="Hide navigation").click()
    page.locator("button", has=page.locator('[aria-label="panel_show_right"]')).click()  # the group tree
    settings = page.locator("button", has=page.locator('[aria-label="settings"]')).last  # the graph's
    choose(page, settings, "vertical orientation")
    # Expanding changes the layout, and a new layout is fitted to the window's width.
    choose(page, settings, "Expand all groups")


def choose(page: Page, menu, item: str, tries: int = 5) -> None:
    """Open `menu` and click `item`; the graph re-renders while it lays out, which can detach an open menu."""
    for attempt in range(tries):
        menu.click()
        try:
            page.get_by_role("menuitem", name=item).click(timeout=10_000)
            break
        except PlaywrightTimeout:
            page.keyboard.press("Escape")
            if attempt == tries - 1:
                raise
    page.keyboard.press("Escape")


def test_materialize_all_in_the_ui(dagster_dev, page: Page):
    server = dagster_dev

    # The global asset lineage page holds "Materialize all"; nothing needs config, so it launches at once.
    page.goto(f"{server.url}/asset-groups")
    migrate = defs.resolve_job_def("migrate").asset_layer.selected_asset_keys
    button = page.get_by_role("button", name="Materialize all")
    expect(button).to_have_text(f"Materialize all ({len(migrate)})")  # the migration's assets, no others
    button.click()
    launched = page.get_by_text(re.compile(r"Launched run \w{8}"))  # a toast, with the run's short id
    expect(launched).to_be_visible()
    run = wait_for_run(server, launched.inner_text().split()[-1])

    page.goto(f"{server.url}/runs")
    run_link = page.get_by_role("link", name=f"run {run['runId'][:8]}")
    expect(page.locator("[data-index]", has=run_link)).to_contain_text("Success")  # its row, virtualized

    # "Materialize all" is the migration: exactly migrate's assets ran; no preflight pass, no rollback file.
    events = graphql(server.url, MATERIALIZED, runId=run["runId"])["logsForRun"]["events"]
    ran = {"/".join(e["assetKey"]["path"]) for e in events if e["__typename"] == "MaterializationEvent"}
    assert ran == {k.to_user_string() for k in migrate}, ran
    assert not any(name.startswith("preflight") or name == "rollback_file" for name in ran)
    assert not (server.work / ".migration" / "exports").exists(), "no rollback file was written"
    assert not (server.work / ".migration" / "preflight").exists(), "no preflight pass ran"

    tables = query(server.pg_url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    assert not TABLES - {name for (name,) in tables}, tables
    counts = {
        t: query(server.pg_url, f"SELECT count(*) FROM {t}")[0][0]
        for t in ("agents", "chat_messages", "migration.rejected_rows")
    }
    assert all(counts.values()), counts

    # The lineage, extract -> transform -> load -> verify, every group expanded.
    page.goto(f"{server.url}/asset-groups")
    show_whole_graph(page)
    graph = page.locator("svg")
    for name in LINEAGE:
        expect(graph.get_by_text(name, exact=True)).to_be_visible()
    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=SCREENSHOT, full_page=True)

    # The target table's page: row count, column schema, and column lineage (shown from its markdown
    # entry: OSS Dagster does not render `dagster/column_lineage`).
    page.goto(f"{server.url}/assets/agents")
    row_count = page.get_by_text("Row count", exact=True).locator("xpath=..")  # label and value share a box
    expect(row_count).to_contain_text(f"{counts['agents']:,}")
    expect(page.get_by_role("row").filter(has_text="owner_id").first).to_contain_text("from agents.owner")
    lineage = page.get_by_role("row").filter(has_text="column_lineage")
    expect(lineage).to_contain_text("derived_users.username, raw_agents.owner")
