"""Preflight, the reject budget and the run-end summary (issue 12, parts 1, 2 and 5), for real: headless
runs as a user types them, the embedded PostgreSQL, real SQLite files (a fitting sample, and its misfit
copy where every agent's gene is above INTEGER)."""

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import dagster as dg
import psycopg2
import pytest

from agent_migration.assets.verify import checks_for
from agent_migration.core.tables import AGENTS, SOURCE_TABLES, TARGET_TABLES
from agent_migration.ops.preflight import preflight_job
from agent_migration.resources import PostgresTarget
from agent_migration.sample import write_reject_heavy, write_sample
from agent_migration_tests.conftest import query, resources, run_migration

BIN = Path(sys.executable).parent
GENE = "agents.gene: 101 values above INTEGER's 2147483647"  # the tiny sample has 101 agents


def execute(job: str, cwd: Path, url: str, source: Path, *args: str, **env) -> subprocess.CompletedProcess:
    """`dagster job execute -m agent_migration -j JOB` as a user runs it, in `cwd`."""
    full = {
        k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "SQLITE_PATH", "MIGRATION_"))
    }
    full |= {"DAGSTER_HOME": str(cwd / "dagster_home"), "PATH": f"{BIN}:{full.get('PATH', '')}"}
    full |= {"DATABASE_URL": url, "SQLITE_PATH": str(source), **env}
    (cwd / "dagster_home").mkdir(exist_ok=True)
    cmd = [str(BIN / "dagster"), "job", "execute", "-m", "agent_migration", "-j", job, *args]
    return subprocess.run(cmd, cwd=cwd, env=full, capture_output=True, text=True, timeout=600)


def output(done: subprocess.CompletedProcess) -> str:
    return done.stdout + done.stderr


def objects(url: str) -> list:
    """Every table and every non-system schema but public: what a run that writes nothing leaves none of."""
    tables = query(
        url,
        "SELECT schemaname, tablename FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')",
    )
    schemas = query(
        url,
        "SELECT nspname FROM pg_namespace WHERE nspname NOT IN ('public', 'information_schema') "
        "AND nspname NOT LIKE 'pg\\_%'",
    )
    return tables + schemas


def sources(tmp_path: Path, extra: bool = False) -> tuple[Path, Path]:
    """A fitting tiny sample and its misfit copy (every agent's gene + 2**48); `extra`: both with a table
    and a column the plan does not carry."""
    fit, misfit = tmp_path / "fit.sqlite", tmp_path / "misfit.sqlite"
    write_sample(fit, scale="tiny", seed=3)
    if extra:
        conn = sqlite3.connect(fit)
        with conn:
            conn.execute("ALTER TABLE agents ADD COLUMN nickname TEXT")
            conn.execute("CREATE TABLE app_settings (k TEXT, v TEXT)")
        conn.close()
    write_reject_heavy(fit, misfit)
    return fit, misfit


LEFT_BEHIND = "table app_settings, column agents.nickname"


def last_info(text: str) -> list[str]:
    """The lines from the last INFO event on (a message of several lines included)."""
    lines = text.splitlines()
    start = max(i for i, line in enumerate(lines) if " - INFO - " in line)
    return [line for line in lines[start:] if not line.startswith("Error: Run ")]


def table_row(lines: list[str], name: str) -> list[str]:
    return next(line.split() for line in lines if line.split()[:1] == [name])


def test_preflight_on_a_fitting_source_exits_0_and_writes_nothing(tmp_path, pg_url):
    fit, _ = sources(tmp_path, extra=True)
    done = execute("preflight", tmp_path, pg_url, fit)
    assert done.returncode == 0, output(done)[-4000:]
    assert objects(pg_url) == [], "not a table, not a schema"
    summary = last_info(output(done))
    assert "preflight_summary - preflight: what migrate would do" in summary[0]
    assert summary[1].split()[:4] == ["table", "source", "rows", "would"]
    assert table_row(summary, "agents")[1:3] == ["101", "82"]  # source rows, would load
    assert "migrate would succeed" in summary
    assert f"not carried by the plan (left behind): {LEFT_BEHIND}" in summary
    reasons = next(line for line in summary if line.startswith("agents: "))  # top reasons, with a sample row
    assert "agents.energy: breaks CHECK (energy >= 0 AND energy <= 100) (2 rows, e.g. key " in reasons
    assert any("agents.power (INTEGER): min 42, max 3000000000" in line for line in summary)
    assert summary[-1].endswith("FROM migration.rejected_rows ORDER BY 1, 2;")
    assert " - DEBUG - " not in output(done), "the headless default shows INFO and above"


