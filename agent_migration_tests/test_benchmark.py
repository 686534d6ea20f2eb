"""The benchmark command end to end at `small` scale, as CI runs it, so that it never rots (no timing assertions)."""

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

from agent_migration import embedded
from agent_migration.benchmark import DATABASES, HEADER, STEPS, database_url
from agent_migration_tests.conftest import query, server_dir

PROJECT = Path(__file__).resolve().parent.parent


def test_benchmark_runs_every_step_and_leaves_the_source_fully_migrated():
    # Outside pytest's 0700 tmp tree: as root, the embedded server runs as its own user.
    workdir = server_dir() / "bench"
    report_path = workdir.parent / "b.json"
    args = ["--scale", "small", "--workdir", str(workdir), "--json", str(report_path), "--keep-server"]
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
        assert set(report["steps"]) == set(STEPS)
        for name, step in report["steps"].items():
            if name == "pgloader" and "--skip-pgloader" in args:
                assert step["status"].startswith("skipped")
                continue
            assert step["status"] == "ok", (name, step)
            assert step["wall_s"] > 0 and step["rows"] > 0 and step["rows_per_s"] > 0, (name, step)
        header = next(line for line in done.stdout.splitlines() if line.startswith("| step"))
        assert [cell.strip() for cell in header.strip("|").split("|")] == list(HEADER)
        assert str(report_path) in done.stdout

        # Clean data: every source row, after the 1 % change and its re-sync, is in the migrate database.
        admin = embedded.ensure_database(workdir / "pgdata", "postgres")
        target = database_url(admin, DATABASES["migrate"])
        total = 0
        with closing(sqlite3.connect(workdir / "db.sqlite")) as source:
            for table in ("agents", "user_balance", "payments", "chat_messages"):
                expected = source.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                assert query(target, f"SELECT count(*) FROM {table}") == [(expected,)], table
                total += expected
        assert query(target, "SELECT count(*) FROM migration.rejected_rows") == [(0,)]
        assert report["resync_1pct_changed_rows"] > 0
        assert report["steps"]["resync_1pct"]["rows"] == total
    finally:
        embedded.stop(workdir / "pgdata")
        shutil.rmtree(workdir.parent, ignore_errors=True)
