"""Tests of `agent_migration.postgres.merge`: the advisory lock, the key merge, listings and sequences."""

from __future__ import annotations

import psycopg2
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent_migration.core.contract import arrow_type
from agent_migration.core.tables import AGENTS, BATTLES, CHAT_MESSAGES, USER_BALANCE, USERS
from agent_migration.postgres import ddl, merge
from agent_migration.postgres.copy import Rows
from agent_migration_tests.conftest import query


def schema(url: str, *statements: str) -> None:
    """The target tables, then `statements`, committed."""
    conn = psycopg2.connect(url)
    with conn, conn.cursor() as cur:
        ddl.ensure_schema(cur)
        for statement in statements:
            cur.execute(statement)
    conn.close()


def staged(cur, table, types: dict[str, str], rows: list[tuple]) -> int:
    """`rows` staged through `merge.stage` (binary COPY into the temporary stage table)."""
    columns = list(types)
    arrow = pa.table({c: pa.array([r[i] for r in rows], arrow_type(types[c])) for i, c in enumerate(columns)})
    return merge.stage(cur, table, types, Rows(arrow.schema, len(rows), table=arrow))


def test_a_second_connection_cannot_take_the_lock_while_the_first_holds_it(pg_url):
    """The advisory lock is exclusive across connections, `lock` fails clearly (naming the lock) instead of
    waiting past its limit, and the lock is the transaction's: it is free again once the holder commits."""
    first, second = psycopg2.connect(pg_url), psycopg2.connect(pg_url)
    try:
        a, b = first.cursor(), second.cursor()
        merge.lock(a, wait_s=0)  # free: taken at once
        assert merge.try_lock(b) is False
        with pytest.raises(merge.ConcurrentRun, match=str(merge.LOCK_KEY)):
            merge.lock(b, wait_s=0)
        assert merge.try_lock(a) is True  # the holder may take it again
        second.rollback()
        first.commit()  # ends the transaction, and with it the lock
        assert merge.try_lock(b) is True
        assert merge.try_lock(a) is False
        second.rollback()
        assert merge.try_lock(a) is True
    finally:
        first.close()
        second.close()


_COINS = st.one_of(st.none(), st.integers(0, 3))
_BALANCES = st.dictionaries(st.integers(1, 8), _COINS, max_size=8)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(before=_BALANCES, source=_BALANCES)
def test_upsert_then_delete_missing_makes_the_target_equal_the_stage(pg_url, before, source):
    """Whatever the target held, merging a staged table leaves exactly the staged rows; the counts are the
    set differences (an update only where a value differs, NULL compared as a value), and merging the same
    stage again changes nothing."""
    if not query(pg_url, "SELECT to_regclass('public.user_balance') IS NOT NULL")[0][0]:
        # (once: the database is the test's, shared by its examples; each example rolls back)
        schema(
            pg_url, "INSERT INTO users (id, username) SELECT i, 'user_' || i FROM generate_series(1, 8) AS i"
        )
    conn = psycopg2.connect(pg_url)
    try:
        cur = conn.cursor()
        for user_id, coins in before.items():
            cur.execute("INSERT INTO user_balance (user_id, coins) VALUES (%s, %s)", (user_id, coins))
        assert merge.is_empty(cur, USER_BALANCE) is not bool(before)
        assert staged(
            cur, USER_BALANCE, {"user_id": "INTEGER", "coins": "INTEGER"}, list(source.items())
        ) == len(source)
        inserted, updated = merge.upsert(cur, USER_BALANCE, ["user_id", "coins"])
        deleted = merge.delete_missing(cur, USER_BALANCE)
        assert inserted == len(source.keys() - before.keys())
        assert updated == sum(1 for k in source.keys() & before.keys() if source[k] != before[k])
        assert deleted == len(before.keys() - source.keys())
        cur.execute("SELECT user_id, coins FROM user_balance")
        assert dict(cur.fetchall()) == source
        assert merge.upsert(cur, USER_BALANCE, ["user_id", "coins"]) == (0, 0)
        assert merge.delete_missing(cur, USER_BALANCE) == 0
    finally:
        conn.rollback()
        conn.close()


def test_a_scoped_delete_removes_only_missing_keys_in_scope_and_cascades(pg_url):
    """With `keys`, `delete_missing` deletes only the scoped target rows missing from the stage (a
    change-only re-sync staged only those); the plan's ON DELETE actions follow the deleted agents."""
    schema(
        pg_url,
        "INSERT INTO users (id, username) VALUES (1, 'alice')",
        "INSERT INTO agents (id, name, owner_id) VALUES (1, 'a', 1), (2, 'b', 1), (3, 'c', 1), (4, 'd', 1)",
        "INSERT INTO chat_messages (id, agent_id, message, role) VALUES (10, 3, 'hi', 'user'), (11, 4, 'yo', 'user')",
        "INSERT INTO battles (agent_a_id, agent_b_id, winner_id) VALUES (3, 4, 3)",
    )
    conn = psycopg2.connect(pg_url)
    try:
        cur = conn.cursor()
        staged(cur, AGENTS, {"id": "INTEGER", "name": "VARCHAR(255)"}, [(1, "a")])  # 2, 3 and 4 are gone
        assert merge.delete_missing(cur, AGENTS, keys=[1, 3]) == 1  # only 3: 2 and 4 are out of scope
        assert merge.delete_missing(cur, AGENTS, keys=[]) == 0
        cur.execute("SELECT id FROM agents ORDER BY id")
        assert cur.fetchall() == [(1,), (2,), (4,)]
        cur.execute("SELECT id FROM chat_messages")
        assert cur.fetchall() == [(11,)]  # CASCADE
        cur.execute("SELECT agent_a_id, agent_b_id, winner_id FROM battles")
        assert cur.fetchall() == [(None, 4, None)]  # SET NULL
        assert merge.delete_missing(cur, AGENTS) == 2  # unscoped: every key missing from the stage
        assert not merge.is_empty(cur, AGENTS) and merge.is_empty(cur, CHAT_MESSAGES)
    finally:
        conn.rollback()
        conn.close()