def test_preflight_and_migrate_refuse_a_misfit_source_naming_agents_gene(tmp_path, pg_url):
    _, misfit = sources(tmp_path)
    pre = execute("preflight", tmp_path, pg_url, misfit)
    assert pre.returncode != 0
    summary = last_info(output(pre))
    assert table_row(summary, "agents")[1:5] == ["101", "0", "101", "100.0%"]
    assert "verdict: the ERROR line that follows" in summary
    # The verdict once, as the run's ERROR line (no trace: a refusal is no crash).
    errors = [line for line in output(pre).splitlines() if " - ERROR - " in line and "migrate would fail: " in line]
    assert len(errors) == 1, errors
    verdict = errors[0].split(" - preflight_summary - ", 1)[1]
    assert verdict.startswith(
        f"migrate would fail: reject budget exceeded: agents: 101 of 101 source rows would be rejected (100.0%): {GENE}"
    )
    assert (
        "chat_messages: 209 of 210 source rows would be rejected (99.5%), because 101 of 101 agents are rejected"
        in verdict
    )
    assert "agents.gene (INTEGER): min 281474976710656" in output(pre)
    migrate = execute("migrate", tmp_path, pg_url, misfit)
    assert migrate.returncode != 0
    text = output(migrate)
    assert (
        f"reject budget exceeded: agents: 101 of 101 source rows would be rejected (100.0%): {GENE}" in text
    )
    assert "MIGRATION_MAX_REJECT_SHARE=1" in text and "max_reject_share" in text, (
        "says how to raise the budget"
    )
    assert table_row(text.splitlines(), "agents")[-1] == "OVER"
    assert objects(pg_url) == [], "a refused first load creates nothing"


def test_the_verdict_reaches_the_terminal_when_dagsters_stderr_copy_lags(tmp_path, pg_url):
    """Dagster copies a run's stderr back to the terminal by a `tail` it kills as the run ends
    (dagster-io/dagster#23336): on a loaded machine the last lines were lost, the verdict among them. Here
    GNU tail itself, made to poll every 30 s (as if the machine were slow), does that copy."""
    slow = tmp_path / "slow_tail"
    slow.mkdir()
    (slow / "tail").write_text('#!/bin/sh\nexec /usr/bin/tail ---disable-inotify -s 30 "$@"\n')
    (slow / "tail").chmod(0o755)
    _, misfit = sources(tmp_path)
    pre = execute("preflight", tmp_path, pg_url, misfit, PATH=f"{slow}:{BIN}:{os.environ['PATH']}")
    assert pre.returncode != 0
    text = output(pre)
    assert "preflight_summary - preflight: what migrate would do" in text, text[-3000:]
    assert "preflight_summary - migrate would fail: reject budget exceeded: agents: 101 of 101" in text


def test_a_resync_over_the_budget_leaves_the_target_as_it_was(tmp_path, pg_url):
    fit, misfit = sources(tmp_path)
    live = tmp_path / "live.sqlite"
    shutil.copy(fit, live)
    assert run_migration(live, pg_url, tmp_path / "first").success

    def state() -> dict:
        return {
            **{t.name: query(pg_url, f"SELECT count(*) FROM {t.name}") for t in TARGET_TABLES},
            "rejects": query(
                pg_url,
                "SELECT source_table, source_key, reason FROM migration.rejected_rows ORDER BY 1, 2, 3",
            ),
            "runs": query(pg_url, "SELECT run_id, finished_at FROM migration.runs ORDER BY 1"),
            "stats": query(pg_url, "SELECT * FROM migration.source_stats ORDER BY 1"),
        }

    before = state()
    shutil.copy(misfit, live)  # the app now stores 48-bit genes
    again = run_migration(live, pg_url, tmp_path / "second", raise_on_error=False)
    assert not again.success
    snapshot = again.asset_materializations_for_node("source_snapshot")[0].metadata
    assert snapshot["mode"].value == "change-only re-sync"
    (failure,) = [e for e in again.all_events if e.event_type_value == "STEP_FAILURE"]
    assert failure.step_key == "target_schema"
    message = str(failure.event_specific_data.error.message)
    assert f"agents: 101 of 101 source rows would be rejected (100.0%): {GENE}" in message
    assert "chat_messages: 209 of 210" in message, "a re-sync's share counts the rejects the target keeps"
    assert state() == before


