"""The headless commands a user runs, as subprocesses: exit status, messages, and the embedded default."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

from agent_migration import embedded
from agent_migration.sample import write_sample
from agent_migration_tests.conftest import query, server_dir

BIN = Path(sys.executable).parent


def run(args, cwd, **env):
    full = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "SQLITE_PATH")}
    full |= {"DAGSTER_HOME": str(cwd / "dagster_home"), "PATH": f"{BIN}:{full.get('PATH', '')}", **env}
    (cwd / "dagster_home").mkdir(exist_ok=True)
    return subprocess.run(args, cwd=cwd, env=full, capture_output=True, text=True, timeout=600)


def test_job_execute_and_asset_materialize_run_everything(tmp_path, pg_url):
    write_sample(tmp_path / "db.sqlite", scale="tiny", seed=3)
    done = run(
        ["dagster", "job", "execute", "-m", "agent_migration", "-j", "migrate"], tmp_path, DATABASE_URL=pg_url
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert query(pg_url, "SELECT count(*) > 0 FROM agents") == [(True,)]
    again = run(
        ["dagster", "asset", "materialize", "-m", "agent_migration", "--select", "*"],
        tmp_path,
        DATABASE_URL=pg_url,
    )
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "RUN_SUCCESS" in again.stdout + again.stderr


def test_a_failing_run_exits_non_zero_and_names_the_problem(tmp_path, pg_url):
    missing = tmp_path / "nowhere.sqlite"
    done = run(
        ["dagster", "job", "execute", "-m", "agent_migration", "-j", "migrate"],
        tmp_path,
        DATABASE_URL=pg_url,
        SQLITE_PATH=str(missing),
    )
    assert done.returncode != 0
    assert f"SQLITE_PATH '{missing}' does not exist" in done.stdout + done.stderr
    assert query(pg_url, "SELECT to_regclass('public.agents')") == [(None,)], "nothing written"


def test_default_target_is_an_embedded_server_kept_in_the_working_directory():
    tmp_path = server_dir()
    write_sample(tmp_path / "db.sqlite", scale="tiny", seed=5)
    try:
        done = run(["dagster", "job", "execute", "-m", "agent_migration", "-j", "migrate"], tmp_path)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert (
            "target: embedded PostgreSQL in .pgdata; connect with: psql 'postgresql://"
            in done.stdout + done.stderr
        )
        url = run(["agent-migration-pg", "url"], tmp_path).stdout.strip()
        assert str(tmp_path / ".pgdata") in url
        assert f"connect with: psql '{url}'" in done.stdout + done.stderr  # the logged URL works as it is
        assert query(url, "SELECT count(*) > 0 FROM chat_messages") == [(True,)]
    finally:
        embedded.stop(tmp_path / ".pgdata")
        shutil.rmtree(tmp_path, ignore_errors=True)
