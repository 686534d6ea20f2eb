"""Rollback (issue 11), for real: migrate a messy source, cut over, let the app write to PostgreSQL, export
back to SQLite, and check the file against PostgreSQL and against the original source, byte for byte."""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import dagster as dg
import psycopg2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent_migration import jobs
from agent_migration.core.tables import SOURCE_TABLES
from agent_migration.ops import rollback as rollback_ops
from agent_migration.resources import ExportFile, PostgresTarget
from agent_migration.rollback import export as rollback
from agent_migration.sample import write_sample
from agent_migration_tests.conftest import ASSETS, CHECKS, create_database, query, resources, run_migration
from agent_migration_tests.dagster_layer.test_cli import run as run_cli
from agent_migration_tests.dagster_layer.test_resync import content

# The app's own schema as its SQLite file has it: AUTOINCREMENT ids and a DESC index (the plan's column
# list, with what `CREATE TABLE` in the app adds).
APP_SCHEMA = """
CREATE TABLE agents (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT, owner TEXT, traits TEXT, energy INTEGER,
  xp INTEGER, gene INTEGER, rarity TEXT, rareTrait TEXT, power INTEGER, forSale BOOLEAN, price INTEGER,
  created_at DATETIME DEFAULT CURRENT_TIMESTAMP, updated_at DATETIME DEFAULT CURRENT_TIMESTAMP);
CREATE TABLE user_balance (user_id TEXT PRIMARY KEY, coins INTEGER DEFAULT 0, updated_at DATETIME);
CREATE TABLE payments (id INTEGER PRIMARY KEY AUTOINCREMENT, user_id TEXT, amount REAL, currency TEXT,
  status TEXT, payment_method TEXT, transaction_id TEXT, stripe_session_id TEXT,
  stripe_payment_intent_id TEXT, coins INTEGER, created_at DATETIME, updated_at DATETIME);
CREATE TABLE chat_messages (id INTEGER PRIMARY KEY AUTOINCREMENT, agent_id INTEGER, user_id TEXT,
  message TEXT, role TEXT, created_at DATETIME);
CREATE INDEX idx_chat_agent_time ON chat_messages (agent_id, created_at DESC);
CREATE INDEX idx_payments_user ON payments (user_id);
"""
APP = [t.source for t in SOURCE_TABLES]


def app_source(folder: Path, seed: int) -> Path:
    """A messy sample in the app's own schema, plus a rejected payment with the highest id."""
    sample, path = folder / "sample.sqlite", folder / "db.sqlite"
    write_sample(sample, scale="tiny", seed=seed)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript(APP_SCHEMA)
    conn.execute("ATTACH ? AS s", (str(sample),))
    for table in APP:
        conn.execute(f"INSERT INTO main.{table} SELECT * FROM s.{table}")
    top = conn.execute("SELECT max(id) FROM payments").fetchone()[0]
    conn.execute(
        "INSERT INTO payments (id, user_id, amount, coins) VALUES (?, 'ghost', 'twelve dollars', 5)",
        (top + 40,),
    )
    conn.close()
    return path


def run_job(name: str, source: Path, url: str, tmp: Path, export_path: Path | None = None, **kw):
    res = resources(source, url, tmp) | {"export": ExportFile(path=str(export_path) if export_path else None)}
    defs = dg.Definitions(
        assets=[*ASSETS, rollback_ops.SPEC],
        asset_checks=CHECKS,
        jobs=[jobs.migrate, jobs.cutover, rollback_ops.rollback_export],
        resources=res,
    )
    tmp.mkdir(parents=True, exist_ok=True)
    with dg.instance_for_test(temp_dir=str(tmp)) as instance:
        return defs.resolve_job_def(name).execute_in_process(instance=instance, raise_on_error=False, **kw)