def test_a_budget_of_1_publishes_the_misfit_source_and_the_run_ends_with_its_summary(tmp_path, pg_url):
    _, misfit = sources(tmp_path, extra=True)
    done = execute("migrate", tmp_path, pg_url, misfit, MIGRATION_MAX_REJECT_SHARE="1")
    assert done.returncode == 0, output(done)[-4000:]
    assert query(pg_url, "SELECT count(*) FROM agents") == [(0,)]
    rejected = query(pg_url, "SELECT reason FROM migration.rejected_rows WHERE source_table = 'agents'")
    assert len(rejected) == 101 and all(
        "agents.gene: overflows a PostgreSQL INTEGER" in r for (r,) in rejected
    )
    summary = last_info(output(done))
    assert "migration_report - migrate finished" in summary[0]
    assert summary[1].split() == [
        "table",
        "source",
        "rows",
        "loaded",
        "rejected",
        "inserted",
        "updated",
        "deleted",
        "checks",
        "ok/warn/fail",
    ]
    # source rows, loaded, rejected, inserted, updated, deleted, then every check of the table, counted:
    # the summary comes after all of them.
    agents = table_row(summary, "agents")
    assert agents[1:7] == ["101", "0", "101", "0", "0", "0"]
    passed, warned, failed = map(int, agents[7].split("/"))
    # every check of verify.py, and the sample of values_match_source (validate.py)
    assert (passed + warned + failed, warned, failed) == (len(checks_for(AGENTS)) + 1, 1, 0)
    for table in TARGET_TABLES:
        assert table_row(summary, table.name)
    assert summary[-2] == f"not carried by the plan (left behind in SQLite): {LEFT_BEHIND}"
    assert summary[-1].startswith("connect with: psql 'postgresql://")
    assert summary[-1].endswith(
        "the rejects: SELECT source_table, source_key, reason, payload FROM migration.rejected_rows ORDER BY 1, 2;"
    )
    assert " - DEBUG - " not in output(done)


def test_the_budget_and_the_log_level_as_run_config(tmp_path, pg_url):
    _, misfit = sources(tmp_path)
    config = tmp_path / "run.yaml"
    config.write_text(
        "resources: {target: {config: {max_reject_share: 1.0}}}\nloggers: {console: {config: {log_level: DEBUG}}}\n"
    )
    done = execute("migrate", tmp_path, pg_url, misfit, "-c", str(config))
    assert done.returncode == 0, output(done)[-4000:]
    assert " - DEBUG - " in output(done) and "RUN_SUCCESS" in output(done)
    assert query(pg_url, "SELECT count(*) FROM migration.rejected_rows WHERE source_table = 'agents'") == [
        (101,)
    ]


def test_a_bad_budget_setting_is_named(tmp_path, pg_url, monkeypatch):
    fit, _ = sources(tmp_path)
    monkeypatch.setenv("MIGRATION_MAX_REJECT_SHARE", "50%")
    result = run_migration(fit, pg_url, tmp_path, raise_on_error=False)
    assert not result.success
    messages = [
        str(e.event_specific_data.error.message)
        for e in result.all_events
        if e.event_type_value == "STEP_FAILURE"
    ]
    assert any(
        "MIGRATION_MAX_REJECT_SHARE must be a fraction between 0 and 1" in m and "'50%'" in m
        for m in messages
    )
    assert objects(pg_url) == []


def preflight(source: Path, url: str, tmp: Path, target: PostgresTarget | None = None):
    """The preflight job in process (metadata and checks as the UI shows them)."""
    tmp.mkdir(parents=True, exist_ok=True)
    res = resources(source, url, tmp)
    if target is not None:
        res["target"] = target
    with dg.instance_for_test(temp_dir=str(tmp)) as instance:
        return preflight_job.execute_in_process(resources=res, instance=instance, raise_on_error=False)


