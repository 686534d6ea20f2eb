"""A first load on several connections (issue 16): the same target as one connection builds, published by
one swap; a run killed while copying, while building indexes or during the swap leaves the previous state,
and the next run succeeds."""

import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pytest

from agent_migration.core.contract import REJECT_SCHEMA, arrow_schema
from agent_migration.core.tables import SOURCE_TABLES
from agent_migration.postgres import faults, merge, staging
from agent_migration.resources import PostgresTarget
from agent_migration.sample import write_sample
from agent_migration_tests.conftest import query, resources, run_migration
from agent_migration_tests.dagster_layer.test_resync import content

BIN = Path(sys.executable).parent
CATALOG = {
    "indexes": "SELECT schemaname, tablename, indexname, indexdef FROM pg_indexes "
    "WHERE schemaname IN ('public', 'migration') ORDER BY 1, 2, 3",
    "constraints": "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint "
    "WHERE connamespace IN ('public'::regnamespace, 'migration'::regnamespace) ORDER BY 1, 2",
    "columns": "SELECT table_schema, table_name, ordinal_position, column_name, data_type, column_default, "
    "is_nullable FROM information_schema.columns WHERE table_schema IN ('public', 'migration') ORDER BY 1, 2, 3",
    "sequences": "SELECT sequencename, last_value FROM pg_sequences WHERE schemaname = 'public' ORDER BY 1",
    "schemas": "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'migration%' ORDER BY 1",
}


def catalog(url: str) -> dict[str, list]:
    return {name: query(url, statement) for name, statement in CATALOG.items()}


def migrate(source: Path, url: str, tmp: Path, connections: int):
    res = resources(source, url, tmp)
    res["target"] = PostgresTarget(database_url=url, connections=connections)
    return run_migration(source, url, tmp, resources_override=res)


@pytest.fixture(scope="module")
def messy_source(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("parallel") / "db.sqlite"
    write_sample(path, scale="small", seed=11)
    return path


def test_a_parallel_first_load_builds_the_same_target_as_one_connection(messy_source, new_database, tmp_path):
    serial, parallel = new_database(), new_database()
    one = migrate(messy_source, serial, tmp_path / "one", connections=1)
    many = migrate(messy_source, parallel, tmp_path / "many", connections=4)
    assert one.success and many.success
    assert content(parallel) == content(serial)
    assert catalog(parallel) == catalog(serial)
    meta = many.asset_materializations_for_node("publish")[0].metadata
    assert meta["connections"].value == 4 and {"copy", "indexes", "swap"} <= set(meta["load_phases_seconds"].value)
    assert one.asset_materializations_for_node("publish")[0].metadata["connections"].value == 1
    # The source tables were copied into the stage while they were cleaned; one connection copies in publish.
    # Their rejects too, into the stage's rejected_rows (a table of the messy source with none has a marker too).
    assert meta["copied_while_cleaning"].value == sorted(
        [t.name for t in SOURCE_TABLES] + [f"rejected_rows:{t.source}" for t in SOURCE_TABLES]
    )
    assert one.asset_materializations_for_node("publish")[0].metadata["copied_while_cleaning"].value == []
    # Every check held on the swapped tables; a re-sync after a parallel load merges as usual.
    assert all(e.passed for e in many.get_asset_check_evaluations() if e.severity.value == "ERROR")
    again = migrate(messy_source, parallel, tmp_path / "many", connections=4)
    assert again.success and content(parallel) == content(serial)


def _run(source: Path, url: str, cwd: Path, **env) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "SQLITE_PATH", "MIGRATION_"))}
    full |= {"PATH": f"{BIN}:{full.get('PATH', '')}", "DAGSTER_HOME": str(cwd / "home")}
    full |= {"SQLITE_PATH": str(source), "DATABASE_URL": url, "MIGRATION_PG_CONNECTIONS": "3", **env}
    (cwd / "home").mkdir(parents=True, exist_ok=True)
    cmd = [str(BIN / "dagster"), "job", "execute", "-m", "agent_migration", "-j", "migrate"]
    return subprocess.run(cmd, cwd=cwd, env=full, capture_output=True, text=True, timeout=600)


