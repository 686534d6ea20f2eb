"""The streaming path (typed fast path + exact path, chunk by chunk) against the exact rules on the whole table.

Values are drawn mostly of the storage class each rule reads typed (so the fast path decides most rows,
edge cases included), with any SQLite value mixed in; keys come from a small pool, so duplicates span
chunks; the chunk size is drawn too.
"""

from __future__ import annotations

import json
import sqlite3
import tempfile
from collections import Counter
from decimal import Decimal
from pathlib import Path
from unittest.mock import patch

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent_migration.core.cleaning import (
    PAYLOAD,
    REJECT,
    SOURCE_KEY,
    SOURCE_ROWID,
    clean_table,
    derive_users,
    reason_kind,
    reject_missing_parents,
    remap_users,
    usernames,
)
from agent_migration.core.contract import arrow_schema
from agent_migration.core.rules import Json, Username
from agent_migration.core.tables import SOURCE_TABLES, Table
from agent_migration.resources import SqliteSource
from agent_migration.source import sqlite_read
from agent_migration.transform import streaming
from agent_migration.transform.fastpath import UserMap, fast_column
from agent_migration.transform.streaming import CleaningInputs, clean_stream
from agent_migration_tests.core.test_rules import sqlite_values

INTEGERS = st.one_of(
    st.integers(-3, 120),
    st.sampled_from([2**31 - 1, 2**31, -(2**31), -(2**31) - 1, 2**48, 0, 1]),
    st.integers(-(2**63), 2**63 - 1),
)
NAMES = ["alice", "Alice", " ", "", "bob ", "\x1c", "x" * 256, "zoë", "user", "assistant", "system", "a\\b"]
TEXTS = st.one_of(
    st.sampled_from(NAMES),
    st.text(max_size=12),
    st.text(alphabet=st.characters(min_codepoint=0x1, max_codepoint=0x2FF), min_size=40, max_size=300),
    # multi-line chat text: quotes, backslashes, CR LF, tabs, other control characters, NUL, emoji; long
    st.lists(st.sampled_from(['"', "\\", "\r\n", "\n", "\t", "\x0b", "\x00", "😀", "é", " ", "ab"]), max_size=900).map(
        "".join
    ),
)
JSONS = st.sampled_from(
    ['{"a": 1}', "", "[1, 2]", "{bad", "NaN", '"\\u0000"', '{"k": "\\ud800"}', '"x"', "1e400", "{}", " {} "]
)
TIMES = st.one_of(
    st.sampled_from(
        [
            "2024-01-02 03:04:05",
            "2024-02-30 00:00:00",
            "2024-02-29 23:59:59",
            "0999-01-01 00:00:00",
            "2024-01-02T03:04:05Z",
            "1700000000",
            "2024-1-2 3:4:5",
            "2024-01-01 24:00:00",
            " 2024-01-02 03:04:05",
            "2024-01-01 23:59:60",
        ]
    ),
    st.datetimes().map(lambda d: d.strftime("%Y-%m-%d %H:%M:%S")),
)
REALS = st.one_of(
    st.sampled_from(
        [0.0, 1.5, 19.99, 0.001, -1.0, 99999999.99, 1e8, float("nan"), float("inf"), 5.005, 0.1 + 0.2]
    ),
    st.floats(),
)
UNDECODABLE_TEXT = st.binary(min_size=1, max_size=6).map(lambda b: ("bad", b"\xff" + b))


