"""Digests: SQLite's plain rows held to the exact rules, the canonical text apart where values differ,
PostgreSQL's text equal to ours, and a validate by digests naming what a validate value by value names."""

import sqlite3

import numpy as np
import pandas as pd
import psycopg2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg2 import sql

from agent_migration.core.tables import AGENTS, CHAT_MESSAGES, PAYMENTS, SOURCE_TABLES, USER_BALANCE
from agent_migration.core.values import SURROGATES
from agent_migration.postgres.ddl import SCHEMA
from agent_migration.postgres.merge import target as qualified
from agent_migration.source import sqlite_read
from agent_migration.validation import digest, digest_pass, digest_read, expected
from agent_migration_tests.conftest import create_database, query
from agent_migration_tests.core.test_rules import sqlite_values
from agent_migration_tests.dagster_layer.test_bad_input import _write
from agent_migration_tests.source.test_delta import _migrate, rows
from agent_migration_tests.validation.test_validate import _plain_values, check

DIGESTED = [t for t in SOURCE_TABLES if digest.eligible(t)]
NEAR_MISSES = [
    "2024-02-30 10:00:00",  # SQLite parses it as written; only a recomputed date shows Mar 1
    "2023-02-29 00:00:00",
    "2024-01-02 24:00:00",
    "0999-12-31 23:59:59",
    "1000-01-01 00:00:00",
    "2024-01-02T03:04:05",
    "USER",
    "\u3000",  # blank to Python, not to SQLite's trim
    "a\x00b",
    "a|b",
    0.005,
    1.005,
    0.1 + 0.2,
    19.990000000001,
    2**31 - 1,
    2**31,
    True,
    '{"a": 1, "a": [2]}',  # JSON: a key twice (the last wins), numbers spelled otherwise, escapes
    '[1.50, 1e2, -0, -0.0, 1e999, 12345678901234567890]',
    '{"\\u0000": 1}',
    '"\\ud800"',
    '{"k": "\\u001f\\t\\u2028/"}',
    "NaN",
    "null",
    "",
]


KNOWN = {  # a plain row per table, inserted last: the test sees plain rows in every example
    "agents": (
        10**6, "Ava", "alice", '{"b": [1, 2.5, "x\\n"], "a": null, "é": {}}', 100, 0, 3, "rare",
        "null", 5, 1, 10, "2024-01-02 03:04:05", None,
    ),
    "user_balance": ("zed", 5, "2024-01-02 03:04:05"),
    "payments": (10**6, "alice", 9.99, "USD", "paid", "card", "t1", "s1", "p1", 10, "2024-01-02 03:04:05", None),
    "chat_messages": (10**6, 7, "alice", "hello\nthere \U0001f600", "user", "1999-12-31 23:59:59"),
}


def _source(table, rows: list[tuple]) -> sqlite3.Connection:
    """The rows in an SQLite table without affinity; text that is not UTF-8 stored as TEXT anyway."""
    conn = sqlite3.connect(":memory:", check_same_thread=False)
    conn.execute(f'CREATE TABLE "{table.source}" ({", ".join(f"{chr(34)}{c}{chr(34)}" for c in table.source_columns)})')
    for row in rows:
        marks, params = [], []
        for v in row:
            if isinstance(v, str) and SURROGATES.search(v):
                marks.append("CAST(? AS TEXT)")
                params.append(v.encode("utf-8", "surrogateescape"))
            else:
                marks.append("?")
                params.append(v)
        conn.execute(f'INSERT INTO "{table.source}" VALUES ({", ".join(marks)})', params)
    return conn


