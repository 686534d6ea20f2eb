"""Operating the migration as a user does (issue 18): settings read at run time, each error saying where
its value came from; failures that read cleanly; bounded disk (backups kept, free space checked first)."""

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from agent_migration.core.errors import MigrationError
from agent_migration.resources import PostgresTarget, SqliteSource
from agent_migration.sample import write_reject_heavy, write_sample
from agent_migration_tests.conftest import query, run_migration

BIN = Path(sys.executable).parent


def execute(job: str, cwd: Path, *args: str, **env) -> subprocess.CompletedProcess:
    """`dagster job execute -m agent_migration -j JOB` in `cwd`, with only `env`'s settings."""
    full = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "SQLITE_PATH", "MIGRATION_"))}
    full |= {"DAGSTER_HOME": str(cwd / "dagster_home"), "PATH": f"{BIN}:{full.get('PATH', '')}", **env}
    (cwd / "dagster_home").mkdir(exist_ok=True)
    cmd = [str(BIN / "dagster"), "job", "execute", "-m", "agent_migration", "-j", job, *args]
    return subprocess.run(cmd, cwd=cwd, env=full, capture_output=True, text=True, timeout=600)


def test_a_setting_names_where_its_value_came_from(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(MigrationError, match=r"SQLITE_PATH 'db.sqlite' does not exist \(the default; set env SQLITE_PATH"):
        SqliteSource().check_file()
    monkeypatch.setenv("SQLITE_PATH", "from_env.sqlite")
    with pytest.raises(MigrationError, match=r"'from_env.sqlite' does not exist \(from env SQLITE_PATH\)"):
        SqliteSource().check_file()
    with pytest.raises(MigrationError, match=r"'given.sqlite' does not exist \(from the resource config source.path\)"):
        SqliteSource(path="given.sqlite").check_file()
    monkeypatch.setenv("MIGRATION_KEEP_BACKUPS", "two")
    with pytest.raises(MigrationError, match=r"MIGRATION_KEEP_BACKUPS must be a whole number of copies, 1 or more, not 'two'"):
        SqliteSource().setting("keep_backups")
    monkeypatch.setenv("MIGRATION_KEEP_BACKUPS", "0")
    with pytest.raises(MigrationError, match=r"not 0 \(from env MIGRATION_KEEP_BACKUPS\)"):
        SqliteSource().setting("keep_backups")
    monkeypatch.setenv("DATABASE_URL", "mysql://app@db/ai")
    with pytest.raises(MigrationError, match=r"not mysql:// \(from env DATABASE_URL\)"):
        PostgresTarget().url()


def test_a_run_config_for_one_field_keeps_the_others_from_the_environment(monkeypatch):
    """Dagster replaces a resource's whole config with the run's; the environment must still fill the rest."""
    monkeypatch.setenv("SQLITE_PATH", "/data/app.sqlite")
    monkeypatch.setenv("MIGRATION_BACKUP_DIR", "/backups")
    source = SqliteSource(chunk_rows=1000)  # what run config {source: {config: {chunk_rows: 1000}}} builds
    assert (source.sqlite_path, source.rows_per_chunk, str(source.backup_folder)) == ("/data/app.sqlite", 1000, "/backups")
    monkeypatch.setenv("MIGRATION_CHUNK_ROWS", "5")
    assert SqliteSource().rows_per_chunk == 5 and SqliteSource(chunk_rows=9).rows_per_chunk == 9


def test_definitions_read_nothing_from_the_environment_at_import():
    code = (
        "import os; os.environ.update(SQLITE_PATH='/at/import.sqlite', MIGRATION_STORAGE='/at/import');"
        "from agent_migration.definitions import RESOURCES;"
        "print(RESOURCES['source'].path, RESOURCES['io_manager'].base_dir)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["None", "None"], done.stderr


def test_preflight_on_a_misfit_source_prints_its_verdict_once_and_no_traceback(tmp_path, pg_url):
    write_sample(tmp_path / "fit.sqlite", scale="tiny", seed=5)
    write_reject_heavy(tmp_path / "fit.sqlite", tmp_path / "misfit.sqlite")
    done = execute("preflight", tmp_path, DATABASE_URL=pg_url, SQLITE_PATH=str(tmp_path / "misfit.sqlite"))
    out = done.stdout + done.stderr
    assert done.returncode != 0
    assert out.lower().count("migrate would fail") == 1, out[-4000:]
    assert "reject budget exceeded: agents:" in out
    for trace in ("Traceback", "Stack Trace", 'File "'):
        assert trace not in out, out[-4000:]
    debug = execute(
        "preflight", tmp_path, DATABASE_URL=pg_url, SQLITE_PATH=str(tmp_path / "misfit.sqlite"), MIGRATION_LOG_LEVEL="DEBUG"
    )
    assert debug.returncode != 0 and "Stack Trace" in debug.stdout + debug.stderr, "DEBUG still shows the trace"


def _touch(path: Path, n: int) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE agents SET name = ? WHERE rowid = 1", (f"renamed {n}",))


@pytest.mark.slow
def test_the_backups_kept_follow_the_setting(tmp_path, pg_url, monkeypatch):
    source = tmp_path / "db.sqlite"
    write_sample(source, scale="tiny", seed=2)
    monkeypatch.setenv("MIGRATION_KEEP_BACKUPS", "2")
    monkeypatch.setenv("MIGRATION_KEEP_RUNS", "2")
    for n in range(4):
        _touch(source, n)  # a changed source: each run takes a copy of its own
        assert run_migration(source, pg_url, tmp_path).success
    assert len(list((tmp_path / "backups").glob("*.sqlite"))) == 2
    assert len([p for p in (tmp_path / "runs").iterdir() if p.is_dir()]) == 2
    assert query(pg_url, "SELECT name FROM agents WHERE id = 1") == [("renamed 3",)]


def test_a_run_without_the_free_space_fails_cleanly_and_writes_nothing(tmp_path, pg_url, monkeypatch):
    source = tmp_path / "db.sqlite"
    write_sample(source, scale="tiny", seed=2)
    monkeypatch.setenv("MIGRATION_MIN_FREE_MB", str(1 << 40))  # a reserve no disk has
    result = run_migration(source, pg_url, tmp_path, raise_on_error=False)
    assert not result.success
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    message = failure.event_specific_data.error.message
    assert "not enough free space for" in message and "MIGRATION_MIN_FREE_MB" in message, message
    assert "from env MIGRATION_MIN_FREE_MB" in message
    assert not list((tmp_path / "backups").glob("*.sqlite")), "no copy was started"
    assert query(pg_url, "SELECT to_regclass('public.agents')") == [(None,)], "nothing written"


def test_the_free_space_check_of_preflight_names_the_folder(tmp_path, pg_url, monkeypatch):
    from agent_migration.ops.preflight import preflight_job
    from agent_migration_tests.conftest import resources

    source = tmp_path / "db.sqlite"
    write_sample(source, scale="tiny", seed=2)
    monkeypatch.setenv("MIGRATION_MIN_FREE_MB", str(1 << 40))
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        result = preflight_job.execute_in_process(
            resources=resources(source, pg_url, tmp_path), instance=instance, raise_on_error=False
        )
    assert not result.success
    messages = [e.event_specific_data.error.message for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert any(f"not enough free space for {tmp_path / 'preflight'}" in m for m in messages), messages
    assert json.dumps(messages).count("Nothing was written") >= 1
