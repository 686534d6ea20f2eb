"""Bad input and failing targets (issue 6): each case triggered for real, its message and an untouched target."""

import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import dagster as dg
import pandas as pd
import psycopg2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent_migration.core.cleaning import PAYLOAD, REJECT, SOURCE_KEY, clean_table
from agent_migration.core.rules import Json, Username
from agent_migration.core.tables import SOURCE_TABLES
from agent_migration.resources import PostgresTarget, SqliteSource
from agent_migration.sample import write_sample
from agent_migration_tests.conftest import ASSETS, CHECKS, create_database, query, resources
from agent_migration_tests.core.test_rules import sqlite_values

BIN = Path(sys.executable).parent
PASSWORD = "S3cret-Pa55word"


def run(tmp: Path, source=None, target=None, **kw):
    """The whole graph against the given resources; never raises, returns the result."""
    res = {
        "source": source,
        "target": target,
        "io_manager": dg.FilesystemIOManager(base_dir=str(tmp / "storage")),
    }
    home = tmp / "home"
    home.mkdir(parents=True, exist_ok=True)
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        result = dg.materialize(
            [*ASSETS, *CHECKS], resources=res, instance=instance, raise_on_error=False, **kw
        )
        logs = "\n".join(str(e) for e in instance.all_logs(result.run_id))
    return result, logs


def run_tiny(tmp: Path, target: PostgresTarget):
    """The whole graph from a tiny sample source written in `tmp`."""
    path = tmp / "db.sqlite"
    write_sample(path, scale="tiny")
    return run(tmp, SqliteSource(path=str(path), backup_dir=str(tmp / "b")), target)


def failures(result) -> dict[str, str]:
    return {
        e.step_key: str(e.event_specific_data.error.message)
        for e in result.all_events
        if e.event_type_value == "STEP_FAILURE"
    }


def nothing_written(url: str) -> bool:
    return query(url, "SELECT count(*) FROM pg_tables WHERE schemaname IN ('public', 'migration')") == [(0,)]


# ---------------------------------------------------------------- the source


def _corrupt(path: Path) -> None:
    write_sample(path, scale="small", seed=1)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])  # truncated pages


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (lambda p: None, "does not exist"),
        (lambda p: p.mkdir(), "is a directory"),
        (lambda p: p.write_bytes(b""), "is empty (0 bytes)"),
        (lambda p: p.write_text("id,name\n1,Nova\n"), "is not a SQLite database (wrong file header)"),
        (_corrupt, "is corrupt"),
    ],
    ids=["missing", "directory", "empty", "not-sqlite", "corrupt"],
)
def test_a_bad_source_fails_before_writing_and_names_the_path(tmp_path, pg_url, make, problem):
    path = tmp_path / "db.sqlite"
    make(path)
    result, _ = run(
        tmp_path,
        SqliteSource(path=str(path), backup_dir=str(tmp_path / "b")),
        PostgresTarget(database_url=pg_url),
    )
    assert not result.success
    message = failures(result)["source_snapshot"]
    assert f"SQLITE_PATH '{path}'" in message and problem in message, message
    assert nothing_written(pg_url)


def test_an_unreadable_source_fails_before_writing(tmp_path, pg_url):
    path = tmp_path / "db.sqlite"
    write_sample(path, scale="tiny")
    path.chmod(0)
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "SQLITE_PATH")}
    env |= {"SQLITE_PATH": str(path), "DATABASE_URL": pg_url, "DAGSTER_HOME": str(tmp_path)}
    # Root reads any file; drop the capability that lets it, so the permission really applies.
    cmd = [
        "setpriv",
        "--bounding-set",
        "-dac_override,-dac_read_search",
        "--inh-caps=-all",
        str(BIN / "dagster"),
        "job",
        "execute",
        "-m",
        "agent_migration",
        "-j",
        "migrate",
    ]
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert f"SQLITE_PATH '{path}' is not readable (permission denied" in done.stdout + done.stderr
    assert nothing_written(pg_url)


