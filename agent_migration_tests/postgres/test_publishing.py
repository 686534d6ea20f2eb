"""Tests of `agent_migration.postgres.publishing`: the frames, types and scopes a publish works from."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pandas as pd
import psycopg2
import pyarrow as pa
import pytest
from psycopg2 import sql

from agent_migration.core import contract
from agent_migration.core.artifacts import CleanTable, Delta, Snapshot
from agent_migration.core.contract import REJECT_SCHEMA, arrow_schema
from agent_migration.core.errors import MigrationError
from agent_migration.core.tables import (
    AGENTS,
    BATTLES,
    CHAT_MESSAGES,
    MARKETPLACE_LISTINGS,
    PAYMENTS,
    SOURCE_TABLES,
    TARGET_TABLES,
    USER_BALANCE,
    USERS,
    Col,
)
from agent_migration.postgres import ddl, merge, publishing
from agent_migration.postgres.copy import copy_batches

USERS_FRAME = pd.DataFrame({"id": [1, 2], "username": ["alice", "zoë"]})
# One loadable row per source table, by target column (the rest take a value of their type, below).
ROW = {
    AGENTS.name: {"id": 7, "owner_id": 2, "traits": '{"speed": 3}', "rare_trait": None},
    USER_BALANCE.name: {"user_id": 1, "coins": 40},
    PAYMENTS.name: {"id": 3, "user_id": 2, "amount": Decimal("12.50"), "currency": "EUR"},
    CHAT_MESSAGES.name: {"id": 9, "agent_id": 7, "user_id": None, "role": "assistant"},
}
_OF_TYPE = {"INTEGER": 1, "BOOLEAN": True, "TIMESTAMP": datetime(2024, 1, 2, 3, 4, 5), "JSONB": "{}"}


def value(col: Col, given: dict):
    return given[col.name] if col.name in given else _OF_TYPE.get(col.pg_type, f"{col.name}!")


def clean_tables(folder: Path, snapshot: str = "", deltas: dict | None = None) -> dict[str, CleanTable]:
    """A `CleanTable` per source table, its loadable row and one reject written as the transform writes them."""
    found = {}
    for t in SOURCE_TABLES:
        loaded = pa.table(
            [
                pa.array([value(c, ROW[t.name])], f.type)
                for c, f in zip(t.migrated, arrow_schema(t.migrated), strict=True)
            ],
            schema=arrow_schema(t.migrated),
        )
        rejects = pa.table(
            [["key"], [f"{t.source}.x: bad (got 1)"], ['{"x": 1}'], [99], [f"{t.source}.x: bad"]],
            schema=REJECT_SCHEMA,
        )
        paths = []
        for name, table in (("loaded", loaded), ("rejects", rejects)):
            paths.append(folder / f"{t.name}.{name}.arrow")
            with pa.ipc.new_stream(str(paths[-1]), table.schema) as writer:
                writer.write_table(table)
        delta, rowids = (deltas or {}).get(t.name, (None, None))
        found[t.name] = CleanTable(
            name=t.name,
            loaded_path=str(paths[0]),
            rejects_path=str(paths[1]),
            rows=2,
            loaded=1,
            rejected=1,
            fast_rows=1,
            reasons={f"{t.source}.x: bad": 1},
            preview=[],
            rowids=rowids,
            delta=delta,
            snapshot=snapshot,
        )
    return found


def test_the_frames_copy_into_an_empty_target_as_typed(pg_url, tmp_path):
    """`rows_to_load` and `column_types` describe the users and each cleaned table's Arrow file so that the
    binary COPY fills the target with the values as cleaned; `rejects_to_load` adds the table and run to
    each reject; `first_load` and `table_counts` see the target before and after."""
    clean = clean_tables(tmp_path)
    frames, types = publishing.rows_to_load(USERS_FRAME, clean), publishing.column_types()
    assert list(frames) == [t.name for t in (USERS, *SOURCE_TABLES)]
    assert {name: rows.count for name, rows in frames.items()} == {"users": 2} | {
        t.name: 1 for t in SOURCE_TABLES
    }
    conn = psycopg2.connect(pg_url)
    try:
        cur = conn.cursor()
        ddl.ensure_schema(cur)
        assert publishing.first_load(cur) is True
        assert publishing.table_counts(cur) == {t.name: 0 for t in TARGET_TABLES}
        for table in (USERS, *SOURCE_TABLES):  # parents first
            rows = frames[table.name]
            assert (
                copy_batches(cur, merge.target(table), rows.schema, rows.batches(), types[table.name])
                == rows.count
            )
        for rows in publishing.rejects_to_load(clean, "run-1"):
            copy_batches(
                cur, sql.SQL("migration.rejected_rows"), rows.full_schema, rows.batches(), merge.REJECT_TYPES
            )
        assert publishing.first_load(cur) is False
        assert publishing.table_counts(cur) == {t.name: 0 for t in TARGET_TABLES} | {
            "users": 2,
            "agents": 1,
            "user_balance": 1,
            "payments": 1,
            "chat_messages": 1,
        }
        cur.execute("SELECT username FROM users ORDER BY id")
        assert cur.fetchall() == [("alice",), ("zoë",)]
        cur.execute("SELECT id, owner_id, traits, rare_trait, for_sale, created_at FROM agents")
        assert cur.fetchall() == [(7, 2, {"speed": 3}, None, True, datetime(2024, 1, 2, 3, 4, 5))]
        cur.execute("SELECT user_id, amount, currency FROM payments")
        assert cur.fetchall() == [(2, Decimal("12.50"), "EUR")]
        cur.execute(
            "SELECT source_table, run_id, source_rowid, reason_kind FROM migration.rejected_rows ORDER BY 1"
        )
        assert cur.fetchall() == [
            (t.source, "run-1", 99, f"{t.source}.x: bad")
            for t in sorted(SOURCE_TABLES, key=lambda t: t.source)
        ]
    finally:
        conn.rollback()
        conn.close()


def test_column_types_are_the_target_columns_types(pg_url):
    """Every column a publish copies exists in the target with the type COPY sends (SERIAL as INTEGER);
    the users carry only their id and username, and each source table exactly its migrated columns."""
    types = publishing.column_types()
    assert types[USERS.name] == {"id": "INTEGER", "username": "VARCHAR(255)"}
    assert list(types) == [t.name for t in (USERS, *SOURCE_TABLES)]
    conn = psycopg2.connect(pg_url)
    try:
        cur = conn.cursor()
        ddl.ensure_schema(cur)
        shape = ddl.existing_shape(cur)
    finally:
        conn.rollback()
        conn.close()
    for table, columns in types.items():
        assert "SERIAL" not in columns.values()
        for name, pg_type in columns.items():
            assert shape[table][name] == ddl.reported_type(Col(name, pg_type)), (table, name)
    for t in SOURCE_TABLES:
        assert list(types[t.name]) == arrow_schema(t.migrated).names == [c.name for c in t.migrated]


def _snapshot(changes: dict | None, path: str = "snap.sqlite") -> Snapshot:
    return Snapshot(path, "run", {}, {}, baseline="base.sqlite" if changes else None, changes=changes)


def test_change_scopes_map_each_table_to_its_target_keys_and_source_rowids(tmp_path):
    """A full run has no scopes; a change-only run's scope per table is its redone keys (usernames turned
    into the users' ids, a name without a user dropped) and its redone and gone rowids; cleaned tables of
    different runs are refused."""
    assert publishing.change_scopes(_snapshot(None), USERS_FRAME, clean_tables(tmp_path)) is None
    changes = {contract.USER_CHANGES: {"added": [], "removed": []}}
    deltas = {t.name: (Delta((), ()), ()) for t in SOURCE_TABLES} | {
        AGENTS.name: (Delta((7, 3), (12,)), (7, 3)),
        USER_BALANCE.name: (Delta(("zoë", "nobody", "alice"), (5,)), (8,)),
    }
    scopes = publishing.change_scopes(
        _snapshot(changes), USERS_FRAME, clean_tables(tmp_path, "snap.sqlite", deltas)
    )
    assert scopes == {t.name: {"keys": [], "rowids": []} for t in SOURCE_TABLES} | {
        AGENTS.name: {"keys": [7, 3], "rowids": [3, 7, 12]},
        USER_BALANCE.name: {"keys": [2, 1], "rowids": [5, 8]},
    }
    with pytest.raises(MigrationError, match="different runs"):  # cleaned for another snapshot
        publishing.change_scopes(
            _snapshot(changes), USERS_FRAME, clean_tables(tmp_path, "other.sqlite", deltas)
        )
    with pytest.raises(MigrationError, match="different runs"):  # cleaned by a full run
        publishing.change_scopes(_snapshot(changes), USERS_FRAME, clean_tables(tmp_path, "snap.sqlite"))
    with pytest.raises(MigrationError, match="different runs"):  # some tables only change-only
        publishing.change_scopes(
            _snapshot(None),
            USERS_FRAME,
            clean_tables(tmp_path, "snap.sqlite", {AGENTS.name: deltas[AGENTS.name]}),
        )


def test_nothing_to_merge_only_when_no_row_and_no_username_changed():
    """A change-only run merges nothing only if no table redid a key or rowid and no username came or went."""
    quiet = {t.name: {"keys": [], "rowids": []} for t in SOURCE_TABLES}

    def snap(added=(), removed=()):
        return _snapshot({contract.USER_CHANGES: {"added": list(added), "removed": list(removed)}})

    assert publishing.nothing_to_merge(quiet, snap()) is True
    assert not publishing.nothing_to_merge(quiet, snap(added=["carol"]))
    assert not publishing.nothing_to_merge(quiet, snap(removed=["bob"]))
    assert not publishing.nothing_to_merge(quiet | {PAYMENTS.name: {"keys": [4], "rowids": [4]}}, snap())
    # a row gone whose reject only goes: no key, one rowid
    assert not publishing.nothing_to_merge(quiet | {CHAT_MESSAGES.name: {"keys": [], "rowids": [8]}}, snap())


def test_a_target_is_no_first_load_once_any_app_table_has_a_row(pg_url):
    """A parallel first load replaces whole tables, so any row (even in a table no source fills) stops it."""
    conn = psycopg2.connect(pg_url)
    try:
        cur = conn.cursor()
        ddl.ensure_schema(cur)
        for table, insert in (
            (BATTLES, "INSERT INTO battles DEFAULT VALUES"),
            (USERS, "INSERT INTO users (username) VALUES ('alice')"),
            (AGENTS, "INSERT INTO agents (name) VALUES ('a')"),
            (MARKETPLACE_LISTINGS, "INSERT INTO marketplace_listings (price) VALUES (1)"),
        ):
            cur.execute("SAVEPOINT one")
            cur.execute(insert)
            assert publishing.first_load(cur) is False, table.name
            assert publishing.table_counts(cur)[table.name] == 1
            cur.execute("ROLLBACK TO SAVEPOINT one")
            assert publishing.first_load(cur) is True
    finally:
        conn.rollback()
        conn.close()
