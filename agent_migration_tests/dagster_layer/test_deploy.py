"""deploy/ for real: dagster-webserver and dagster-daemon on deploy/dagster.yaml, with Dagster's runs, events
and schedules in PostgreSQL, run `migrate` through the queue one writer at a time and fire the schedule."""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from agent_migration.sample import write_sample
from agent_migration_tests.conftest import query
from agent_migration_tests.servers import REPO, free_port, graphql, start, stop, wait_until_up

pytestmark = pytest.mark.slow

DEPLOY = REPO / "deploy"
BIN = Path(sys.executable).parent
REPOSITORY = {"repositoryLocationName": "agent_migration", "repositoryName": "__repository__"}
LAUNCH = """mutation ($params: ExecutionParams!) { launchRun(executionParams: $params) {
  __typename ... on LaunchRunSuccess { run { runId status } } ... on PythonError { message } } }"""
START_SCHEDULE = """mutation ($selector: ScheduleSelector!) { startSchedule(scheduleSelector: $selector) {
  __typename ... on ScheduleStateResult { scheduleState { status } } ... on PythonError { message } } }"""
RUN_TIMEOUT_S = 180
SCHEDULE_TIMEOUT_S = 150  # the cron fires every minute; the daemon checks schedules every 30 s or so
TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}


def storage_url(url: str) -> str:
    # SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3; dagster-postgres ships psycopg2.
    return url.replace("postgresql://", "postgresql+psycopg2://", 1)


@pytest.fixture
def instance(tmp_path, new_database):
    """The webserver and the daemon on a copy of deploy/dagster.yaml; Dagster's storage and the target are
    two fresh databases of the session's server. Every process is stopped by its process group."""
    home, work = tmp_path / "dagster_home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    shutil.copy(DEPLOY / "dagster.yaml", home)
    write_sample(work / "db.sqlite", scale="tiny", seed=11)
    storage, target = new_database(), new_database()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "DAGSTER_PG_URL": storage_url(storage),
        "DATABASE_URL": target,
        "SQLITE_PATH": str(work / "db.sqlite"),
        "RESYNC_CRON": "* * * * *",
    }
    port, workspace = free_port(), str(DEPLOY / "workspace.yaml")
    logs = [tmp_path / "webserver.log", tmp_path / "daemon.log"]
    webserver = [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port), "-w", workspace]
    procs = [start(webserver, work, env, logs[0])]
    try:
        procs.append(start([str(BIN / "dagster-daemon"), "run", "-w", workspace], work, env, logs[1]))
        base = f"http://127.0.0.1:{port}"
        wait_until_up(base, procs[0], logs[0])
        yield SimpleNamespace(url=base, storage=storage, target=target, logs=logs)
    finally:
        for proc in procs:
            stop(proc)


def tails(server) -> str:
    return "\n".join(f"--- {log.name}:\n{log.read_text()[-3000:]}" for log in server.logs)


def launch(server) -> str:
    params = {"selector": {**REPOSITORY, "jobName": "migrate"}, "runConfigData": {}}
    answer = graphql(server.url, LAUNCH, params=params)["launchRun"]
    assert answer["__typename"] == "LaunchRunSuccess", answer
    assert answer["run"]["status"] == "QUEUED", answer  # the daemon, not the webserver, starts it
    return answer["run"]["runId"]


def stored_runs(server) -> dict[str, tuple]:
    """Dagster's own `runs` table in the storage database: run id -> (status, start time, end time)."""
    rows = query(server.storage, "SELECT run_id, status, start_time, end_time FROM runs")
    return {run_id: rest for run_id, *rest in rows}


def failures(server, run_id: str) -> list[str]:
    sql = "SELECT event FROM event_logs WHERE run_id = %s AND dagster_event_type IN ('STEP_FAILURE', 'RUN_FAILURE')"
    return [event[:2000] for (event,) in query(server.storage, sql, (run_id,))]


def wait_for_success(server, run_id: str) -> None:
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while (status := stored_runs(server).get(run_id, ("?",))[0]) not in TERMINAL:
        assert time.monotonic() < deadline, (
            f"run {run_id} still {status} after {RUN_TIMEOUT_S} s\n{tails(server)}"
        )
        time.sleep(1)
    assert status == "SUCCESS", f"run {run_id} {status}: {failures(server, run_id)}\n{tails(server)}"


def scheduled_run(server) -> str:
    """The first run the daemon launched for the `resync` schedule, once there is one."""
    sql = "SELECT run_id FROM run_tags WHERE key = 'dagster/schedule_name' AND value = 'resync'"
    deadline = time.monotonic() + SCHEDULE_TIMEOUT_S
    while not (rows := query(server.storage, sql)):
        assert time.monotonic() < deadline, f"no resync run after {SCHEDULE_TIMEOUT_S} s\n{tails(server)}"
        time.sleep(2)
    return rows[0][0]


def test_migrate_runs_through_the_queue_one_writer_at_a_time(instance):
    runs = [launch(instance), launch(instance)]
    for run_id in runs:
        wait_for_success(instance, run_id)
    stored = stored_runs(instance)
    first, second = sorted((stored[run_id] for run_id in runs), key=lambda row: row[1])
    # The queue's writer limit: the second run started only once the first had ended (the advisory lock
    # alone would let both start and one wait inside its run).
    assert second[1] >= first[2], stored
    assert query(instance.target, "SELECT count(*) > 0 FROM agents") == [(True,)]

    turned_on = graphql(instance.url, START_SCHEDULE, selector={**REPOSITORY, "scheduleName": "resync"})
    assert turned_on["startSchedule"].get("scheduleState", {}).get("status") == "RUNNING", turned_on
    wait_for_success(instance, scheduled_run(instance))
