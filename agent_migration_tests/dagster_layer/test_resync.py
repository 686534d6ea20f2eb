"""Re-sync before cutover (issue 3), for real: a SQLite file changed between runs, PostgreSQL compared by content."""

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dagster as dg
import psycopg2
import pytest

from agent_migration import jobs
from agent_migration.postgres.cutover import UNDO
from agent_migration.resources import PostgresTarget, SqliteSource
from agent_migration.sample import write_sample
from agent_migration_tests.conftest import ASSETS, CHECKS, create_database, query, resources, run_migration

BIN = Path(sys.executable).parent
WRITES = """SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0) FROM pg_stat_user_tables
            WHERE schemaname = 'public'"""


def content(url: str) -> dict[str, list]:
    """The target by natural content: usernames instead of surrogate user ids, active listings only."""
    u = "(SELECT username FROM users WHERE id = {})"
    return {
        "users": query(url, "SELECT username FROM users ORDER BY 1"),
        "agents": query(
            url,
            f"SELECT id, name, {u.format('owner_id')}, traits::text, energy, xp, gene, rarity, rare_trait::text, "
            "power, for_sale, price, created_at, updated_at FROM agents ORDER BY id",
        ),
        "user_balance": query(
            url, f"SELECT {u.format('user_id')}, coins, updated_at FROM user_balance ORDER BY 1"
        ),
        "payments": query(
            url,
            f"SELECT id, {u.format('user_id')}, amount, currency, status, payment_method, transaction_id, "
            "stripe_session_id, stripe_payment_intent_id, coins, created_at, updated_at FROM payments ORDER BY id",
        ),
        "chat_messages": query(
            url,
            f"SELECT id, agent_id, {u.format('user_id')}, message, role, created_at FROM chat_messages ORDER BY id",
        ),
        "active_listings": query(
            url,
            f"SELECT agent_id, {u.format('seller_id')}, price FROM marketplace_listings WHERE status = 'active' ORDER BY 1",
        ),
        "rejected_rows": query(
            url, "SELECT source_table, source_key, reason FROM migration.rejected_rows ORDER BY 1, 2, 3"
        ),
    }


def change_source(path: Path) -> int:
    """Insert, update and delete rows the way the live app would; returns how many source rows changed."""
    conn = sqlite3.connect(path)
    with conn:
        statements = [
            # updates, including a fix of a rejected row and a newly invalid one
            "UPDATE agents SET xp = xp + 1, price = price + 5 WHERE id IN (1, 2, 3)",
            "UPDATE agents SET forSale = 0 WHERE id = (SELECT min(id) FROM agents WHERE forSale = 1 AND id > 3)",
            "UPDATE agents SET forSale = 1, price = 77 WHERE id = (SELECT min(id) FROM agents WHERE forSale = 0 AND id > 3)",
            "UPDATE agents SET energy = 60 WHERE energy = 150",
            "UPDATE agents SET energy = 500 WHERE id = 4",
            "UPDATE payments SET status = 'refunded' WHERE id = 2",
            "UPDATE chat_messages SET message = message || ' (edited)' WHERE id IN (1, 2)",
            "UPDATE user_balance SET coins = coins + 10 WHERE rowid = 1",
            # deletes: an agent with its messages, a payment
            "DELETE FROM chat_messages WHERE agent_id = 5",
            "DELETE FROM agents WHERE id = 5",
            "DELETE FROM payments WHERE id = 3",
            # inserts: a new user only in chat, a new agent and payment
            "INSERT INTO agents (id, name, owner, traits, energy, forSale, price, created_at) "
            "VALUES (90001, 'Newbie', 'brand_new_owner', '{}', 10, 1, 12, '2024-05-01 10:00:00')",
            "INSERT INTO chat_messages (id, agent_id, user_id, message, role, created_at) "
            "VALUES (90001, 90001, 'only_in_new_chat', 'hello there, new agent', 'user', '2024-05-01 10:01:00')",
            "INSERT INTO payments (id, user_id, amount, currency, status, coins, created_at) "
            "VALUES (90001, 'Alice', 9.99, 'USD', 'completed', 100, '2024-05-01 10:02:00')",
        ]
        changed = 0
        for statement in statements:
            changed += conn.execute(statement).rowcount
    conn.close()
    return changed