GOOD = {  # valid values of each kind, so that most typical rows load through the fast path
    "integer": st.integers(0, 100),
    "bool": st.sampled_from([0, 1]),
    "username": st.sampled_from(["alice", "Alice", "zoë", "李雷", "bob "]),
    "role": st.sampled_from(["user", "assistant", "system"]),
    "real": st.sampled_from([0.0, 1.5, 19.99, 4.99, 100.0]),
    "json": st.sampled_from(['{"a": 1}', "{}", "[1]"]),
    "time": st.datetimes(min_value=__import__("datetime").datetime(1000, 1, 1)).map(
        lambda d: d.strftime("%Y-%m-%d %H:%M:%S")
    ),
    "text": st.one_of(
        st.sampled_from(["alice", "zoë", "user", "assistant", "system"]),
        st.text(
            alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x2FF, exclude_categories=["Cs"]),
            max_size=20,
        ),
    ),
}
EDGE = {"integer": INTEGERS, "real": REALS, "json": JSONS, "time": TIMES, "text": TEXTS}
EDGE |= {"bool": INTEGERS, "username": TEXTS, "role": TEXTS}


def kind(col) -> str:
    rule = col.rule
    named = {"Boolean": "bool", "Username": "username", "OneOf": "role"}.get(type(rule).__name__)
    if named:
        return named
    if rule.stored in ("integer", "real"):
        return rule.stored
    if isinstance(rule, Json):
        return "json"
    return "time" if type(rule).__name__ == "Timestamp" else "text"


def typical(col) -> st.SearchStrategy:
    good, edge = GOOD[kind(col)], EDGE[kind(col)]
    return st.one_of(good, good, good, good, good, good, good, good, edge)


def key_values(col, odd: bool) -> st.SearchStrategy:
    """Mostly unique keys, some from a small pool: duplicates, also across chunks."""
    if col.rule.stored == "integer":
        unique, pool = st.integers(9, 10**9), st.integers(1, 8)
    else:
        unique, pool = st.text(alphabet="abcdefghij", min_size=3, max_size=8), st.sampled_from(NAMES[:6])
    return st.one_of(pool, sqlite_values) if odd else st.one_of(unique, unique, unique, pool)


@st.composite
def typical_rows(draw, table: Table) -> tuple:
    """Valid values of each rule's storage class, but in one column an edge case or NULL."""
    special = draw(st.sampled_from(range(len(table.migrated))))
    row = []
    for i, col in enumerate(table.migrated):
        if col is table.key_col:
            row.append(draw(key_values(col, False)))
        elif i == special:
            row.append(draw(st.one_of(EDGE[kind(col)], st.none())))
        else:
            row.append(draw(GOOD[kind(col)]))
    return tuple(row)


@st.composite
def odd_rows(draw, table: Table) -> tuple:
    """Any value anywhere: other storage classes, text that is not UTF-8, BLOBs."""
    strategies = [
        key_values(c, True) if c is table.key_col else st.one_of(typical(c), sqlite_values, UNDECODABLE_TEXT)
        for c in table.migrated
    ]
    return draw(st.tuples(*strategies))


@st.composite
def sources(draw):
    table = draw(st.sampled_from(SOURCE_TABLES))
    row = st.one_of(typical_rows(table), typical_rows(table), typical_rows(table), odd_rows(table))
    rows = draw(st.lists(row, min_size=1, max_size=24))
    parents = {c.name: draw(st.sets(st.integers(-3, 120), max_size=40)) for c, _ in table.parent_refs}
    return table, rows, parents, draw(st.integers(1, 9)), draw(st.sampled_from([1, 4, streaming.EXACT_ROWS]))


def bind(value):
    if isinstance(value, tuple):  # ("bad", bytes): text holding bytes that are not UTF-8
        return value[1]
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return value.encode("utf-8", "surrogateescape")
    return value


def write(path: Path, table: Table, rows: list[tuple]) -> None:
    conn = sqlite3.connect(path)
    cols = ", ".join(f'"{c}"' for c in table.source_columns)
    conn.execute(f'CREATE TABLE "{table.source}" ({cols})')  # no affinity: every value as generated
    for row in rows:
        marks = ", ".join("CAST(? AS TEXT)" if isinstance(v, tuple) else "?" for v in row)
        conn.execute(f'INSERT INTO "{table.source}" VALUES ({marks})', [bind(v) for v in row])
    conn.commit()
    conn.close()