def app_writes(url: str) -> dict:
    """What the app does after cutover, as plain SQL: a user, an agent with messages, a payment with cents,
    balances, a deleted agent (its messages cascade), a listing and a battle."""
    conn = psycopg2.connect(url)
    with conn, conn.cursor() as cur:
        cur.execute("INSERT INTO users (username, email) VALUES ('newcomer', 'n@example.com') RETURNING id")
        user = cur.fetchone()[0]
        cur.execute(
            "INSERT INTO agents (name, owner_id, traits, energy, xp, gene, rarity, power, for_sale, price,"
            ' created_at) VALUES (\'Fresh\', %s, \'{"speed": 3, "tags": ["a", "b"]}\', 90, 1, 7, \'rare\', 5,'
            " true, 120, '2026-11-30 12:00:00.25') RETURNING id",
            (user,),
        )
        agent = cur.fetchone()[0]
        cur.execute(
            "INSERT INTO chat_messages (agent_id, user_id, message, role) VALUES (%s, %s, 'hi ☃', 'user'),"
            " (%s, NULL, 'hello', 'assistant') RETURNING id",
            (agent, user, agent),
        )
        cur.execute(
            "INSERT INTO payments (user_id, amount, status, coins) VALUES (%s, 12.34, 'completed', 100) RETURNING id",
            (user,),
        )
        payment = cur.fetchone()[0]
        cur.execute("INSERT INTO user_balance (user_id, coins) VALUES (%s, 500)", (user,))
        cur.execute(
            "UPDATE user_balance SET coins = coins + 7 WHERE user_id = (SELECT min(user_id) FROM user_balance)"
        )
        cur.execute(
            """SELECT a.id FROM agents a WHERE EXISTS (SELECT 1 FROM chat_messages c WHERE c.agent_id = a.id)
               AND NOT EXISTS (SELECT 1 FROM migration.rejected_rows r WHERE r.source_table = 'chat_messages'
                               AND r.payload->>'agent_id' = a.id::text) ORDER BY a.id LIMIT 1"""
        )
        deleted = cur.fetchone()[0]
        cur.execute("DELETE FROM agents WHERE id = %s", (deleted,))
        # The app gives a user a balance whose old row the migration rejected: PostgreSQL's row wins.
        cur.execute(
            """SELECT u.id, r.source_key FROM migration.rejected_rows r JOIN users u ON u.username = r.source_key
               WHERE r.source_table = 'user_balance' AND NOT EXISTS (SELECT 1 FROM user_balance b WHERE b.user_id = u.id)
               ORDER BY 2 LIMIT 1"""
        )
        taken, conflict = cur.fetchone()
        cur.execute("INSERT INTO user_balance (user_id, coins) VALUES (%s, 1)", (taken,))
        cur.execute(
            "INSERT INTO marketplace_listings (agent_id, seller_id, price) VALUES (%s, %s, 120)",
            (agent, user),
        )
        cur.execute(
            "INSERT INTO battles (agent_a_id, agent_b_id, winner_id, result) VALUES (%s, %s, %s, '{\"rounds\": 3}')",
            (agent, agent - 1, agent),
        )
    conn.close()
    return {"agent": agent, "payment": payment, "deleted": deleted, "conflict": conflict}


@pytest.fixture(scope="module")
def exported(tmp_path_factory, pg_admin_url):
    tmp = tmp_path_factory.mktemp("rollback")
    source = app_source(tmp, seed=21)
    url = create_database(pg_admin_url)
    assert run_migration(source, url, tmp / "m").success
    assert run_job("cutover", source, url, tmp / "c").success
    wrote = app_writes(url)
    path = tmp / "rollback.sqlite"
    before = content(url)
    result = run_job("rollback_export", source, url, tmp / "r", export_path=path)
    assert content(url) == before, "the export never writes to PostgreSQL"
    return {"source": source, "url": url, "path": path, "result": result, "wrote": wrote, "tmp": tmp}


def read(path: Path, sql: str, params=()) -> list[tuple]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    conn.text_factory = bytes
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def test_the_export_succeeds_and_its_checks_pass(exported):
    result = exported["result"]
    assert result.success
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {"rows_reconcile": True, "sums_reconcile": True, "no_conflicts": False}  # one, planted
    (warned,) = [e for e in result.get_asset_check_evaluations() if not e.passed]
    assert warned.severity == dg.AssetCheckSeverity.WARN and warned.metadata["rollback_conflicts"].value == 1


def test_the_app_tables_keep_the_source_schema_and_indexes(exported):
    wanted = "SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' AND tbl_name IN ({}) ORDER BY 2"
    marks = ", ".join("?" * len(APP))
    assert read(exported["path"], wanted.format(marks), APP) == read(
        exported["source"], wanted.format(marks), APP
    )
    assert any(b"DESC" in sql for _, _, sql in read(exported["path"], wanted.format(marks), APP))
    for table in (
        "agents",
        "payments",
        "chat_messages",
    ):  # AUTOINCREMENT: past every id PostgreSQL handed out
        (seq,) = read(exported["path"], "SELECT seq FROM sqlite_sequence WHERE name = ?", (table,))[0]
        (nxt,) = query(exported["url"], f"SELECT nextval(pg_get_serial_sequence('{table}', 'id'))")[0]
        assert seq == nxt - 1