def test_preflight_shows_each_table_and_column_as_metadata_and_checks(tmp_path, pg_url):
    _, misfit = sources(tmp_path)
    result = preflight(misfit, pg_url, tmp_path)
    assert not result.success
    checks = {(e.asset_key.to_user_string(), e.check_name): e for e in result.get_asset_check_evaluations()}
    over = {k[0] for k, e in checks.items() if k[1] == "within_reject_budget" and not e.passed}
    assert over == {"preflight_agents", "preflight_chat_messages"}
    assert checks[("preflight_target", "target_ready")].passed
    meta = result.asset_materializations_for_node("preflight_agents")[0].metadata
    assert (meta["rows_would_load"].value, meta["rows_would_reject"].value) == (0, 101)
    gene = meta["columns"].value["agents.gene"]
    assert gene["target"] == "INTEGER" and gene["fits"] is False and gene["min"] >= 2**48
    created = meta["columns"].value["agents.created_at"]["formats"]
    assert created["YYYY-MM-DD HH:MM:SS"] > 0 and created["no accepted format"] >= 1
    assert sum(created.values()) + meta["columns"].value["agents.created_at"]["seen"].get("null", 0) == 101
    assert GENE in meta["reject_samples"].value and "| source_key |" in meta["reject_samples"].value
    assert "agents.gene | INTEGER" in meta["column_profile"].value
    assert query(pg_url, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == [(0,)]


def _another_shape(url: str) -> None:
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE agents (id TEXT PRIMARY KEY)")


def _cutover(url: str) -> None:
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("CREATE SCHEMA migration")
        cur.execute(
            "CREATE TABLE migration.cutover (cut_at TIMESTAMP NOT NULL DEFAULT now(), run_id TEXT NOT NULL, "
            "source_backup TEXT, row_counts JSONB NOT NULL)"
        )
        cur.execute("INSERT INTO migration.cutover (run_id, row_counts) VALUES ('r1', '{}')")


def _role_without_privileges(url: str) -> str:
    """A fresh login role that may connect but create nothing (PostgreSQL 15+ defaults)."""
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("DROP ROLE IF EXISTS preflight_reader; CREATE ROLE preflight_reader LOGIN")
        cur.execute("REVOKE TEMP ON DATABASE " + url.split("?")[0].rsplit("/", 1)[1] + " FROM PUBLIC")
    return url.replace("postgresql://postgres:", "postgresql://preflight_reader:", 1)


@pytest.mark.parametrize(
    ("prepare", "said"),
    [
        (_another_shape, "the target already holds app tables of another shape: agents.id is text"),
        (_cutover, "the cutover was recorded at"),
        (_role_without_privileges, "role preflight_reader cannot create the app tables"),
        (
            lambda url: "postgresql://nobody@127.0.0.1:9/none",
            "Cannot connect to PostgreSQL at 127.0.0.1:9/none",
        ),
    ],
    ids=["another_shape", "cutover", "privileges", "unreachable"],
)
def test_preflight_fails_saying_why_migrate_could_not_write_the_target(tmp_path, pg_url, prepare, said):
    fit, _ = sources(tmp_path)
    before = objects(pg_url)
    url = prepare(pg_url) or pg_url
    after_prepare = objects(pg_url)
    result = preflight(fit, url, tmp_path)
    assert not result.success
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert failure.step_key == "preflight_summary"
    message = str(failure.event_specific_data.error.message)
    assert "Failure: migrate would fail: " in message and said in message, message
    target_check = [e for e in result.get_asset_check_evaluations() if e.check_name == "target_ready"]
    assert [e.passed for e in target_check] == [False]
    # The failed step still records its verdict on its asset (yielded, not dropped with the failure).
    (summary,) = result.asset_materializations_for_node("preflight_summary")
    assert summary.metadata["verdict"].value == "migrate would fail"
    assert objects(pg_url) == after_prepare, "preflight wrote nothing"
    assert before == []
    if prepare is _role_without_privileges:
        assert "cannot create the schema migration (GRANT CREATE ON DATABASE" in message
        assert "cannot create temporary tables" in message


def test_migrate_runs_and_checks_are_unchanged_within_the_budget(tmp_path, pg_url):
    """Rejects within the budget behave as before: the messy sample publishes, its rejects recorded."""
    fit, _ = sources(tmp_path)
    result = run_migration(fit, pg_url, tmp_path)
    assert result.success
    meta = result.asset_materializations_for_node("target_schema")[0].metadata
    assert meta["reject_budget"].value == 0.5
    assert set(meta["reject_share_by_table"].value) == {t.source for t in SOURCE_TABLES}
    rejected = query(pg_url, "SELECT count(*) FROM migration.rejected_rows")[0][0]
    assert rejected == sum(
        e.metadata["rows_rejected"].value
        for e in result.get_asset_check_evaluations()
        if e.check_name == "rejected_rows"
    )
