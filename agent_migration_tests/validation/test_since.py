"""The cutover's proof since the last validate's ledger (`validation/since.py`): changed rows in full,
the rest by the ledger; a hand edit of an unchanged row refused; no ledger, a full validate."""

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import dagster as dg
import psycopg2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent_migration import jobs
from agent_migration.core.tables import SOURCE_TABLES
from agent_migration.postgres.ledger import digest_kind
from agent_migration.resources import PostgresTarget, SqliteSource
from agent_migration.sample import write_sample
from agent_migration.validation import since
from agent_migration.validation.ledger import spec
from agent_migration.validation.run import validate
from agent_migration_tests.conftest import ASSETS, CHECKS, create_database, query, resources, run_migration
from agent_migration_tests.dagster_layer.test_bad_input import _write
from agent_migration_tests.source.test_delta import _edit, _migrate, edits, rows


def _source(path: Path, tmp: Path) -> SqliteSource:
    return SqliteSource(path=str(path), backup_dir=str(tmp / "backups"))


def _prove(path: Path, url: str, tmp: Path):
    said: list[str] = []
    report = since.prove(_source(path, tmp), PostgresTarget(database_url=url), log=said.append)
    return report, said


def _validate(path: Path, url: str, tmp: Path, record: str | None = "validate-run-1"):
    return validate(_source(path, tmp), PostgresTarget(database_url=url), record=record)


def _change_some_rows(path: Path) -> None:
    """About one row in ten: agents' xp and a chat message's text changed, a payment gone, an agent new."""
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE agents SET xp = coalesce(xp, 0) + 1 WHERE rowid % 10 = 3")
        conn.execute("UPDATE chat_messages SET message = message || '!' WHERE rowid % 10 = 4")
        conn.execute("DELETE FROM payments WHERE rowid = (SELECT max(rowid) FROM payments)")
        conn.execute(
            "INSERT INTO agents (name, owner, traits, energy, xp, gene, rarity, forSale, price) "
            "VALUES ('newcomer', 'someone_new', '{}', 5, 1, 7, 'common', 1, 300)"
        )


@pytest.fixture
def validated(tmp_path, pg_url):
    path = tmp_path / "db.sqlite"
    write_sample(path, scale="tiny", seed=11)
    assert run_migration(path, pg_url, tmp_path / "first").success
    report = _validate(path, pg_url, tmp_path)
    assert report.ok, report.lines()
    return {"path": path, "url": pg_url, "tmp": tmp_path}


def test_a_full_validate_records_the_ledger_and_a_failing_one_keeps_the_last(validated):
    url = validated["url"]
    (recorded,) = query(url, "SELECT run_id, counts FROM migration.validate_ledger")
    assert recorded[0] == "validate-run-1"
    assert recorded[1]["agents"] == query(url, "SELECT count(*) FROM agents")[0][0] > 0
    assert query(url, "SELECT count(*) FROM migration.ledger_agents") == [(recorded[1]["agents"],)]
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("UPDATE agents SET xp = coalesce(xp, 0) + 1000 WHERE id = (SELECT min(id) FROM agents)")
    assert not _validate(validated["path"], url, validated["tmp"], record="validate-run-2").ok
    assert query(url, "SELECT run_id FROM migration.validate_ledger") == [("validate-run-1",)]


def test_after_changes_the_proof_re_proves_only_them_and_says_what_the_ledger_proved(validated):
    path, url, tmp = validated["path"], validated["url"], validated["tmp"]
    _change_some_rows(path)
    assert run_migration(path, url, tmp / "second").success
    report, said = _prove(path, url, tmp)
    assert report.ok, report.lines()
    assert report.mode.startswith("changes since validate run validate")
    (line,) = [s for s in said if "proven by its ledger" in s]
    proven = int(line.split("rows changed since")[1].split(": ")[1].split(" source rows")[0].replace(",", ""))
    total = sum(query(url, "SELECT sum(source_rows) FROM migration.source_stats")[0])
    assert 0 < proven < total / 2, line
    assert "full passes" not in line


