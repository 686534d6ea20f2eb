"""The benchmark command end to end at `tiny` and `small` scale, as CI runs it, so that it never rots (no
timing assertions): every step of both scales runs, and the databases of the last scale hold what they must."""

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

from agent_migration.benchmark import DATABASES, HEADER, STEPS, database_url
from agent_migration.postgres import embedded
from agent_migration_tests.conftest import query, server_dir

PROJECT = Path(__file__).resolve().parents[2]
TABLES = ("agents", "user_balance", "payments", "chat_messages")
TARGET = "embedded PostgreSQL (Unix socket)"


def source_counts(path: Path) -> dict[str, int]:
    with closing(sqlite3.connect(path)) as source:
        return {t: source.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}


def check_report(report: dict, pgloader_skipped: bool) -> None:
    assert set(report["steps"]) == set(STEPS)
    assert report["target"] == TARGET and report["server_version"]
    for name, step in report["steps"].items():
        if name == "pgloader" and pgloader_skipped:
            assert step["status"].startswith("skipped") and step["x_pgloader"] is None
            continue
        assert step["status"] == "ok", (name, step)
        assert step["wall_s"] > 0 and step["rows"] > 0 and step["rows_per_s"] > 0, (name, step)
        assert step["x_migrate"] > 0 and step["x_copy_limit"] > 0 and step["x_arrow_limit"] > 0, (name, step)
    assert report["steps"]["migrate"]["x_migrate"] == 1
    assert report["steps"]["arrow_limit"]["x_arrow_limit"] == 1
    assert report["steps"]["migrate_rejects"]["rows"] == report["source"]["total_rows"]
    assert set(report["reject_heavy"]) == {
        "wall_x_migrate",
        "peak_rss_largest_x_migrate",
        "peak_rss_sum_x_migrate",
    }
    assert report["reject_heavy"]["wall_x_migrate"] > 0
    assert report["resync_1pct_changed_rows"] > 0 and report["cutover_changed_rows"] > 0


@pytest.mark.benchmark
def test_benchmark_runs_every_step_of_each_scale_and_leaves_the_databases_right():
    # Outside pytest's 0700 tmp tree: as root, the embedded server runs as its own user.
    workdir = server_dir() / "bench"
    report_path = workdir.parent / "b.json"
    args = ["--scale", "tiny,small", "--workdir", str(workdir), "--json", str(report_path), "--keep-server"]
    if shutil.which("pgloader") is None:
        args.append("--skip-pgloader")
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "SQLITE_PATH")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    try:
        done = subprocess.run(
            [sys.executable, "-m", "agent_migration.benchmark", *args],
            cwd=PROJECT,
            env=env,
            capture_output=True,
            text=True,
            timeout=1200,
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

        report = json.loads(report_path.read_text())
        assert list(report["scales"]) == ["tiny", "small"]
        for scale in report["scales"].values():
            check_report(scale, "--skip-pgloader" in args)
        headers = [line for line in done.stdout.splitlines() if line.startswith("| step")]
        assert len(headers) == 2  # one table per scale
        assert [cell.strip() for cell in headers[0].strip("|").split("|")] == list(HEADER)
        assert done.stdout.count(f"target: {TARGET}") == 2
        assert done.stdout.count("reject-heavy / clean migrate = ") == 2
        assert str(report_path) in done.stdout

        # Clean data: every source row, after the 1 % changes, the re-sync and the cutover, is in the migrate
        # database, the cutover is recorded, and the Arrow-native limit copied every row too.
        admin = embedded.ensure_database(workdir / "pgdata", "postgres")
        target, arrow = (database_url(admin, DATABASES[db]) for db in ("migrate", "arrow"))
        expected = source_counts(workdir / "db.sqlite")
        for table, n in expected.items():
            assert query(target, f"SELECT count(*) FROM {table}") == [(n,)], table
            assert query(arrow, f"SELECT count(*) FROM {table}") == [(n,)], table
        assert query(target, "SELECT count(*) FROM migration.rejected_rows") == [(0,)]
        assert report["scales"]["small"]["steps"]["cutover"]["rows"] == sum(expected.values())
        assert query(target, "SELECT count(*) FROM migration.cutover") == [(1,)]

        # The reject-heavy run: every agent rejected, so no agent and no chat message in its database.
        rejects = database_url(admin, DATABASES["rejects"])
        agents = source_counts(workdir / "rejects.sqlite")["agents"]
        assert agents == 1_000
        rejected = "SELECT count(*) FROM migration.rejected_rows WHERE source_table = 'agents'"
        assert query(rejects, rejected) == [(agents,)]
        assert query(rejects, "SELECT count(*) FROM agents") == [(0,)]
        assert query(rejects, "SELECT count(*) FROM chat_messages") == [(0,)]
    finally:
        embedded.stop(workdir / "pgdata")
        shutil.rmtree(workdir.parent, ignore_errors=True)