def _stamp(value) -> str | None:
    if value is None:
        return None
    return value.strftime("%Y-%m-%d %H:%M:%S") + (value.strftime(".%f") if value.microsecond else "")


def _app_rows(url: str) -> dict[str, list[tuple]]:
    """PostgreSQL's app tables converted to the app's SQLite conventions, independently of the export."""
    users = dict(query(url, "SELECT id, username FROM users"))
    def name(i):
        return None if i is None else users[i].encode()

    def text(v):
        return None if v is None else str(v).encode()

    def compact(v):
        return None if v is None else json.dumps(v, separators=(",", ":"), ensure_ascii=False).encode()

    def stamp(v):
        return None if v is None else _stamp(v).encode()

    agents = [
        (
            i,
            text(n),
            name(o),
            compact(t),
            e,
            x,
            g,
            text(r),
            compact(rt),
            p,
            None if f is None else int(f),
            pr,
            stamp(c),
            stamp(u),
        )
        for i, n, o, t, e, x, g, r, rt, p, f, pr, c, u in query(url, "SELECT * FROM agents ORDER BY id")
    ]
    balances = [
        (name(u), c, stamp(t)) for u, c, t in query(url, "SELECT * FROM user_balance ORDER BY user_id")
    ]
    payments = [
        (i, name(u), float(a), *map(text, rest[:6]), rest[6], stamp(rest[7]), stamp(rest[8]))
        for i, u, a, *rest in query(url, "SELECT * FROM payments ORDER BY id")
    ]
    chats = [
        (i, a, name(u), text(m), text(r), stamp(c))
        for i, a, u, m, r, c in query(url, "SELECT * FROM chat_messages ORDER BY id")
    ]
    return {"agents": agents, "user_balance": balances, "payments": payments, "chat_messages": chats}


def _keys(url: str, table: str) -> list[str]:
    return [
        k
        for (k,) in query(
            url, "SELECT source_key FROM migration.rejected_rows WHERE source_table = %s", (table,)
        )
    ]


def test_every_postgresql_row_is_in_the_file_in_the_apps_conventions(exported):
    path, url = exported["path"], exported["url"]
    for table, rows in _app_rows(url).items():
        cols = ", ".join(f'"{c}"' for c in next(t for t in SOURCE_TABLES if t.source == table).source_columns)
        found = Counter(read(path, f"SELECT {cols} FROM {table}"))
        assert not Counter(rows) - found, f"{table}: PostgreSQL rows missing from the file"
        restored = len(_keys(url, table)) - (table == "user_balance")  # one reject gave way to the app's row
        assert (found - Counter(rows)).total() == restored, f"{table}: beyond them, only the restored rejects"
    assert read(path, "SELECT amount FROM payments WHERE id = ?", (exported["wrote"]["payment"],)) == [
        (12.34,)
    ]
    assert read(path, "SELECT count(*) FROM agents WHERE id = ?", (exported["wrote"]["deleted"],)) == [(0,)]
    assert read(
        path, "SELECT count(*) FROM chat_messages WHERE agent_id = ?", (exported["wrote"]["deleted"],)
    ) == [(0,)]


def _stored(path: Path, table: str) -> dict[int, tuple]:
    """rowid -> every column as SQLite stores it: storage class and exact bytes (REALs as values)."""
    cols = [c.decode() for (_, c, *_) in read(path, f"PRAGMA table_info({table})")]
    parts = ", ".join(
        f'typeof("{c}"), CASE typeof("{c}") WHEN \'real\' THEN "{c}" ELSE hex(CAST("{c}" AS BLOB)) END'
        for c in cols
    )
    return {r[0]: r[1:] for r in read(path, f"SELECT rowid, {parts} FROM {table}")}


def test_every_reject_is_restored_byte_for_byte(exported):
    path, url, source = exported["path"], exported["url"], exported["source"]
    kinds = set()
    for table in APP:
        rowids = [
            r
            for (r,) in query(
                url, "SELECT source_rowid FROM migration.rejected_rows WHERE source_table = %s", (table,)
            )
        ]
        original = _stored(source, table)
        rejected = Counter(original[r] for r in rowids)
        assert len(rejected) > 2, table
        missing = rejected - Counter(_stored(path, table).values())
        gave_way = [(b"text", exported["wrote"]["conflict"].encode().hex().upper().encode())] * (
            table == "user_balance"
        )
        assert [row[:2] for row in missing] == gave_way, f"{table}: a reject not restored as it was"
        kinds |= {kind for row in rejected for kind in row[::2]}
    assert {b"blob", b"real", b"integer", b"text", b"null"} <= kinds


