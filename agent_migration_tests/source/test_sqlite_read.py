"""Tests of `agent_migration.source.sqlite_read`: chunk plans, distinct values, the typed fast path and key facts."""

from __future__ import annotations

import sqlite3
import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from agent_migration.core.cleaning import KeyFacts, key_facts_of
from agent_migration.core.tables import CHAT_MESSAGES, SOURCE_TABLES, USER_BALANCE
from agent_migration.resources import SqliteSource
from agent_migration.sample import SCHEMA, write_sample
from agent_migration.source import sqlite_read
from agent_migration.source.database import decode_text


class NotUtf8(bytes):
    """Bytes stored as TEXT (`CAST(? AS TEXT)`): a text value that is not valid UTF-8."""


@contextmanager
def source(statements: list[tuple[str, list]]) -> Iterator[tuple[sqlite3.Connection, object]]:
    """A SQLite file made by `statements` (the app's schema first), opened as the pipeline opens a snapshot:
    read-only sqlite3 (text decoded by `decode_text`) and ADBC."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "db.sqlite"
        conn = sqlite3.connect(path)
        conn.executescript(SCHEMA)
        for statement, params in statements:
            conn.execute(statement, params)
        conn.commit()
        conn.close()
        reader = SqliteSource(path=str(path))
        with reader.connect(path) as ro, reader.connect_arrow(path) as adbc:
            yield ro, adbc


def insert(table: str, columns: str, values: list) -> tuple[str, list]:
    marks = ", ".join("CAST(? AS TEXT)" if isinstance(v, NotUtf8) else "?" for v in values)
    return f"INSERT INTO {table} ({columns}) VALUES ({marks})", [
        bytes(v) if isinstance(v, NotUtf8) else v for v in values
    ]


def rowids_where(conn, where: str, params) -> list[int]:
    return [
        r for (r,) in conn.execute(f"SELECT rowid FROM chat_messages WHERE {where} ORDER BY rowid", params)
    ]


# Rowids with gaps, negatives and the int64 extremes.
ROWIDS = st.sets(
    st.one_of(st.integers(-40, 300), st.sampled_from([-(2**63), -(2**63) + 1, 2**40, 2**63 - 1])), max_size=60
)


@settings(max_examples=60, deadline=None)
@given(rowids=ROWIDS, chunk_rows=st.integers(1, 25), data=st.data())
def test_chunk_plans_cover_every_row_once_in_order(rowids, chunk_rows, data):
    """`range_chunks` cuts the table into consecutive rowid ranges of at most `chunk_rows` rows, each
    counted right, together every row exactly once; `list_chunks` cuts a list of rowids the same way;
    `rowid_range` is the smallest and largest rowid (None for an empty table)."""
    ordered = sorted(rowids)
    wanted = data.draw(st.lists(st.sampled_from(ordered), unique=True)) if ordered else []
    with source([insert("chat_messages", "id, message", [r, "m"]) for r in ordered]) as (conn, _):
        assert sqlite_read.rowid_range(conn, CHAT_MESSAGES) == (
            (ordered[0], ordered[-1]) if ordered else None
        )
        covered = []
        for chunk in sqlite_read.range_chunks(conn, CHAT_MESSAGES, chunk_rows):
            rows = rowids_where(conn, chunk.where, chunk.params)
            assert 1 <= chunk.rows == len(rows) <= chunk_rows
            covered += rows
        assert covered == ordered
        chunks = list(sqlite_read.list_chunks(wanted, chunk_rows))
        assert [len(rowids_where(conn, c.where, c.params)) for c in chunks] == [c.rows for c in chunks]
        assert all(c.rows <= chunk_rows for c in chunks) and len(chunks) == -(-len(wanted) // chunk_rows)
        assert sorted(r for c in chunks for r in rowids_where(conn, c.where, c.params)) == sorted(wanted)


VALUES = st.one_of(
    st.text(max_size=6),
    st.sampled_from(["alice", "Alice", "alice ", "", "a\x00b", "zoë", "1"]),
    st.binary(min_size=1, max_size=4).map(lambda b: NotUtf8(b"\xff" + b)),
    st.binary(max_size=4),  # a BLOB
    st.integers(-3, 3),
    st.sampled_from([1.0, 2.5, -0.0, 2**63 - 1, -(2**63)]),
    st.none(),
)


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(VALUES, max_size=40),
    span=st.one_of(st.none(), st.tuples(st.integers(0, 20), st.integers(0, 45))),
)
def test_distinct_values_are_sqlites_own_distinct_as_stored(values, span):
    """Both ways of finding a column's distinct values (SQLite's sort, and hashing in Arrow) give what
    SQLite's own DISTINCT gives on the raw bytes: text compared byte for byte (case, spaces, NULs and bytes
    that are not UTF-8 kept, the latter as surrogates), each storage class apart, within a rowid span."""
    rows = [("CREATE TABLE any_chat (user_id)", []), *(insert("any_chat", "user_id", [v]) for v in values)]
    chats = replace(CHAT_MESSAGES, source="any_chat")  # no type affinity: every value kept as given
    with source(rows) as (conn, adbc):
        raw = sqlite3.connect(":memory:")  # the reference: the same file read as bytes, no decoding
        raw.execute("ATTACH DATABASE ? AS src", (conn.execute("PRAGMA database_list").fetchone()[2],))
        raw.text_factory = bytes
        where, params = ("", ()) if span is None else (" WHERE rowid BETWEEN ? AND ?", span)
        expected = Counter(
            (kind.decode(), decode_text(v) if kind == b"text" else v)
            for kind, v in raw.execute(
                f"SELECT DISTINCT typeof(user_id), user_id FROM src.any_chat{where}", params
            )
        )
        raw.close()
        kind = {str: "text", bytes: "blob", int: "integer", float: "real", type(None): "null"}
        for found in (
            sqlite_read.distinct_values(conn, chats, "user_id", span),
            sqlite_read.distinct_values_hashed(conn, adbc, chats, "user_id", span),
        ):
            assert Counter((kind[type(v)], v) for v in found) == expected


def _typical(stored: str, kind: str, value) -> bool:
    """Independently of `sqlite_read.typical`: NULL, or the rule's storage class (text without NUL)."""
    return kind == "null" or (kind == stored and not (kind == "text" and b"\x00" in value))