def test_missing_tables_and_columns_are_listed_extra_ones_reported(tmp_path, pg_url):
    path = tmp_path / "db.sqlite"
    write_sample(path, scale="tiny")
    conn = sqlite3.connect(path)
    conn.executescript("DROP TABLE user_balance; ALTER TABLE payments DROP COLUMN coins;")
    conn.close()
    source = SqliteSource(path=str(path), backup_dir=str(tmp_path / "b"))
    result, _ = run(tmp_path, source, PostgresTarget(database_url=pg_url))
    message = failures(result)["source_snapshot"]
    assert "lacks what the migration needs: table user_balance, column payments.coins." in message
    assert nothing_written(pg_url)

    write_sample(path, scale="tiny", overwrite=True)
    conn = sqlite3.connect(path)
    conn.executescript("CREATE TABLE app_settings (k, v); ALTER TABLE agents ADD COLUMN color TEXT;")
    conn.close()
    result, _ = run(tmp_path / "ok", source, PostgresTarget(database_url=pg_url))
    assert result.success
    snapshot = result.asset_materializations_for_node("source_snapshot")[0]
    assert snapshot.metadata["ignored_extra_columns"].value == {
        "agents": ["color"],
        "(tables)": ["app_settings"],
    }


def test_a_source_locked_by_a_writer_fails_as_busy_not_a_hang(tmp_path, pg_url):
    path = tmp_path / "db.sqlite"
    write_sample(path, scale="tiny")
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN EXCLUSIVE")  # rollback-journal mode: readers are locked out
    try:
        started = time.monotonic()
        source = SqliteSource(path=str(path), backup_dir=str(tmp_path / "b"), busy_timeout_s=1)
        result, _ = run(tmp_path, source, PostgresTarget(database_url=pg_url))
        took = time.monotonic() - started
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    message = failures(result)["source_snapshot"]
    assert "database is busy" in message and "busy_timeout_s" in message, message
    assert took < 60
    assert nothing_written(pg_url)


# Any SQLite value in every source column, through the whole pipeline into PostgreSQL.
rows_of = {
    t.source: st.lists(st.tuples(*[sqlite_values] * len(t.source_columns)), max_size=6) for t in SOURCE_TABLES
}


def _write(path: Path, tables: dict[str, list[tuple]]) -> None:
    conn = sqlite3.connect(path)
    for table in SOURCE_TABLES:
        cols = ", ".join(f'"{c}"' for c in table.source_columns)
        conn.execute(f"CREATE TABLE {table.source} ({cols})")  # no affinity: every value kept as generated
        marks = ", ".join("?" for _ in table.source_columns)
        for row in tables[table.source]:
            # undecodable text is stored as TEXT with those bytes, as a buggy app would
            conn.execute(f"INSERT INTO {table.source} VALUES ({marks})", [_bind(v) for v in row])
    conn.commit()
    conn.close()


def _bind(value):
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return value.encode("utf-8", "surrogateescape")  # stored as a BLOB: still "not text"
    return value


@pytest.mark.slow
@settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
@given(tables=st.fixed_dictionaries(rows_of))
def test_any_sqlite_values_end_loaded_with_the_rules_value_or_rejected(
    tables, tmp_path_factory, pg_admin_url
):
    tmp = tmp_path_factory.mktemp("prop")
    path = tmp / "db.sqlite"
    _write(path, tables)
    url = create_database(pg_admin_url)
    # Any values: a table may be rejected whole, so no reject budget (it is tested in test_preflight.py).
    target = PostgresTarget(database_url=url, max_reject_share=1)
    result, _ = run(tmp, SqliteSource(path=str(path), backup_dir=str(tmp / "b")), target)
    assert result.success, failures(result)
    conn = sqlite3.connect(path)
    conn.text_factory = lambda b: b.decode("utf-8", "surrogateescape")
    for table in SOURCE_TABLES:
        raw = pd.DataFrame(
            conn.execute(f"SELECT rowid, * FROM {table.source}").fetchall(),
            columns=["_rowid", *table.source_columns],
            dtype=object,
        )
        expected = clean_table(table, raw)
        loaded = query(url, f"SELECT count(*) FROM {table.name}")[0][0]
        rejected = query(
            url,
            "SELECT reason, payload FROM migration.rejected_rows WHERE source_table = %s",
            (table.source,),
        )
        assert loaded + len(rejected) == len(raw)
        assert all(reason and set(payload) == set(table.source_columns) for reason, payload in rejected)
        if table.key == "id":  # keys the target keeps as-is: compare every loaded value with the rule's
            ok = expected[expected[REJECT].isna()]
            cols = [c for c in table.migrated if not isinstance(c.rule, Username)]
            got = {
                r[0]: r[1:]
                for r in query(url, f"SELECT id, {', '.join(c.name for c in cols)} FROM {table.name}")
            }
            assert set(got) == {int(k) for k in ok["id"]}
            for _, row in ok.iterrows():
                assert tuple(_plain(row[c.name], c) for c in cols) == tuple(
                    _plain(v, c) for v, c in zip(got[int(row["id"])], cols, strict=True)
                )
            bad = expected[expected[REJECT].notna()]
            keys = query(
                url, "SELECT source_key FROM migration.rejected_rows WHERE source_table = %s", (table.source,)
            )
            assert sorted(bad[SOURCE_KEY]) == sorted(k for (k,) in keys)
            assert bad[PAYLOAD].notna().all()
    conn.close()