def plain(value):
    """A loaded value as one comparable Python value."""
    if value is None or (not isinstance(value, str | dict | list) and pd.isna(value)):
        return None
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    if isinstance(value, Decimal):
        return str(value)
    if hasattr(value, "item"):
        return value.item()
    return value


def as_rows(table: Table, loaded: pa.Table) -> list[tuple]:
    json_cols = {c.name for c in table.migrated if isinstance(c.rule, Json)}
    out = []
    for row in loaded.to_pylist():
        out.append(
            tuple(json.loads(v) if k in json_cols and v is not None else plain(v) for k, v in row.items())
        )
    return sorted(out, key=repr)


def expected(table: Table, raw: pd.DataFrame, users: pd.DataFrame, parents: dict) -> tuple:
    frame = remap_users(table, clean_table(table, raw), users)
    for col, _ in table.parent_refs:
        frame = reject_missing_parents(frame, col.name, pd.Series(sorted(parents[col.name])), table, raw)
    ok = frame[REJECT].isna()
    schema_cols = [c.name for c in table.migrated]
    loaded = pa.Table.from_pandas(
        frame.loc[ok, schema_cols], schema=arrow_schema(table.migrated), preserve_index=False
    )
    bad = frame[~ok]
    rejects = sorted(  # payloads byte for byte: the vectorized ones must equal the per-row `json`
        (k, r, p, int(i))
        for k, r, p, i in zip(bad[SOURCE_KEY], bad[REJECT], bad[PAYLOAD], bad[SOURCE_ROWID], strict=True)
    )
    return as_rows(table, loaded), rejects


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(case=sources())
def test_streamed_chunks_decide_every_row_as_the_exact_rules_on_the_whole_table(case, tmp_path_factory):
    table, rows, parent_sets, chunk_rows, exact_rows = case  # exact rows gathered over chunks, or not
    tmp = tmp_path_factory.mktemp("stream")
    path = tmp / "db.sqlite"
    write(path, table, rows)
    source = SqliteSource(path=str(path))
    with source.connect(path) as conn, source.connect_arrow(path) as adbc:
        raw = sqlite_read.read_table(conn, table)
        names = [usernames(table, raw)] if any(isinstance(c.rule, Username) for c in table.migrated) else []
        users = derive_users(names, pd.DataFrame({"id": [], "username": []}).astype({"id": "int64"}))
        parents = {k: np.array(sorted(v), dtype=np.int64) for k, v in parent_sets.items()}
        want_loaded, want_rejects = expected(table, raw, users, parents)

        facts = sqlite_read.key_facts(conn, table)
        chunks = sqlite_read.range_chunks(conn, table, chunk_rows)
        out = (tmp / "loaded.arrow", tmp / "rejects.arrow")
        reader = sqlite_read.ChunkReader(conn, adbc, table)
        with patch.object(streaming, "EXACT_ROWS", exact_rows):
            written = clean_stream(reader, table, chunks, CleaningInputs(users, parents, facts), out, keep_keys=False)

    with pa.OSFile(str(out[0])) as f:
        got_loaded = as_rows(table, pa.ipc.open_stream(f).read_all())
    with pa.OSFile(str(out[1])) as f:
        got = pa.ipc.open_stream(f).read_all().to_pylist()
    got_rejects = sorted(
        (
            r["source_key"],
            r["reason"],
            r["payload"],
            r["source_rowid"],
        )
        for r in got
    )
    assert all(r["reason_kind"] == reason_kind(r["reason"]) for r in got)  # the fast path's kinds too
    assert written.rows == len(rows) == written.loaded + written.rejected
    assert written.fast_rows <= written.rows
    assert got_rejects == want_rejects
    assert got_loaded == want_loaded


RULES = sorted(
    {(f"{t.source}.{c.source}", c.name, c.rule) for t in SOURCE_TABLES for c in t.migrated}, key=repr
)