def test_a_hand_edit_of_an_unchanged_row_is_named_and_the_cutover_records_nothing(validated):
    path, url, tmp = validated["path"], validated["url"], validated["tmp"]
    with sqlite3.connect(path) as conn:  # a change elsewhere, so the cutover has rows of its own to prove
        conn.execute("UPDATE chat_messages SET message = 'changed' WHERE rowid = 2")
    (agent,) = query(url, "SELECT min(id) FROM agents")[0]
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("UPDATE agents SET xp = coalesce(xp, 0) + 1000 WHERE id = %s", (agent,))
    report, _ = _prove(path, url, tmp)
    assert not report.ok
    assert any(line.startswith(f"agents id={agent} xp: source") for line in report.lines()), report.lines()
    defs = dg.Definitions(
        assets=ASSETS, asset_checks=CHECKS, jobs=[jobs.cutover], resources=resources(path, url, tmp / "first")
    )
    (tmp / "cut").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp / "cut")) as instance:
        done = defs.resolve_job_def("cutover").execute_in_process(instance=instance, raise_on_error=False)
        logs = [e.user_message for e in instance.all_logs(done.run_id)]
    assert not done.success
    failure = next(e for e in done.all_events if e.event_type_value == "STEP_FAILURE")
    assert "cutover refused" in failure.event_specific_data.error.message
    assert any(f"agents id={agent} xp: source" in m for m in logs)
    assert any("proven by its ledger" in m for m in logs)
    assert query(url, "SELECT count(*) FROM migration.cutover") == [(0,)]


def _cutover(path: Path, url: str, tmp: Path):
    defs = dg.Definitions(
        assets=ASSETS, asset_checks=CHECKS, jobs=[jobs.cutover], resources=resources(path, url, tmp / "first")
    )
    home = tmp / "cut"
    home.mkdir(exist_ok=True)
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        return defs.resolve_job_def("cutover").execute_in_process(instance=instance, raise_on_error=False)


def test_a_check_this_cutover_run_failed_refuses_it_by_name(validated):
    path, url, tmp = validated["path"], validated["url"], validated["tmp"]
    with psycopg2.connect(url) as conn, conn.cursor() as cur:  # an active listing of an agent not for sale
        cur.execute(
            "INSERT INTO marketplace_listings (agent_id, seller_id, price, status) "
            "SELECT id, owner_id, 5, 'active' FROM agents WHERE NOT for_sale AND owner_id IS NOT NULL LIMIT 1"
        )
        assert cur.rowcount == 1
    done = _cutover(path, url, tmp)
    assert not done.success
    failure = next(e for e in done.all_events if e.event_type_value == "STEP_FAILURE")
    message = failure.event_specific_data.error.message
    assert "cutover refused: checks fail: marketplace_listings.listings_follow_agents" in message
    assert query(url, "SELECT count(*) FROM migration.cutover") == [(0,)]


def test_a_cutover_after_a_validate_and_changes_is_recorded(validated):
    path, url, tmp = validated["path"], validated["url"], validated["tmp"]
    _change_some_rows(path)
    done = _cutover(path, url, tmp)
    assert done.success
    (report,) = done.asset_materializations_for_node("migration_report")
    assert "proven by its ledger" in report.metadata["validated"].value
    assert query(url, "SELECT count(*) FROM migration.cutover") == [(1,)]


def test_without_a_ledger_the_proof_is_the_full_validate_and_says_so(tmp_path, pg_url):
    path = tmp_path / "db.sqlite"
    write_sample(path, scale="tiny", seed=5)
    assert run_migration(path, pg_url, tmp_path / "first").success
    report, said = _prove(path, pg_url, tmp_path)
    assert report.ok and report.mode == "full"
    assert any("no validate has recorded a ledger" in s and "run validate while the app still writes" in s for s in said)