def test_every_source_table_has_a_digest():
    assert DIGESTED == [AGENTS, USER_BALANCE, PAYMENTS, CHAT_MESSAGES]


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_a_row_sqlite_calls_plain_loads_by_the_exact_rules_with_the_same_canonical_text(data):
    """Any stored values, near misses planted often: every row whose text SQLite makes (and whose key
    and parents qualify) is loaded by the exact rules, and our rendering of their result is that text."""
    for table in DIGESTED:
        values = [st.sampled_from(_plain_values(c) + NEAR_MISSES) for c in table.migrated]
        mixed = [st.one_of(v, sqlite_values) for v in values]
        raw_rows = data.draw(st.lists(st.one_of(st.tuples(*values), st.tuples(*mixed)), max_size=12))
        conn = _source(table, [*raw_rows, KNOWN[table.source]])
        conn.text_factory = bytes
        block = np.array(conn.execute(digest.source_select(table, False), (digest_read.FIRST,)).fetchall(), dtype=object)
        facts = sqlite_read.key_facts(conn, table)
        parents = {col.name: np.array([1, 7], dtype=np.int64) for col, _ in table.parent_refs}
        plain = digest_read.plain_rows(table, block, facts.rowids, parents)
        assert plain[-1] or len(facts.rowids), table.name  # the known row (unless its key is shared)
        raw = expected.read_rowids(conn, table, block[:, 0].tolist())
        exact = expected.expect(table, raw, facts, parents, vectorized=False)
        texts = dict(zip(exact.loaded[expected.KEY].tolist(), digest.render(table, exact.loaded), strict=True))
        for key, text in zip(block[plain, 1], block[plain, -1], strict=True):
            key = key.decode("utf-8") if isinstance(key, bytes) else key
            assert key in texts, (table.name, key, "plain in SQLite, not loaded by the rules")
            assert texts[key] == text, (table.name, key)
        conn.close()


def test_the_canonical_text_keeps_apart_what_differs():
    rows = pd.DataFrame(
        {
            expected.KEY: [1] * 6,
            "id": [1] * 6,
            "user_id": ["a|b", "a", None, "", "x", "x"],
            "amount": [100, 100, 100, 100, 100, 101],
            "currency": [None, "|b", "", None, "USD", "USD"],
            **{c: [None] * 6 for c in ("status", "payment_method", "transaction_id", "stripe_session_id")},
            "stripe_payment_intent_id": [None] * 6,
            "coins": [0] * 6,
            "created_at": [1_700_000_000_000_000, 1_700_000_000_000_000, True, False, 5, 5],
            "updated_at": [None] * 6,
        },
        dtype=object,
    )
    texts = digest.render(PAYMENTS, rows)
    assert len(set(texts)) == 6  # 'a|b',NULL vs 'a','|b'; NULL vs ''; a cent; 1 vs 0 vs 5
    one = pd.DataFrame(
        {expected.KEY: [1, 2], **{c.name: [None, None] for c in CHAT_MESSAGES.migrated}}, dtype=object
    )
    one["id"] = [1, 2]
    later = one.copy()
    later["created_at"] = pd.Series([None, 1], dtype=object)  # a timestamp's last microsecond
    assert digest.of_rows([1, 2], digest.render(CHAT_MESSAGES, one), False) != digest.of_rows(
        [1, 2], digest.render(CHAT_MESSAGES, later), False
    )
    # Key order, not arrival order: rows of a chunk in any order have one digest.
    texts = digest.render(CHAT_MESSAGES, one)
    assert digest.of_rows([1, 2], texts, False) == digest.of_rows([2, 1], texts[::-1], False)


def _target_texts(url: str, table) -> dict:
    """The canonical text PostgreSQL renders for every stored row, by canonical key."""
    row, joins, key = digest.target_row(table)
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(
            sql.SQL("SELECT {k}, {r} FROM {t} t {j}").format(
                k=key, r=row, t=qualified(table), j=sql.SQL(" ").join(joins)
            )
        )
        return {k: text.encode("utf-8") for k, text in cur.fetchall()}


def test_postgresql_renders_the_stored_rows_as_we_render_the_expected_ones(tmp_path, pg_url):
    from agent_migration.sample import write_sample
    from agent_migration_tests.conftest import run_migration

    source = tmp_path / "db.sqlite"
    write_sample(source, scale="tiny", seed=11)
    assert run_migration(source, pg_url, tmp_path).success
    snapshot = query(pg_url, "SELECT snapshot FROM migration.runs ORDER BY finished_at DESC LIMIT 1")[0][0]
    conn = sqlite3.connect(snapshot)
    parents = {}
    for table in SOURCE_TABLES:
        raw = expected.read_after(conn, table, None, 10**6)
        refs = {c.name: parents[p.name] for c, p in table.parent_refs}
        exp = expected.expect(table, raw, expected.source_facts(conn, table), refs)
        parents[table.name] = np.sort(np.asarray(exp.loaded[expected.KEY].tolist(), dtype=np.int64)) if table is AGENTS else None
        if table not in DIGESTED:
            continue
        ours = dict(zip(exp.loaded[expected.KEY].tolist(), digest.render(table, exp.loaded), strict=True))
        theirs = _target_texts(pg_url, table)
        assert len(ours) > 10
        assert ours == theirs, table.name