def fresh_migration(source: Path, admin_url: str, tmp: Path) -> str:
    url = create_database(admin_url)
    assert run_migration(source, url, tmp).success
    return url


@pytest.mark.slow
def test_resync_equals_a_fresh_migration_and_writes_only_what_changed(tmp_path, pg_admin_url):
    source = tmp_path / "db.sqlite"
    write_sample(source, scale="small", seed=4)
    url = create_database(pg_admin_url)
    assert run_migration(source, url, tmp_path / "first").success
    ids_before = dict(query(url, "SELECT username, id FROM users"))
    listings_before = query(url, "SELECT count(*) FROM marketplace_listings")[0][0]
    writes_before = query(url, WRITES)[0][0]

    changed = change_source(source)
    result = run_migration(source, url, tmp_path / "second")
    assert result.success
    assert content(url) == content(fresh_migration(source, pg_admin_url, tmp_path / "fresh"))

    ids_after = dict(query(url, "SELECT username, id FROM users"))
    assert all(ids_after[name] == uid for name, uid in ids_before.items() if name in ids_after), (
        "user ids kept"
    )
    assert "only_in_new_chat" in ids_after and "brand_new_owner" in ids_after
    assert query(url, "SELECT count(*) FROM marketplace_listings WHERE status = 'cancelled'")[0][0] >= 1
    assert query(url, "SELECT count(*) FROM marketplace_listings")[0][0] > listings_before - 1
    assert (
        query(
            url,
            "SELECT agent_id, count(*) FROM marketplace_listings WHERE status = 'active' GROUP BY 1 HAVING count(*) > 1",
        )
        == []
    )

    time.sleep(1.5)  # the writer's statistics are flushed when its backend ends
    written = query(url, WRITES)[0][0] - writes_before
    source_rows = sum(query(url, "SELECT sum(source_rows) FROM migration.source_stats")[0])
    assert 0 < written <= 4 * changed + 10, (written, changed)
    assert written < source_rows / 20, "a small change writes a small share of the rows"
    publish = [e for e in result.get_asset_materialization_events() if e.asset_key == dg.AssetKey("agents")][
        0
    ]
    changes = publish.materialization.metadata["changes"].value
    # agent 5 deleted and agent 4 now invalid; the new agent and the fixed one (energy 150 -> 60) inserted
    assert changes["updated"] >= 3 and changes["deleted"] == 2 and changes["inserted"] >= 2, changes
    assert changes["rejected"] >= 1


@pytest.mark.parametrize("journal", ["WAL", "DELETE"])  # the backup API; a file copy under the shared lock
def test_a_writer_never_causes_snapshot_skew(tmp_path, pg_url, journal):
    source = tmp_path / "db.sqlite"
    write_sample(source, scale="small", seed=6, messy=False)
    conn = sqlite3.connect(source)
    conn.execute(f"PRAGMA journal_mode={journal}")
    conn.close()
    stop = threading.Event()
    written = []

    def writer():
        # Each transaction inserts an agent and a message pointing at it: a reader without one consistent
        # snapshot could see the message without its agent.
        db = sqlite3.connect(source, timeout=30)
        n = 1_000_000
        while not stop.is_set():
            with db:
                db.execute(
                    "INSERT INTO agents (id, name, owner, traits, created_at) VALUES (?, 'w', 'writer', '{}', '2024-01-01 00:00:00')",
                    (n,),
                )
                db.execute(
                    "INSERT INTO chat_messages (id, agent_id, user_id, message, role) VALUES (?, ?, 'writer', 'written during the run', 'user')",
                    (n, n),
                )
            written.append(n)
            n += 1
        db.close()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        time.sleep(0.2)
        result = run_migration(source, pg_url, tmp_path)
    finally:
        stop.set()
        thread.join()
    assert result.success
    assert written, "the writer was writing during the run"
    assert query(pg_url, "SELECT count(*) FROM migration.rejected_rows") == [(0,)]
    orphans = (
        "SELECT count(*) FROM chat_messages c LEFT JOIN agents a ON a.id = c.agent_id WHERE a.id IS NULL"
    )
    assert query(pg_url, orphans) == [(0,)]
    (backup,) = query(pg_url, "SELECT DISTINCT snapshot FROM migration.source_stats")[0]
    snap = sqlite3.connect(backup)
    assert snap.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    assert (
        snap.execute("SELECT count(*) FROM chat_messages").fetchone()[0]
        == query(pg_url, "SELECT count(*) FROM chat_messages")[0][0]
    )
    snap.close()


