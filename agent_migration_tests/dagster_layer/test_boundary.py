"""The one error boundary (`boundary.py`): an expected failure prints one clean line, a bug keeps its trace.

Each test runs the real `migrate` job in process against the embedded server, with the project's console
logger, and reads what reached the terminal (the console writes to its own copy of stderr's descriptor,
which `capfd` captures).
"""

from __future__ import annotations

import dagster as dg
import psycopg2
import pytest

from agent_migration import boundary
from agent_migration.core.errors import MigrationError
from agent_migration.definitions import defs
from agent_migration.postgres import ddl
from agent_migration.sample import write_sample


def _migrate(tmp_path, pg_url, capfd, monkeypatch) -> tuple[dg.ExecuteInProcessResult, str]:
    """The project's `migrate` job as definitions.py has it, its settings from the environment."""
    source = tmp_path / "db.sqlite"
    write_sample(source, scale="tiny", seed=3)
    monkeypatch.setenv("SQLITE_PATH", str(source))
    monkeypatch.setenv("DATABASE_URL", pg_url)
    monkeypatch.setenv("MIGRATION_BACKUP_DIR", str(tmp_path / "backups"))
    monkeypatch.setenv("MIGRATION_STORAGE", str(tmp_path / "storage"))
    monkeypatch.delenv("MIGRATION_LOG_LEVEL", raising=False)
    home = tmp_path / "home"
    home.mkdir()
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        result = defs.resolve_job_def("migrate").execute_in_process(instance=instance, raise_on_error=False)
    captured = capfd.readouterr()
    return result, captured.err + captured.out


def _schema_step_runs(monkeypatch, statement: str) -> None:
    """`target_schema`'s DDL replaced by `statement`, as if the project's own SQL were that."""

    def planted(cur):
        cur.execute(statement)
        return []

    monkeypatch.setattr(ddl, "ensure_schema", planted)


def test_a_bug_in_the_projects_own_sql_keeps_its_stack_trace(tmp_path, pg_url, capfd, monkeypatch):
    _schema_step_runs(monkeypatch, "CREATE TABEL planted_bug (id INTEGER)")
    result, err = _migrate(tmp_path, pg_url, capfd, monkeypatch)
    assert not result.success
    assert "SyntaxError" in err and 'syntax error at or near "TABEL"' in err
    assert "Stack Trace" in err and "planted" in err  # the frame of the planted statement is shown
    assert "boundary.py" in err  # it passed through the boundary unchanged, as a bug must


def test_a_timeout_the_user_set_prints_one_clean_line_without_a_trace(tmp_path, pg_url, capfd, monkeypatch):
    _schema_step_runs(monkeypatch, "SET LOCAL statement_timeout = 1; SELECT pg_sleep(1)")
    result, err = _migrate(tmp_path, pg_url, capfd, monkeypatch)
    assert not result.success
    line = [x for x in err.splitlines() if "canceling statement due to statement timeout" in x]
    assert len(line) == 1 and "PostgreSQL at" in line[0] and "target_schema" in line[0]
    assert "Stack Trace" not in err and "Traceback" not in err


def test_the_boundary_turns_expected_failures_into_clean_failures_and_passes_the_rest():
    with pytest.raises(dg.Failure) as refused, boundary.expected_failures():
        raise MigrationError("SQLITE_PATH 'x' does not exist (from env SQLITE_PATH).")
    assert refused.value.description == "SQLITE_PATH 'x' does not exist (from env SQLITE_PATH)."
    assert refused.value.allow_retries is False
    with pytest.raises(dg.Failure) as privilege, boundary.expected_failures():
        raise psycopg2.errors.InsufficientPrivilege("permission denied for schema public")
    assert privilege.value.description == "PostgreSQL at the target: permission denied for schema public"
    with pytest.raises(psycopg2.errors.UndefinedColumn), boundary.expected_failures():
        raise psycopg2.errors.UndefinedColumn('column "nope" does not exist')
    with pytest.raises(KeyError), boundary.expected_failures():
        raise KeyError("a bug")
