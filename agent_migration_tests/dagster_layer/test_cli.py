"""The commands a user runs (`dagster`, `dg launch`, `dg dev`), as subprocesses: exit status, messages, and
the embedded default."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from agent_migration.definitions import defs
from agent_migration.postgres import embedded
from agent_migration.sample import write_sample
from agent_migration_tests.conftest import query, server_dir
from agent_migration_tests.servers import REPO, free_port, graphql, start, stop, wait_until_up

BIN = Path(sys.executable).parent


def run(args, cwd, home=None, **env):
    home = home or cwd / "dagster_home"
    full = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "SQLITE_PATH")}
    full |= {"DAGSTER_HOME": str(home), "PATH": f"{BIN}:{full.get('PATH', '')}", **env}
    home.mkdir(exist_ok=True)
    return subprocess.run(args, cwd=cwd, env=full, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
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


@pytest.mark.slow
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


def in_tmp(tmp_path, pg_url) -> dict:
    """The run's source, target and stored values in tmp_path: a run from the project root writes nothing there."""
    write_sample(tmp_path / "db.sqlite", scale="tiny", seed=7)
    return {
        "DATABASE_URL": pg_url,
        "SQLITE_PATH": str(tmp_path / "db.sqlite"),
        "MIGRATION_STORAGE": str(tmp_path / "storage"),
    }


def test_dg_launch_migrates_from_the_project_root(tmp_path, pg_url):
    # The README's form where the README runs it: dg finds the project through pyproject.toml's [tool.dg].
    env = in_tmp(tmp_path, pg_url)
    # A run config that sets only some of the source's fields (as a launchpad edit does): SQLITE_PATH and
    # DATABASE_URL still come from the environment, read at run time.
    backups = tmp_path / "backups"
    source = {"chunk_rows": 7, "backup_dir": str(backups)}
    config = {"resources": {"source": {"config": source}}}
    home = tmp_path / "dagster_home"
    done = run(
        ["dg", "launch", "--job", "migrate", "--config-json", json.dumps(config)], REPO, home=home, **env
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert query(pg_url, "SELECT count(*) > 0 FROM agents") == [(True,)]
    assert query(pg_url, "SELECT count(*) > 0 FROM chat_messages") == [(True,)]
    assert list(backups.glob("*.sqlite")), "the run's source copy is in tmp_path"
    assert query(pg_url, "SELECT count(*) FROM agents")[0][0] > 7, "chunks of 7 rows, every chunk loaded"
    with dg.DagsterInstance.from_config(str(home)) as instance:  # the run is in the DAGSTER_HOME dg was given
        runs = instance.get_runs()
    assert [(r.job_name, r.status) for r in runs] == [("migrate", dg.DagsterRunStatus.SUCCESS)]


LOCATIONS = """{ workspaceOrError { ... on Workspace { locationEntries { name locationOrLoadError {
  __typename ... on RepositoryLocation { repositories { jobs { name } schedules { name } } }
  ... on PythonError { message } } } } } }"""


@pytest.mark.slow
def test_dg_dev_serves_every_job_of_the_code_location(tmp_path, pg_url):
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {**os.environ, **in_tmp(tmp_path, pg_url), "DAGSTER_HOME": str(home)}
    env["PATH"] = f"{BIN}:{env['PATH']}"
    port = free_port()
    log = tmp_path / "dg-dev.log"
    proc = start(["dg", "dev", "-p", str(port), "-h", "127.0.0.1"], REPO, env, log)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_up(base, proc, log)
        [entry] = graphql(base, LOCATIONS)["workspaceOrError"]["locationEntries"]
    finally:
        stop(proc)
    location = entry["locationOrLoadError"]
    assert entry["name"] == "agent_migration", entry  # pyproject.toml's name, not the folder's
    assert location["__typename"] == "RepositoryLocation", location
    [repository] = location["repositories"]
    served = {job["name"] for job in repository["jobs"] if not job["name"].startswith("__")}
    assert served == {job.name for job in defs.jobs}
    assert {s["name"] for s in repository["schedules"]} == {"resync"}
