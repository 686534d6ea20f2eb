"""The source side of `validate`: source rows as SQLite stores them, through the exact per-value rules,
into the canonical form both sides are compared in.

Independent of the load path on purpose: rows are read here with plain `sqlite3` (Python objects, no
Arrow, no typed reads), and judged by the exact rules (`core/rules.py`, whole rows by `core/cleaning.py`),
the specification. Nothing of the fast path, the run's Arrow files or the COPY encoder is used, so a
bug there shows up as a difference.

Canonical form of a value (the same on the target side, `target_read.py`): integers as int, text as
str, usernames as the username text (compared through `users`), JSON as the parsed JSON value,
timestamps as microseconds since the Unix epoch (UTC), money as integer cents, booleans as bool, NULL
as None.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass

import numpy as np
import pandas as pd

from agent_migration.core.cleaning import (
    REJECT,
    SOURCE_KEY,
    SOURCE_ROWID,
    KeyFacts,
    clean_table,
    reject_missing_parents,
)
from agent_migration.core.rules import Boolean, Json, Money, Timestamp, Username
from agent_migration.core.tables import Col, Table
from agent_migration.source import sqlite_read
from agent_migration.source.database import decode_text
from agent_migration.source.files import sqlite_ident
from agent_migration.validation import plain

KEY = plain.KEY


@dataclass(frozen=True)
class Expected:
    """What the target must hold for a set of source rows: `loaded` (KEY plus every migrated column,
    canonical) and `rejected` (rowid, source key, reason, the raw row as a dict of source column -> value)."""

    loaded: pd.DataFrame
    rejected: pd.DataFrame


def _query(conn: sqlite3.Connection, sql: str, params: tuple) -> list[tuple]:
    """Rows as stored: SQLite's fast decoding, or, only when some text is not UTF-8, one that keeps the
    bytes (as surrogates: the rules reject them and the payload keeps them)."""
    conn.text_factory = str
    try:
        return conn.execute(sql, params).fetchall()
    except sqlite3.OperationalError as exc:
        if "decode" not in str(exc):
            raise
    conn.text_factory = decode_text
    return conn.execute(sql, params).fetchall()


def _frame(table: Table, rows: list[tuple], utf8: bool) -> pd.DataFrame:
    """Raw rows -> an object frame (`_rowid` and each source column), each value the object SQLite gave;
    `attrs["utf8"]`: every text decoded as UTF-8 (no undecodable bytes kept as surrogates)."""
    columns = [SOURCE_ROWID, *table.source_columns]
    block = np.empty((len(rows), len(columns)), dtype=object)
    if rows:
        block[:] = rows
    frame = pd.DataFrame({c: pd.Series(block[:, i], dtype=object) for i, c in enumerate(columns)})
    frame.attrs["utf8"] = utf8
    return frame


def _select(table: Table) -> str:
    cols = ", ".join(sqlite_ident(c) for c in table.source_columns)
    return f"SELECT rowid, {cols} FROM {sqlite_ident(table.source)}"


def read_after(conn: sqlite3.Connection, table: Table, after: int | None, limit: int) -> pd.DataFrame:
    """The next `limit` rows in rowid order after rowid `after` (None: from the start)."""
    where, params = ("", ()) if after is None else (" WHERE rowid > ?", (after,))
    rows = _query(conn, f"{_select(table)}{where} ORDER BY rowid LIMIT ?", (*params, limit))
    return _frame(table, rows, conn.text_factory is str)


def read_rowids(conn: sqlite3.Connection, table: Table, rowids: list[int]) -> pd.DataFrame:
    """The rows with these rowids (those that exist), in rowid order."""
    where = " WHERE rowid IN (SELECT value FROM json_each(?)) ORDER BY rowid"
    rows = _query(conn, _select(table) + where, (json.dumps(rowids),))
    return _frame(table, rows, conn.text_factory is str)


def expect(
    table: Table, raw: pd.DataFrame, facts: KeyFacts, parents: dict[str, np.ndarray], vectorized: bool = True
) -> Expected:
    """What the target must hold for raw rows (rowid order): the canonical target rows and the rejects.

    Plain rows (`plain.py`) are computed vectorized; every other row goes through the exact rules, whole
    (`vectorized=False`: every row does). `facts`: which rows share a key over the whole table;
    `parents`: per parent reference column, the sorted keys of the parent rows that load (a row naming
    any other is rejected)."""
    if vectorized:
        fast, rest = plain.split(table, raw, facts, parents, raw.attrs.get("utf8", False))
        raw = raw[rest]
    frame = clean_table(table, raw, facts)
    for col, _ in table.parent_refs:
        frame = reject_missing_parents(frame, col.name, pd.Series(parents[col.name]), table, raw)
    ok = frame[REJECT].isna()
    loaded = pd.DataFrame({KEY: canonical(table.key_col, frame.loc[ok, table.key])})
    for col in table.migrated:
        loaded[col.name] = canonical(col, frame.loc[ok, col.name])
    if vectorized and len(fast):
        loaded = pd.concat([fast, loaded], ignore_index=True) if len(loaded) else fast
    bad = frame.index[~ok]
    rejected = pd.DataFrame(
        {
            "rowid": raw.loc[bad, SOURCE_ROWID].astype("int64"),
            "source_key": frame.loc[bad, SOURCE_KEY].astype(object),
            "reason": frame.loc[bad, REJECT].astype(object),
            "payload": raw.loc[bad, table.source_columns].to_dict("records"),
        }
    )
    return Expected(loaded.reset_index(drop=True), rejected.reset_index(drop=True))


def _objects(values: pd.Series, dtype: str | None = None) -> np.ndarray:
    """Values as an object array, every missing value (None, NaN, NA, NaT) as None."""
    if dtype is not None:
        values = values.astype(dtype)
    out = values.to_numpy(dtype=object, copy=True)
    out[pd.isna(out)] = None
    return out


def _array(items) -> np.ndarray:
    """A 1-d object array of `items` (lists stay elements: numpy would make them a dimension)."""
    items = list(items)
    out = np.empty(len(items), dtype=object)
    for i, item in enumerate(items):
        out[i] = item
    return out


def canonical(col: Col, values: pd.Series) -> pd.Series:
    """A column's values, as the rules made them, in the canonical form (an object Series)."""
    rule = col.rule
    if isinstance(rule, Timestamp):
        stamps = values.astype("datetime64[us]")
        out = stamps.to_numpy().astype("int64").astype(object)  # Python ints: microseconds since the epoch
        out[stamps.isna().to_numpy()] = None
    elif isinstance(rule, Money):  # Decimals with `scale` places: exact cents
        out = _array(None if v is None else int(v.scaleb(rule.scale)) for v in _objects(values))
    elif isinstance(rule, Json):
        out = _array(plain.json_value(v) for v in _objects(values))
    elif isinstance(rule, Boolean):
        out = _objects(values, "boolean")
    elif col.pg_type == "INTEGER" and not isinstance(rule, Username):
        out = _objects(values, "Int64")
    else:  # text, usernames
        out = _objects(values)
    return pd.Series(out, index=values.index, dtype=object)


def referenced_users(conn: sqlite3.Connection, tables: tuple[Table, ...]) -> set[str]:
    """Every valid username the source references anywhere (rejected rows included), by the Username rule."""
    names: set[str] = set()
    for table in tables:
        for col in table.migrated:
            if not isinstance(col.rule, Username):
                continue
            c = sqlite_ident(col.source)
            rows = _query(conn, f"SELECT DISTINCT {c} COLLATE BINARY FROM {sqlite_ident(table.source)}", ())
            checked = col.rule.apply(pd.Series([v for (v,) in rows], dtype=object), col.source)
            names |= set(checked.values[checked.reasons.isna()].dropna())
    return names


def source_facts(conn: sqlite3.Connection, table: Table) -> KeyFacts:
    """Which rows share a key with another, over the whole table. The rows that can are found set-based
    in SQLite (`sqlite_read.key_facts`: no fast path, no Arrow file); the decision over them is the exact
    rules' in-frame logic (`cleaning.key_facts_of`)."""
    return sqlite_read.key_facts(conn, table)