def test_a_wal_sources_snapshot_is_one_file_that_readers_open_at_once(tmp_path):
    source_file = tmp_path / "db.sqlite"
    write_sample(source_file, scale="tiny", seed=3, messy=False)
    with sqlite3.connect(source_file) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("UPDATE agents SET name = 'only in the -wal file' WHERE id = 1")
        conn.commit()
        rows = conn.execute("SELECT count(*) FROM chat_messages").fetchone()[0]
        # the writer stays open, so its commit stays in the -wal file and the backup API is used
        source = SqliteSource(path=str(source_file), backup_dir=str(tmp_path / "backups"))
        snapshot = source.snapshot("0123456789")
    assert snapshot.read_bytes()[18:20] == b"\x01\x01", "a rollback-journal file, not WAL"
    assert sorted(p.name for p in snapshot.parent.iterdir()) == [snapshot.name], "no -wal or -shm beside it"

    def read(_):  # ADBC has no busy handler: a WAL copy's first readers raced for its recovery
        with source.connect_arrow(snapshot) as adbc:
            cur = adbc.cursor()
            cur.execute("SELECT count(*), (SELECT name FROM agents WHERE id = 1) FROM chat_messages")
            return cur.fetchone()

    with ThreadPoolExecutor(max_workers=4) as pool:
        assert set(pool.map(read, range(40))) == {(rows, "only in the -wal file")}