def test_typed_rows_and_odd_rowids_split_every_chunk_of_a_messy_source(tmp_path):
    """On a messy sample, each chunk's rows are split exactly between the typed fast path and the odd
    rowids: a row is typed iff every migrated column holds NULL or its rule's storage class (text
    without NUL); typed values are the stored ones in the rule's Arrow type; the chunks come back in
    order; and the odd rows read as stored carry their rowids."""
    path = tmp_path / "db.sqlite"
    write_sample(path, scale="tiny", seed=5)
    raw = sqlite3.connect(path)
    raw.text_factory = bytes
    reader = SqliteSource(path=str(path))
    seen = Counter()
    with reader.connect(path) as conn, reader.connect_arrow(path) as adbc:
        for table in SOURCE_TABLES:
            cols = [c.source for c in table.migrated]
            select = ", ".join(f'typeof("{c}"), "{c}"' for c in cols)
            stored = {
                r[0]: [(r[1 + 2 * i].decode(), r[2 + 2 * i]) for i in range(len(cols))]
                for r in raw.execute(f"SELECT rowid, {select} FROM {table.source}")
            }
            typical = {
                rowid
                for rowid, row in stored.items()
                if all(_typical(c.rule.stored, k, v) for c, (k, v) in zip(table.migrated, row, strict=True))
            }
            chunks = list(sqlite_read.range_chunks(conn, table, 17))
            chunk_reader = sqlite_read.ChunkReader(conn, adbc, table)
            typed_rowids, odd_rowids = [], []
            for (chunk, typed), planned in zip(chunk_reader.typed(iter(chunks)), chunks, strict=True):
                assert chunk == planned
                assert typed.schema == pa.schema(
                    [("_rowid", pa.int64())]
                    + [(c.source, sqlite_read.ARROW_OF[c.rule.stored]) for c in table.migrated]
                )
                ids = typed.column("_rowid").to_numpy()
                odd = chunk_reader.odd_rowids(chunk, ids)
                assert set(odd).isdisjoint(ids.tolist()) and len(odd) + len(ids) == chunk.rows
                for i, rowid in enumerate(ids.tolist()):
                    for j, (kind, value) in enumerate(stored[rowid]):
                        got = typed.column(j + 1)[i]  # (text as bytes: ADBC does not validate UTF-8)
                        got = got.cast(pa.binary()).as_py() if kind == "text" else got.as_py()
                        assert got == value, (table.name, rowid, cols[j])
                if odd:
                    frame = chunk_reader.rows(odd)
                    assert frame["_rowid"].tolist() == odd
                    assert list(frame.columns) == ["_rowid", *table.source_columns]
                typed_rowids += ids.tolist()
                odd_rowids += odd
            assert set(typed_rowids) == typical, table.name
            assert set(odd_rowids) == set(stored) - typical, table.name
            seen["typed"] += len(typed_rowids)
            seen["odd"] += len(odd_rowids)
    raw.close()
    assert seen["typed"] > 300 and seen["odd"] > 10  # the sample plants odd rows in every table