@st.composite
def rule_values(draw):
    label, name, rule = draw(st.sampled_from(RULES))
    col = next(c for t in SOURCE_TABLES for c in t.migrated if c.rule == rule)
    values = draw(st.lists(st.one_of(GOOD[kind(col)], EDGE[kind(col)], st.none()), max_size=30))
    return label, name, rule, values


@settings(max_examples=400, deadline=None)
@given(case=rule_values())
def test_the_fast_path_decides_a_value_only_as_the_exact_rule_does(case):
    label, name, rule, values = case
    values = [v for v in values if not (isinstance(v, str) and "\x00" in v)]  # SQL keeps NULs out
    exact = rule.apply(pd.Series(values, dtype=object), label, name)
    names = sorted({v for v in exact.values.dropna()} if isinstance(rule, Username) else set())
    users = pd.DataFrame({"id": range(1, len(names) + 1), "username": names})
    column = pa.array(values, sqlite_read.ARROW_OF[rule.stored])
    fast = fast_column(rule, column, label, name, UserMap.of(users))
    ids = dict(zip(users["username"], users["id"], strict=True))
    reasons = fast.reasons.to_pylist() if fast.reasons is not None else [None] * len(values)
    want_reasons = [None if pd.isna(r) else r for r in exact.reasons]
    got = fast.values.to_pylist()
    for i, value in enumerate(values):
        if fast.exact[i]:
            continue
        assert reasons[i] == want_reasons[i], (value, reasons[i], want_reasons[i])
        if reasons[i] is None:
            want = plain(exact.values[i])
            if isinstance(rule, Username) and want is not None:
                want = ids[want]
            if isinstance(rule, Json) and want is not None:
                want, got[i] = json.loads(want), json.loads(got[i])
            assert plain(got[i]) == want, (value, got[i], want)


def test_only_a_true_rowid_alias_is_taken_for_a_key_without_duplicates():
    conn = sqlite3.connect(":memory:")
    for name, ddl in {
        "alias": "id INTEGER PRIMARY KEY, x",
        "int_key": "id INT PRIMARY KEY, x",  # INT, not INTEGER: a key of its own, may hold 1 and '1'
        "desc_key": "id INTEGER PRIMARY KEY DESC, x",  # SQLite's documented exception: no alias
        "plain": "id INTEGER, x",
    }.items():
        conn.execute(f"CREATE TABLE {name} ({ddl})")
    assert [sqlite_read.is_rowid(conn, t, "id") for t in ("alias", "int_key", "desc_key", "plain")] == [
        True,
        False,
        False,
        False,
    ]


_NOT_UTF8 = st.binary(min_size=1, max_size=6).map(lambda b: ("bad", b"\xff" + b))


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(st.one_of(sqlite_values, _NOT_UTF8), max_size=80),
    span=st.one_of(st.none(), st.tuples(st.integers(-2, 40), st.integers(0, 90))),
)
def test_hashed_distinct_values_are_sqlites_own(values, span):
    """The users' names found by hashing in Arrow are SQLite's DISTINCT, value for value: text as stored
    (bytes that are not UTF-8, NULs and case kept), and the other storage classes apart."""
    chats = next(t for t in SOURCE_TABLES if t.name == "chat_messages")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "db.sqlite"
        conn = sqlite3.connect(path)
        conn.execute('CREATE TABLE chat_messages ("user_id")')
        for v in values:
            mark = "CAST(? AS TEXT)" if isinstance(v, tuple) else "?"
            conn.execute(f"INSERT INTO chat_messages VALUES ({mark})", [bind(v)])
        conn.commit()
        conn.close()
        source = SqliteSource(path=str(path))
        with source.connect(path) as conn, source.connect_arrow(path) as adbc:
            hashed = sqlite_read.distinct_values_hashed(conn, adbc, chats, "user_id", span)
            sorted_ = sqlite_read.distinct_values(conn, chats, "user_id", span)

    def kinds(found: pd.Series) -> Counter:
        return Counter((type(v).__name__, v) for v in found)

    assert kinds(hashed) == kinds(sorted_)
    assert len(hashed) == len(sorted_)