def _plain(value, col):
    """A rule's value or a PostgreSQL value, as one comparable Python value."""
    if value is None or (not isinstance(value, (str, dict, list)) and pd.isna(value)):
        return None
    if isinstance(col.rule, Json):
        return value if not isinstance(value, str) else json.loads(value)
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    if hasattr(value, "item"):
        return value.item()
    return value


# ---------------------------------------------------------------- the target


def _password_server(pg_server: Path, admin_url: str) -> str:
    """A role that must give a password on the session server (its other roles trust the socket)."""
    hba = pg_server / "pg_hba.conf"
    line = "local all pw_user scram-sha-256\n"
    if line not in hba.read_text():
        hba.write_text(line + hba.read_text())
    with psycopg2.connect(admin_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_roles WHERE rolname = 'pw_user'")
        if not cur.fetchone():
            cur.execute("CREATE ROLE pw_user LOGIN PASSWORD 'right-password'")
        cur.execute("SELECT pg_reload_conf()")
    return admin_url.split("?host=")[1]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (f"postgresql://app:{PASSWORD}@db.example:notaport/ai", "DATABASE_URL is malformed"),
        (f"mysql://app:{PASSWORD}@localhost:3306/ai", "must be a postgresql:// URL"),
        (
            f"postgresql://app:{PASSWORD}@no-such-host.invalid:5432/ai",
            "Cannot connect to PostgreSQL at no-such-host.invalid:5432/ai",
        ),
        (f"postgresql://app:{PASSWORD}@127.0.0.1:1/ai", "Cannot connect to PostgreSQL at 127.0.0.1:1/ai"),
        ("wrong-password", 'password authentication failed for user "pw_user"'),
        ("missing-database", 'database "no_such_db" does not exist'),
    ],
    ids=["malformed", "not-postgres", "wrong-host", "wrong-port", "wrong-password", "missing-database"],
)
def test_bad_target_settings_fail_clearly_without_leaking_the_password(
    tmp_path, pg_server, pg_admin_url, url, expected
):
    socket_dir = pg_admin_url.split("?host=")[1]
    if url == "wrong-password":
        _password_server(pg_server, pg_admin_url)
        url = f"postgresql://pw_user:{PASSWORD}@/postgres?host={socket_dir}"
    elif url == "missing-database":
        url = f"postgresql://postgres:{PASSWORD}@/no_such_db?host={socket_dir}"
    result, logs = run_tiny(tmp_path, PostgresTarget(database_url=url))
    assert not result.success
    failed = failures(result)
    # The first step checks the target before it reads the source: nothing is read or written.
    assert list(failed) == ["source_snapshot"], failed
    assert expected in failed["source_snapshot"], failed
    assert PASSWORD not in logs
    assert all(PASSWORD not in m for m in failed.values())
    for event in result.all_events:
        assert PASSWORD not in str(event)