def _dagster(args, cwd, env):
    full = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "SQLITE_PATH")}
    full |= {"PATH": f"{BIN}:{full.get('PATH', '')}", "DAGSTER_HOME": str(cwd / "home"), **env}
    (cwd / "home").mkdir(exist_ok=True)
    return subprocess.Popen(
        [str(BIN / "dagster"), *args],
        cwd=cwd,
        env=full,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


@pytest.mark.slow
def test_a_run_killed_during_the_load_leaves_the_target_as_before(tmp_path, pg_url):
    source = tmp_path / "db.sqlite"
    write_sample(source, scale="small", seed=8)
    env = {"SQLITE_PATH": str(source), "DATABASE_URL": pg_url}
    first = _dagster(["job", "execute", "-m", "agent_migration", "-j", "migrate"], tmp_path, env)
    assert first.wait(timeout=600) == 0, first.stdout.read()[-3000:]
    before = content(pg_url)
    change_source(source)

    # Hold the bookkeeping table the publish step writes last: the run blocks inside its transaction,
    # after every app table was merged, and is killed there.
    blocker = psycopg2.connect(pg_url)
    cur = blocker.cursor()
    cur.execute("LOCK TABLE migration.source_stats IN ACCESS EXCLUSIVE MODE")
    run = _dagster(["job", "execute", "-m", "agent_migration", "-j", "migrate"], tmp_path, env)
    waiting = """SELECT count(*) FROM pg_stat_activity WHERE application_name = 'agent_migration'
                 AND wait_event_type = 'Lock' AND query LIKE 'DELETE FROM migration.source_stats%'"""
    deadline = time.monotonic() + 300
    while query(pg_url, waiting) == [(0,)]:
        assert run.poll() is None, run.stdout.read()[-3000:]
        assert time.monotonic() < deadline, "the run never reached the end of its load"
        time.sleep(0.1)
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    blocker.rollback()
    blocker.close()
    for _ in range(100):  # the killed run's backend rolls back once it finds its client gone
        if query(
            pg_url, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'agent_migration'"
        ) == [(0,)]:
            break
        time.sleep(0.1)
    assert content(pg_url) == before, "a killed run changes nothing"

    again = _dagster(["job", "execute", "-m", "agent_migration", "-j", "migrate"], tmp_path, env)
    assert again.wait(timeout=600) == 0, again.stdout.read()[-3000:]
    assert content(pg_url) != before
    assert query(pg_url, "SELECT count(*) FROM agents WHERE id = 90001") == [(1,)]


@pytest.mark.slow
def test_two_concurrent_runs_never_interleave_their_writes(tmp_path, pg_url):
    source = tmp_path / "db.sqlite"
    write_sample(source, scale="small", seed=9)
    env = {"SQLITE_PATH": str(source), "DATABASE_URL": pg_url}
    runs = []
    for name in ("a", "b"):  # two users, two Dagster instances, one target
        (tmp_path / name).mkdir()
        runs.append(
            _dagster(["job", "execute", "-m", "agent_migration", "-j", "migrate"], tmp_path / name, env)
        )
    outputs = [r.communicate(timeout=600)[0] for r in runs]
    assert [r.returncode for r in runs] == [0, 0], [o[-2000:] for o in outputs]
    spans = query(pg_url, "SELECT locked_at, finished_at FROM migration.runs ORDER BY locked_at")
    assert len(spans) == 2
    (start_a, end_a), (start_b, end_b) = spans
    assert end_a <= start_b, f"the second run wrote while the first held the target: {spans}"


@pytest.mark.slow
def test_after_cutover_migrate_refuses_and_the_schedule_skips(tmp_path, pg_url):
    source = tmp_path / "db.sqlite"
    write_sample(source, scale="tiny", seed=12)
    target = PostgresTarget(database_url=pg_url)

    with dg.build_schedule_context() as context:
        before = jobs.resync(context, target=target)
    assert isinstance(before, dg.RunRequest), "the schedule requests a run before cutover"

    defs = dg.Definitions(
        assets=ASSETS, asset_checks=CHECKS, jobs=[jobs.cutover], resources=resources(source, pg_url, tmp_path)
    )
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        done = defs.resolve_job_def("cutover").execute_in_process(instance=instance)
    assert done.success
    (run_id, backup, counts) = query(
        pg_url, "SELECT run_id, source_backup, row_counts FROM migration.cutover"
    )[0]
    assert run_id == done.run_id and Path(backup).exists() and counts["agents"] > 0

    with dg.build_schedule_context() as context:
        after = jobs.resync(context, target=target)
    assert isinstance(after, dg.SkipReason) and "cutover was recorded" in after.skip_message

    refused = run_migration(source, pg_url, tmp_path / "after", raise_on_error=False)
    assert not refused.success
    messages = [
        str(e.event_specific_data.error.message)
        for e in refused.all_events
        if e.event_type_value == "STEP_FAILURE"
    ]
    assert any("cutover was recorded" in m and UNDO in m for m in messages), messages
    assert query(pg_url, "SELECT count(*) FROM migration.runs")[0][0] == 1, "nothing written after cutover"

    with psycopg2.connect(pg_url) as conn, conn.cursor() as cur:
        cur.execute(UNDO)
    assert run_migration(source, pg_url, tmp_path / "undone").success, (
        "undoing the cutover on purpose re-enables migrate"
    )


def test_the_resync_schedule_is_off_until_turned_on():
    assert jobs.resync.cron_schedule == "*/30 * * * *"
    assert jobs.resync.default_status == dg.DefaultScheduleStatus.STOPPED
    assert jobs.resync.job_name == "migrate"