@pytest.mark.slow
@settings(max_examples=5, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    before=st.fixed_dictionaries({t.source: rows(t, 10) for t in SOURCE_TABLES}),
    planted=st.lists(
        st.tuples(st.sampled_from(DIGESTED), st.integers(0, 30), st.integers(0, 30), st.integers(0, 5)),
        max_size=4,
    ),
)
def test_a_validate_by_digests_finds_and_names_what_a_validate_value_by_value_does(
    before, planted, tmp_path_factory, pg_admin_url
):
    tmp = tmp_path_factory.mktemp("digests")
    path = tmp / "db.sqlite"
    _write(path, before)
    url = create_database(pg_admin_url)
    _migrate(tmp / "first", path, url)
    _plant(url, planted)
    by_digest, by_value = check(path, url, tmp), check(path, url, tmp, by_digest=False)
    assert [_counts(t) for t in by_digest.tables] == [_counts(t) for t in by_value.tables]
    assert sorted(by_digest.lines()) == sorted(by_value.lines())


def _counts(t) -> tuple:
    return (t.name, t.compared, t.matched, t.differing, t.missing, t.extra)


def _plant(url: str, planted: list[tuple]) -> None:
    """Random edits of stored rows: a value set to NULL, '' or another value (a timestamp a microsecond
    later, a cent more), a row deleted. An edit the table's constraints refuse is skipped."""
    for table, row, col, how in planted:
        name, column = f"{SCHEMA}.{table.name}", table.migrated[col % len(table.migrated)]
        if how < 5 and (column.name == table.key or column.references):
            continue
        other = {
            "TIMESTAMP": f"{column.name} + interval '1 microsecond'",
            "DECIMAL(10, 2)": f"{column.name} + 0.01",
            "INTEGER": f"{column.name} + 1",
        }.get(column.pg_type, f"{column.name} || 'x'")
        empty = "''" if column.pg_type == "TEXT" or "CHAR" in column.pg_type else other
        pick = f"(SELECT {table.key} FROM {name} ORDER BY 1 OFFSET {row} LIMIT 1)"
        edit = (
            f"DELETE FROM {name} WHERE {table.key} = {pick}"
            if how == 5
            else f"UPDATE {name} SET {column.name} = {['NULL', other, empty, other, other][how]} WHERE {table.key} = {pick}"
        )
        with psycopg2.connect(url) as conn, conn.cursor() as cur:
            try:
                cur.execute(edit)
            except psycopg2.Error:
                conn.rollback()


def test_chunks_sifted_in_worker_processes_prove_what_one_thread_proves(tmp_path, pg_url, monkeypatch):
    """The same messy source, a difference planted: sifted by two forked workers (every table counts as
    big), the report is the thread's, line for line."""
    from agent_migration.sample import write_sample
    from agent_migration_tests.conftest import run_migration

    source = tmp_path / "db.sqlite"
    write_sample(source, scale="tiny", seed=5)
    assert run_migration(source, pg_url, tmp_path).success
    with psycopg2.connect(pg_url) as conn, conn.cursor() as cur:
        cur.execute("UPDATE chat_messages SET message = message || '!' WHERE id = (SELECT max(id) FROM chat_messages)")
    reports = {}
    monkeypatch.setattr(digest_pass, "ROWS", 16)  # many chunks, each with its own digests
    for workers, big in (("thread", 10**12), ("processes", 1)):
        monkeypatch.setattr(digest_read, "PROCESS_ROWS", big)
        reports[workers] = check(source, pg_url, tmp_path)
    assert reports["processes"].lines() == reports["thread"].lines()
    assert [_counts(t) for t in reports["processes"].tables] == [_counts(t) for t in reports["thread"].tables]
    assert any(line.startswith("chat_messages id=") and " message: " in line for line in reports["processes"].lines())