def test_the_postgresql_only_tables_are_there(exported):
    path, url = exported["path"], exported["url"]
    assert read(path, "SELECT count(*) FROM users") == query(url, "SELECT count(*) FROM users")
    assert read(path, "SELECT username, email FROM users WHERE username = 'newcomer'") == [
        (b"newcomer", b"n@example.com")
    ]
    assert read(path, "SELECT result FROM battles") == [(b'{"rounds":3}',)]
    assert read(path, "SELECT count(*) FROM marketplace_listings") == query(
        url, "SELECT count(*) FROM marketplace_listings"
    )
    ((table, key, reason, payload),) = read(path, "SELECT * FROM rollback_conflicts")
    assert (table, key) == (b"user_balance", exported["wrote"]["conflict"].encode())
    ((pg_reason, pg_payload),) = query(
        url,
        "SELECT reason, payload FROM migration.rejected_rows WHERE source_table = 'user_balance' AND source_key = %s",
        (exported["wrote"]["conflict"],),
    )
    assert reason.decode() == pg_reason and json.loads(payload) == pg_payload
    assert read(
        path, "SELECT coins FROM user_balance WHERE user_id = ?", (exported["wrote"]["conflict"],)
    ) == [(1,)]


def test_the_sequence_passes_the_highest_rejected_id(exported):
    (top,) = read(exported["source"], "SELECT max(id) FROM payments")[0]
    assert str(top) in _keys(exported["url"], "payments"), "the highest payment id was rejected"
    assert exported["wrote"]["payment"] > top, "the app's first payment after cutover took a fresh id"


def test_migrating_the_export_gives_the_same_app_tables_and_rejects(exported, pg_admin_url):
    again = create_database(pg_admin_url)
    assert run_migration(exported["path"], again, exported["tmp"] / "again").success
    before, after = content(exported["url"]), content(again)
    for table in ("agents", "user_balance", "payments", "chat_messages"):
        assert after[table] == before[table], table
    # A NULL or shared key is named by its rowid, which is the file's own: compare those without it.
    rejects = (
        "SELECT source_table, regexp_replace(source_key, ' \\(rowid \\d+\\)$', ''), reason, payload"
        " FROM migration.rejected_rows ORDER BY 1, 2, 3, 4::text"
    )
    restored = [
        r for r in query(exported["url"], rejects) if r[:2] != ("user_balance", exported["wrote"]["conflict"])
    ]
    assert query(again, rejects) == restored


def test_an_existing_file_is_refused_and_left_intact(exported):
    path = exported["path"]
    before = path.read_bytes()
    result = run_job(
        "rollback_export", exported["source"], exported["url"], exported["tmp"] / "r2", export_path=path
    )
    assert not result.success
    message = result.failure_data_for_node("rollback_file").error.message
    assert "EXPORT_SQLITE_PATH" in message and "already exists" in message
    assert path.read_bytes() == before


def test_an_unreachable_target_leaves_no_file(tmp_path, exported):
    path = tmp_path / "never.sqlite"
    bad = "postgresql://someone:s3cret@127.0.0.1:1/nowhere"
    result = run_job("rollback_export", exported["source"], bad, tmp_path / "r", export_path=path)
    assert not result.success
    message = result.failure_data_for_node("rollback_file").error.message
    assert "Cannot connect to PostgreSQL at 127.0.0.1:1/nowhere" in message and "s3cret" not in message
    assert not path.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".never")]


def test_money_reconciles_to_the_cent(exported):
    (pg,) = query(exported["url"], "SELECT sum(amount) FROM payments")[0]
    restored = read(exported["path"], "SELECT amount FROM payments")
    cents = sum(round(Decimal(repr(a)) * 100) for (a,) in restored if isinstance(a, float))
    assert cents >= round(pg * 100)


# ---------------------------------------------------------------- the round trip, as a property