def _blocked_at_the_end_of_publish(url: str, timeout: float = 300) -> int:
    """The pid of the run's backend once it waits on the lock we hold on migration.source_stats."""
    waiting = """SELECT pid FROM pg_stat_activity WHERE application_name = 'agent_migration'
                 AND wait_event_type = 'Lock' AND query LIKE 'DELETE FROM migration.source_stats%'"""
    deadline = time.monotonic() + timeout
    while not (rows := query(url, waiting)):
        assert time.monotonic() < deadline, "the run never reached the end of its load"
        time.sleep(0.05)
    return rows[0][0]


@pytest.mark.slow
def test_a_dropped_connection_during_the_load_rolls_back_and_the_retry_succeeds(tmp_path, pg_url):
    path = tmp_path / "db.sqlite"
    write_sample(path, scale="small", seed=2)
    res = resources(path, pg_url, tmp_path)
    blocker = psycopg2.connect(pg_url)
    # first a committed state to keep, then a changed source whose load is cut off
    holder: dict = {}
    run_thread = threading.Thread(
        target=lambda: holder.update(result=run(tmp_path / "r", res["source"], res["target"])[0])
    )
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        assert dg.materialize([*ASSETS, *CHECKS], resources=res, instance=instance).success
    before = query(pg_url, "SELECT count(*), sum(id) FROM chat_messages")
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("DELETE FROM chat_messages WHERE id % 10 = 0")
    conn.close()
    cur = blocker.cursor()
    cur.execute("LOCK TABLE migration.source_stats IN ACCESS EXCLUSIVE MODE")
    run_thread.start()
    pid = _blocked_at_the_end_of_publish(pg_url)
    assert query(pg_url, "SELECT count(*), sum(id) FROM chat_messages") == before  # nothing visible yet
    cur.execute("SELECT pg_terminate_backend(%s)", (pid,))
    assert query(pg_url, "SELECT count(*), sum(id) FROM chat_messages") == before, (
        "the cut-off load rolled back"
    )
    blocker.rollback()
    blocker.close()
    run_thread.join(timeout=300)
    result = holder["result"]
    assert result.success, failures(result)
    retried = [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert [e.step_key for e in retried] == ["publish"]
    assert query(pg_url, "SELECT count(*) FROM chat_messages WHERE id % 10 = 0") == [(0,)]


def test_a_target_with_app_tables_of_another_shape_is_refused_untouched(tmp_path, pg_url):
    with psycopg2.connect(pg_url) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE agents (id INTEGER PRIMARY KEY, name TEXT, owner_id BIGINT)")
        cur.execute("INSERT INTO agents VALUES (1, 'kept', 7)")
    result, _ = run_tiny(tmp_path, PostgresTarget(database_url=pg_url))
    message = failures(result)["source_snapshot"]  # checked before the source is even copied
    assert "already holds app tables of another shape" in message
    assert "agents.name is text, expected character varying(255)" in message
    assert "agents.owner_id is bigint, expected integer" in message
    assert "agents.traits is missing (expected jsonb)" in message
    assert query(pg_url, "SELECT * FROM agents") == [(1, "kept", 7)]
    assert query(pg_url, "SELECT count(*) FROM pg_tables WHERE schemaname IN ('public', 'migration')") == [
        (1,)
    ]


@pytest.mark.slow
def test_statements_time_out_instead_of_hanging(tmp_path, pg_url):
    path = tmp_path / "db.sqlite"
    write_sample(path, scale="tiny")
    source = SqliteSource(path=str(path), backup_dir=str(tmp_path / "b"))
    assert run(tmp_path / "first", source, PostgresTarget(database_url=pg_url))[0].success
    blocker = psycopg2.connect(pg_url)
    blocker.cursor().execute("LOCK TABLE migration.source_stats IN ACCESS EXCLUSIVE MODE")
    try:
        started = time.monotonic()
        result, _ = run(
            tmp_path / "second", source, PostgresTarget(database_url=pg_url, statement_timeout_s=2)
        )
        took = time.monotonic() - started
    finally:
        blocker.rollback()
        blocker.close()
    assert not result.success
    assert "canceling statement due to statement timeout" in failures(result)["publish"]
    assert took < 60