def test_a_ledger_of_other_specs_or_without_its_snapshot_is_not_used_and_the_log_says_why(validated):
    path, url, tmp = validated["path"], validated["url"], validated["tmp"]
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("UPDATE migration.validate_ledger SET spec = 'an older version'")
    report, said = _prove(path, url, tmp)
    assert report.ok and report.mode == "full"
    assert any("recorded under other table specs" in s and "validated in full" in s for s in said), said
    (pinned,) = query(url, "SELECT snapshot FROM migration.validate_ledger")[0]
    assert Path(pinned).parent.name == "validated"
    Path(pinned).unlink()
    _validate(path, url, tmp, record=None)  # a validate without a record leaves the ledger alone
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("UPDATE migration.validate_ledger SET spec = %s", (_spec(url),))
    report, said = _prove(path, url, tmp)
    assert report.ok and report.mode == "full"
    assert any(f"proved is gone ({pinned})" in s for s in said), said


def _spec(url: str) -> str:
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        return spec(digest_kind(cur))


KILL = """
import sys
from agent_migration.resources import PostgresTarget, SqliteSource
from agent_migration.validation.run import validate
validate(SqliteSource(path=sys.argv[1], backup_dir=sys.argv[2]), PostgresTarget(database_url=sys.argv[3]), record="killed")
"""


def test_a_validate_killed_while_recording_its_ledger_leaves_the_last_one(validated):
    path, url, tmp = validated["path"], validated["url"], validated["tmp"]
    env = {**os.environ, "MIGRATION_FAULT_AT": "ledger", "MIGRATION_FAULT_TESTING": "1"}
    killed = subprocess.run(
        [sys.executable, "-c", KILL, str(path), str(tmp / "backups"), url], env=env, capture_output=True
    )
    assert killed.returncode == -9, killed.stderr.decode()[-2000:]
    assert query(url, "SELECT run_id FROM migration.validate_ledger") == [("validate-run-1",)]
    _change_some_rows(path)
    assert run_migration(path, url, tmp / "second").success
    report, said = _prove(path, url, tmp)
    assert report.ok and any("validate run validate" in s for s in said), report.lines()


def _plant(url: str, where: int) -> None:
    """A hand edit in PostgreSQL: one of several kinds, picked by `where`."""
    edits = [
        "UPDATE agents SET xp = coalesce(xp, 0) + 1 WHERE id = (SELECT min(id) FROM agents)",
        "DELETE FROM chat_messages WHERE id = (SELECT max(id) FROM chat_messages)",
        "UPDATE migration.rejected_rows SET reason = reason || '.' WHERE ctid = (SELECT min(ctid) FROM migration.rejected_rows)",
        "INSERT INTO users (username) VALUES ('nobody at all')",
        "UPDATE user_balance SET coins = coalesce(coins, 0) + 1 WHERE user_id = (SELECT max(user_id) FROM user_balance)",
    ]
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(edits[where])


@pytest.mark.slow
@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    before=st.fixed_dictionaries({t.source: rows(t, 8) for t in SOURCE_TABLES}),
    changes=edits,
    planted=st.none() | st.integers(0, 4),
)
def test_the_proof_since_the_ledger_agrees_with_the_full_validate(
    before, changes, planted, tmp_path_factory, pg_admin_url, monkeypatch
):
    # Tiny tables change by more than the share a full pass takes over at: the row-level proof, always.
    monkeypatch.setattr(since, "FULL_SHARE", 1.0)
    tmp = tmp_path_factory.mktemp("since")
    path = tmp / "db.sqlite"
    _write(path, before)
    url = create_database(pg_admin_url)
    _migrate(tmp / "first", path, url)
    assert _validate(path, url, tmp).ok
    _edit(path, changes)
    _migrate(tmp / "second", path, url)
    if planted is not None:
        _plant(url, planted)
    full = _validate(path, url, tmp, record=None)
    proof, said = _prove(path, url, tmp)
    assert any("proven by its ledger" in s for s in said)
    assert proof.ok == full.ok, (proof.lines(), full.lines())
    assert set(proof.failing) == set(full.failing), (proof.lines(), full.lines())