USERNAMES = st.one_of(
    st.sampled_from(
        ["alice", "Alice", "alice ", " alice", "", " ", "1", "a\\b", "a\\\\b", "a\x00b", "\\u0061"]
    ),
    st.sampled_from([1, 1.0, 2.5, None, b"alice", b"1"]),
    st.just(NotUtf8(b"al\xffce")),
)
IDS = st.one_of(
    st.integers(-1, 3),
    st.sampled_from(["1", "01", " 1", "x", 1.0, 1.5, None, 2**40, b"\x01", "1\x00", "²", "-٣"]),  # Unicode digits: no numbers
)


def facts_agree(conn, table) -> None:
    """`key_facts` (set-based) against `key_facts_of` over every row: the same duplicates, and the same
    ambiguous rows once NULL keys are added (each chunk marks those itself)."""
    frame = sqlite_read.read_table(conn, table)
    whole = key_facts_of(table, frame)
    nulls = set(frame.loc[frame[table.key_col.source].isna(), "_rowid"].tolist())
    found = sqlite_read.key_facts(conn, table)
    assert found.duplicates == whole.duplicates
    assert found.ambiguous | nulls == whole.ambiguous | nulls and not found.ambiguous & nulls


@settings(max_examples=30, deadline=None)
@given(keys=st.lists(USERNAMES, max_size=25), ids=st.lists(IDS, max_size=25))
def test_set_based_key_facts_equal_the_whole_table_facts(keys, ids):
    """The duplicate and ambiguous keys SQLite finds set-based (plus the odd keys' probes) are exactly
    those the in-frame logic finds over every row of the table, for a username key and for an integer key
    that is not the rowid, in columns without type affinity (values kept as given); a rowid key never
    repeats."""
    rows = [
        ("CREATE TABLE any_balance (user_id, coins, updated_at)", []),
        ("CREATE TABLE any_chat (id, agent_id, user_id, message, role, created_at)", []),
        *(insert("any_balance", "user_id", [k]) for k in keys),
        *(insert("any_chat", "id", [i]) for i in ids),
        *(insert("chat_messages", "id", [i]) for i in range(3)),
    ]
    with source(rows) as (conn, _):
        facts_agree(conn, replace(USER_BALANCE, source="any_balance"))  # the same specs, other tables
        facts_agree(conn, replace(CHAT_MESSAGES, source="any_chat"))
        assert sqlite_read.key_facts(conn, CHAT_MESSAGES) == KeyFacts()  # `id INTEGER PRIMARY KEY`: the rowid


def test_schema_objects_are_the_sources_own_statements_in_creation_order(tmp_path):
    """What a rollback recreates: every table, index, view and trigger the source declared, in order,
    without SQLite's internal objects (autoindexes, sqlite_sequence)."""
    path = tmp_path / "db.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript(
        """CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT UNIQUE);
           CREATE INDEX t_name ON t (name);
           CREATE VIEW v AS SELECT name FROM t;
           CREATE TRIGGER tr AFTER INSERT ON t BEGIN SELECT 1; END;
           INSERT INTO t (name) VALUES ('x');"""
    )
    conn.close()
    with SqliteSource(path=str(path)).connect(path) as ro:
        found = sqlite_read.schema_objects(ro)
    assert [(kind, name, table) for kind, name, table, _ in found] == [
        ("table", "t", "t"),
        ("index", "t_name", "t"),
        ("view", "v", "v"),
        ("trigger", "tr", "t"),
    ]
    assert found[0][3].startswith("CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT")