_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40)
_NAMES = _TEXT.filter(lambda t: t.strip() and len(t) <= 255)
_INT = st.integers(0, 2**31 - 1)
_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**60), 2**60)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
    max_leaves=6,
)
_MOMENT = st.datetimes(datetime(1971, 1, 1), datetime(2100, 1, 1))


@st.composite
def _timestamp(draw):
    """A timestamp in one of the forms the rules accept (or NULL)."""
    moment = draw(_MOMENT)
    return draw(
        st.sampled_from(
            [
                None,
                moment.strftime("%Y-%m-%d %H:%M:%S"),
                moment.isoformat(),
                moment.isoformat() + "Z",
                (moment + timedelta(hours=2)).isoformat() + "+02:00",
                int(moment.replace(tzinfo=UTC).timestamp()),
            ]
        )
    )


@st.composite
def accepted_sources(draw) -> dict[str, list[tuple]]:
    """Rows of every app table whose every value the rules accept."""
    users = draw(st.lists(_NAMES, min_size=1, max_size=4, unique=True))
    user = st.sampled_from(users) | st.none()
    ids = draw(st.lists(st.integers(1, 2**31 - 1), min_size=1, max_size=4, unique=True))
    agents = [
        (
            i,
            draw(_NAMES),
            draw(user),
            draw(_JSON.map(json.dumps) | st.none()),
            draw(st.integers(0, 100)),
            draw(_INT),
            draw(_INT),
            draw(_TEXT.filter(lambda t: len(t) <= 50)),
            draw(_JSON.map(json.dumps) | st.none()),
            draw(_INT),
            draw(st.sampled_from([0, 1, "true", "false", None])),
            draw(_INT),
            draw(_timestamp()),
            draw(_timestamp()),
        )
        for i in ids
    ]
    balances = [
        (u, draw(_INT), draw(_timestamp())) for u in draw(st.lists(st.sampled_from(users), unique=True))
    ]
    payments = [
        (
            i,
            draw(user),
            draw(st.integers(0, 9_999_999_999)) / 100,
            *(draw(_TEXT.filter(lambda t: len(t) <= 10)),),
            *(draw(_TEXT) for _ in range(5)),
            draw(_INT),
            draw(_timestamp()),
            draw(_timestamp()),
        )
        for i in draw(st.lists(st.integers(1, 2**31 - 1), max_size=3, unique=True))
    ]
    chats = [
        (
            i,
            draw(st.sampled_from(ids)),
            draw(user),
            draw(_TEXT),
            draw(st.sampled_from(["user", "assistant", "system"])),
            draw(_timestamp()),
        )
        for i in draw(st.lists(st.integers(1, 2**31 - 1), max_size=4, unique=True))
    ]
    return {"agents": agents, "user_balance": balances, "payments": payments, "chat_messages": chats}


@pytest.mark.slow
@settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
@given(rows=accepted_sources())
def test_export_then_migrate_preserves_every_accepted_value(rows, tmp_path_factory, pg_admin_url):
    tmp = tmp_path_factory.mktemp("roundtrip")
    source = tmp / "db.sqlite"
    conn = sqlite3.connect(source, isolation_level=None)
    conn.executescript(APP_SCHEMA)
    for table, values in rows.items():
        if values:
            conn.executemany(f"INSERT INTO {table} VALUES ({', '.join('?' * len(values[0]))})", values)
    conn.close()
    first, second = create_database(pg_admin_url), create_database(pg_admin_url)
    assert run_migration(source, first, tmp / "first").success
    assert query(first, "SELECT count(*) FROM migration.rejected_rows") == [(0,)], "every value is accepted"
    exported = tmp / "rollback.sqlite"
    rollback.export(PostgresTarget(database_url=first), exported, 2, lambda _: None)  # 2-row chunks
    assert run_migration(exported, second, tmp / "second").success
    before, after = content(first), content(second)
    for table in ("users", "agents", "user_balance", "payments", "chat_messages", "rejected_rows"):
        assert after[table] == before[table], table


def test_the_command_line_job_writes_to_export_sqlite_path(exported, tmp_path):
    path = tmp_path / "from-cli.sqlite"
    done = run_cli(
        ["dagster", "job", "execute", "-m", "agent_migration", "-j", "rollback_export"],
        tmp_path,
        DATABASE_URL=exported["url"],
        EXPORT_SQLITE_PATH=str(path),
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"rollback file: writing {path}" in done.stdout + done.stderr
    assert read(path, "SELECT count(*) FROM agents") == read(exported["path"], "SELECT count(*) FROM agents")
