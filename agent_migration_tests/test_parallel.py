"""A first load on several connections (issue 16): the same target as one connection builds, published by
one swap; a run killed while copying, while building indexes or during the swap leaves the previous state,
and the next run succeeds."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent_migration.resources import PostgresTarget
from agent_migration.sample import write_sample
from agent_migration_tests.conftest import query, resources, run_migration
from agent_migration_tests.test_resync import content

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
@pytest.mark.parametrize("point", ["copy", "index", "swap", "swapped"])
def test_a_run_killed_in_each_phase_leaves_the_previous_state_and_the_next_run_succeeds(
    point, messy_source, new_database, tmp_path
):
    url, reference = new_database(), new_database()
    assert migrate(messy_source, reference, tmp_path / "ref", connections=1).success
    killed = _run(messy_source, url, tmp_path, MIGRATION_FAULT_AT=point)
    assert killed.returncode == -9, killed.stdout[-2000:] + killed.stderr[-2000:]
    _backends_gone(url)
    # The previous state: the empty app tables target_schema committed, no run recorded, no reject.
    assert all(rows == [] for name, rows in content(url).items()), content(url)
    assert query(url, "SELECT count(*) FROM migration.runs") == [(0,)]
    assert query(url, "SELECT count(*) FROM migration.source_stats") == [(0,)]
    again = _run(messy_source, url, tmp_path)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert content(url) == content(reference)
    assert catalog(url) == catalog(reference)  # the killed run's stage schema is gone too