def test_listings_follow_their_agents_for_sale(pg_url):
    """One active listing per agent for sale with a price, at its price and owner; an agent taken off sale
    has its listing cancelled (kept), and gets that same listing back when put on sale again; a second
    sync changes nothing."""
    schema(
        pg_url,
        "INSERT INTO users (id, username) VALUES (1, 'alice'), (2, 'bob')",
        """INSERT INTO agents (id, name, owner_id, for_sale, price) VALUES
           (1, 'on sale', 1, TRUE, 10), (2, 'no price', 1, TRUE, NULL), (3, 'kept', 2, FALSE, 50)""",
    )
    conn = psycopg2.connect(pg_url)
    try:
        cur = conn.cursor()

        def listings():
            cur.execute("SELECT id, agent_id, seller_id, price, status FROM marketplace_listings ORDER BY id")
            return cur.fetchall()

        nothing = {"cancelled": 0, "updated": 0, "reactivated": 0, "inserted": 0}
        assert merge.sync_listings(cur) == nothing | {"inserted": 1}
        [(listing, *_)] = listings()
        assert listings() == [(listing, 1, 1, 10, "active")]
        assert merge.sync_listings(cur) == nothing
        cur.execute("UPDATE agents SET price = 20, owner_id = 2 WHERE id = 1")
        assert merge.sync_listings(cur) == nothing | {"updated": 1}
        assert listings() == [(listing, 1, 2, 20, "active")]
        cur.execute("UPDATE agents SET for_sale = FALSE WHERE id = 1")
        assert merge.sync_listings(cur) == nothing | {"cancelled": 1}
        assert listings() == [(listing, 1, 2, 20, "cancelled")]
        cur.execute("UPDATE agents SET for_sale = TRUE, price = 30 WHERE id = 1")
        assert merge.sync_listings(cur) == nothing | {"reactivated": 1}
        assert listings() == [(listing, 1, 2, 30, "active")]
        assert merge.sync_listings(cur) == nothing
    finally:
        conn.rollback()
        conn.close()


def test_sequences_advance_past_every_id_and_never_go_back(pg_url):
    """`advance_sequence` moves the SERIAL past the largest id and past a given source id (a rejected row's),
    never backwards; an id beyond INTEGER leaves the sequence at its maximum instead of failing; a table
    without SERIAL has no next id."""
    schema(pg_url, "INSERT INTO users (id, username) VALUES (1, 'alice')")
    conn = psycopg2.connect(pg_url)
    try:
        cur = conn.cursor()
        assert merge.next_id(cur, USER_BALANCE) is None
        merge.advance_sequence(cur, USER_BALANCE)  # nothing to advance
        assert merge.next_id(cur, BATTLES) == 1
        merge.advance_sequence(cur, BATTLES)  # an empty table: the first insert still gets 1
        assert merge.next_id(cur, BATTLES) == 1
        cur.execute(
            "INSERT INTO agents (id, name) VALUES (5, 'a'), (7, 'b')"
        )  # ids given: the sequence is unused
        assert merge.next_id(cur, AGENTS) == 1
        merge.advance_sequence(cur, AGENTS)
        assert merge.next_id(cur, AGENTS) == 8
        merge.advance_sequence(cur, AGENTS, past=100)
        assert merge.next_id(cur, AGENTS) == 101
        merge.advance_sequence(cur, AGENTS, past=3)
        merge.advance_sequence(cur, AGENTS)
        assert merge.next_id(cur, AGENTS) == 101
        cur.execute("INSERT INTO agents (name) VALUES ('app') RETURNING id")
        assert cur.fetchone()[0] == 101
        assert merge.next_id(cur, USERS) == 1
        merge.advance_sequence(cur, USERS, past=2**40)
        assert merge.next_id(cur, USERS) == 2**31  # handed out up to INTEGER's maximum
    finally:
        conn.rollback()
        conn.close()


def test_detached_keys_and_indexes_are_restored_as_they_were(pg_url):
    """`detach_for_bulk` drops a table's foreign keys and secondary indexes (rows breaking them can then be
    copied), and the statements it returns restore them under the same names and definitions."""
    schema(pg_url)
    catalog = """SELECT 'c', conname, pg_get_constraintdef(oid) FROM pg_constraint
                 WHERE conrelid = 'public.chat_messages'::regclass
                 UNION ALL SELECT 'i', indexname, indexdef FROM pg_indexes WHERE tablename = 'chat_messages'
                 ORDER BY 1, 2"""
    before = query(pg_url, catalog)
    conn = psycopg2.connect(pg_url)
    with conn, conn.cursor() as cur:
        restore = merge.detach_for_bulk(cur, CHAT_MESSAGES)
        cur.execute("SELECT count(*) FROM pg_indexes WHERE tablename = 'chat_messages'")
        assert cur.fetchone()[0] == 1  # the primary key stays
        cur.execute("INSERT INTO chat_messages (id, agent_id, message, role) VALUES (1, 999, 'x', 'user')")
        cur.execute("DELETE FROM chat_messages")
        for statement in restore:
            cur.execute(statement)
    conn.close()
    assert len(restore) == 2 + 3  # agents and users keys, three indexes
    assert query(pg_url, catalog) == before