def _backends_gone(url: str) -> None:
    for _ in range(200):  # a killed run's backends roll back once they find their client gone
        if query(url, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'agent_migration'") == [(0,)]:
            return
        time.sleep(0.05)
    raise AssertionError("the killed run's connections are still open")


@pytest.mark.slow
@pytest.mark.parametrize("point", ["stage", "stage_rejects", "copy", "index", "swap", "swapped"])
def test_a_run_killed_in_each_phase_leaves_the_previous_state_and_the_next_run_succeeds(
    point, messy_source, new_database, tmp_path
):
    url, reference = new_database(), new_database()
    assert migrate(messy_source, reference, tmp_path / "ref", connections=1).success
    killed = _run(messy_source, url, tmp_path, MIGRATION_FAULT_AT=point, MIGRATION_FAULT_TESTING="1")
    assert killed.returncode == -9, killed.stdout[-2000:] + killed.stderr[-2000:]
    _backends_gone(url)
    if point.startswith("stage"):  # killed while cleaning: target_schema had not run, the database is as it was
        assert query(url, "SELECT count(*) FROM pg_tables WHERE schemaname IN ('public', 'migration')") == [(0,)]
    else:  # the previous state: the empty app tables target_schema committed, no run recorded, no reject
        assert all(rows == [] for name, rows in content(url).items()), content(url)
        assert query(url, "SELECT count(*) FROM migration.runs") == [(0,)]
        assert query(url, "SELECT count(*) FROM migration.source_stats") == [(0,)]
    again = _run(messy_source, url, tmp_path)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert content(url) == content(reference)
    assert catalog(url) == catalog(reference)  # the killed run's stage schema is gone too


@pytest.mark.slow
def test_the_fault_point_alone_does_not_stop_a_run(messy_source, new_database, tmp_path):
    """`MIGRATION_FAULT_AT` left in a shell does nothing: only the tests' `MIGRATION_FAULT_TESTING=1` arms it."""
    url, reference = new_database(), new_database()
    assert migrate(messy_source, reference, tmp_path / "ref", connections=1).success
    done = _run(messy_source, url, tmp_path, MIGRATION_FAULT_AT="copy")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert content(url) == content(reference)


def test_the_fault_switch_needs_the_test_flag(monkeypatch):
    monkeypatch.setenv(faults.ENV, "copy")
    monkeypatch.delenv(faults.ARMED, raising=False)
    assert not faults.armed("copy")
    faults.here("copy")  # would SIGKILL this test process if it were armed
    monkeypatch.setenv(faults.ARMED, "1")
    assert faults.armed("copy") and not faults.armed("swap")


BALANCES = next(t for t in SOURCE_TABLES if t.name == "user_balance")


def _chunk(first: int, n: int) -> pa.Table:
    return pa.table(
        {"user_id": pa.array(range(first, first + n), pa.int32()), "coins": pa.array([7] * n, pa.int32())}
        | {"updated_at": pa.array([datetime(2026, 1, 1)] * n, pa.timestamp("us"))},
        schema=arrow_schema(BALANCES.migrated),
    )


PATHS = ("/run/user_balance.arrow", "/run/user_balance.rejects.arrow")


def _rejects(first: int, n: int) -> pa.Table:
    """`n` rejects of user_balance, multi-line reasons and payloads with quotes, backslashes and emoji."""
    return pa.table(
        {
            "source_key": pa.array([f"u{i}" for i in range(first, first + n)], pa.large_string()),
            "reason": pa.array(["user_balance.coins: not a whole number\n(got 'x')"] * n, pa.large_string()),
            "payload": pa.array(['{"coins": "a \\"b\\" \\\\ 🐉\\nc"}'] * n, pa.large_string()),
            "source_rowid": pa.array(range(first, first + n), pa.int64()),
            "reason_kind": pa.array(["user_balance.coins: not a whole number"] * n, pa.large_string()),
        },
        schema=REJECT_SCHEMA,
    )


NO_REJECTS = _rejects(0, 0)


def _stage_rows(url: str) -> dict:
    found = query(url, "SELECT to_regclass('migration_stage.user_balance') IS NOT NULL")[0][0]
    count = query(url, "SELECT count(*) FROM migration_stage.user_balance")[0][0] if found else None
    marks = query(url, "SELECT count(*) FROM migration_stage.staged")[0][0] if found else None
    rejects = query(url, "SELECT count(*) FROM migration_stage.rejected_rows")[0][0] if found else None
    return {"table": found, "rows": count, "markers": marks, "rejects": rejects}


def test_staging_while_cleaning_commits_a_marked_copy_that_publish_recognises(pg_url):
    target = PostgresTarget(database_url=pg_url)
    with staging.stage_while_cleaning(target, BALANCES, PATHS, "run-1", full_run=True) as stager:
        for first in range(0, 5000, 1000):
            stager.write(_chunk(first, 1000), _rejects(first, 300 if first else 0))
    assert stager.skipped is None and stager.rows == 5000 and stager.rejects == 1200
    assert _stage_rows(pg_url) == {"table": True, "rows": 5000, "markers": 2, "rejects": 1200}
    (row,) = query(
        pg_url,
        "SELECT source_table, run_id, reason, payload::text FROM migration_stage.rejected_rows WHERE source_rowid = 1000",
    )
    assert row == ("user_balance", "run-1", "user_balance.coins: not a whole number\n(got 'x')", '{"coins": "a \\"b\\" \\\\ 🐉\\nc"}')
    marker = "rejected_rows:user_balance"
    with target.connect() as conn, conn.cursor() as cur:
        assert staging.staged(cur, {"user_balance": (PATHS[0], 5000)}) == {"user_balance"}
        assert staging.staged(cur, {"user_balance": (PATHS[0], 4999)}) == set()
        assert staging.staged(cur, {"user_balance": ("/other/user_balance.arrow", 5000)}) == set()
        assert staging.staged(cur, {marker: (PATHS[1], 1200)}) == {marker}
        assert staging.staged(cur, {marker: (PATHS[1], 1199)}) == set()


def test_a_second_staging_of_a_table_replaces_its_rejects_and_keeps_the_others(pg_url):
    target = PostgresTarget(database_url=pg_url)
    with staging.stage_while_cleaning(target, BALANCES, PATHS, "run-1", full_run=True) as stager:
        stager.write(_chunk(0, 10), _rejects(0, 7))
    with target.connect() as conn, conn.cursor() as cur:  # another table's rejects, staged before
        cur.execute("INSERT INTO migration_stage.rejected_rows (source_table, reason, payload) VALUES ('agents', 'r', '{}')")
        conn.commit()
    with staging.stage_while_cleaning(target, BALANCES, PATHS, "run-2", full_run=True) as stager:
        stager.write(_chunk(0, 10), _rejects(100, 3))
    assert stager.skipped is None
    found = query(pg_url, "SELECT source_table, run_id, count(*) FROM migration_stage.rejected_rows GROUP BY 1, 2 ORDER BY 1")
    assert found == [("agents", None, 1), ("user_balance", "run-2", 3)]


def test_a_failed_cleaning_rolls_its_staging_copy_back(pg_url):
    target = PostgresTarget(database_url=pg_url)
    stage = staging.stage_while_cleaning(target, BALANCES, PATHS, "run-1", full_run=True)
    with pytest.raises(RuntimeError, match="rule broke"), stage as stager:
        for first in range(0, 20_000, 1000):  # more chunks than the queue holds
            stager.write(_chunk(first, 1000), NO_REJECTS)
        raise RuntimeError("rule broke")
    assert stager.skipped == "the cleaning failed"
    assert query(pg_url, "SELECT count(*) FROM pg_tables WHERE schemaname = 'migration_stage'") == [(0,)]


def test_no_staging_for_a_target_with_rows_a_held_lock_or_one_connection(pg_url):
    target = PostgresTarget(database_url=pg_url)
    with target.connect() as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE public.users (id INTEGER, username TEXT)")
        cur.execute("INSERT INTO public.users VALUES (1, 'a')")
        conn.commit()
    with staging.stage_while_cleaning(target, BALANCES, PATHS, "run-1", full_run=True) as stager:
        for first in range(0, 10_000, 1000):  # the cleaning never waits on a copy that is not coming
            stager.write(_chunk(first, 1000), NO_REJECTS)
    assert stager.skipped == "users already holds rows (a re-sync merges in one transaction)"
    with target.connect() as conn, conn.cursor() as cur:
        cur.execute("DELETE FROM public.users")
        conn.commit()
        assert merge.try_lock(cur)  # another run's lock, held while this one cleans
        with staging.stage_while_cleaning(target, BALANCES, PATHS, "run-1", full_run=True) as stager:
            stager.write(_chunk(0, 10), NO_REJECTS)
        assert stager.skipped == "another run holds the target's advisory lock"
    for other, full in ((PostgresTarget(database_url=pg_url, connections=1), True), (target, False)):
        with staging.stage_while_cleaning(other, BALANCES, PATHS, "run-1", full_run=full) as stager:
            assert stager is None
    assert query(pg_url, "SELECT count(*) FROM pg_tables WHERE schemaname = 'migration_stage'") == [(0,)]
