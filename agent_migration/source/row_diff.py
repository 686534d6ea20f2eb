"""Rows that differ between two snapshots of the source, by SQLite's own comparison of stored values.

The cutover's proof of what changed since the last `validate` (`validation/since.py`): the snapshot that
validate proved is attached to the current one, and SQLite joins the two by rowid and compares every
column with `IS` (NULL equal to NULL only; text and blobs byte by byte, `COLLATE BINARY`; 5 and '5' apart,
as their storage classes differ). Independent of the re-sync's change list and its page comparison on
purpose: a bug there cannot hide a change here. Also: the rows holding given keys or naming given parents.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np

from agent_migration.core.tables import Col, Table
from agent_migration.source.files import sqlite_ident
from agent_migration.source.sqlite_read import is_rowid

OLD = "proven"  # the schema name the proven snapshot is attached as


def attach(conn: sqlite3.Connection, snapshot: str | Path) -> None:
    """Attach the snapshot `validate` proved, read-only, as `proven`."""
    conn.execute(f"ATTACH DATABASE ? AS {OLD}", (f"file:{Path(snapshot).resolve()}?mode=ro",))


def _rowids(conn: sqlite3.Connection, query: str, params: tuple = ()) -> np.ndarray:
    return np.fromiter((r for (r,) in conn.execute(query, params)), dtype=np.int64)


def changed(conn: sqlite3.Connection, table: Table) -> tuple[np.ndarray, np.ndarray]:
    """(rowids of the current table whose row is new or differs from the proven one, rowids only the
    proven snapshot has), each sorted. One pass where SQLite has FULL JOIN (3.39): its second pass over
    the proven table only reads which rows went unmatched, instead of looking each one up."""
    name = sqlite_ident(table.source)
    same = " AND ".join(
        f"n.{sqlite_ident(c)} IS o.{sqlite_ident(c)} COLLATE BINARY" for c in table.source_columns
    )
    if sqlite3.sqlite_version_info >= (3, 39):
        rows = conn.execute(
            f"SELECT n.rowid, o.rowid FROM main.{name} n FULL JOIN {OLD}.{name} o ON o.rowid = n.rowid "
            f"WHERE n.rowid IS NULL OR o.rowid IS NULL OR NOT ({same})"
        ).fetchall()
        new = np.sort(np.fromiter((n for n, _ in rows if n is not None), dtype=np.int64))
        return new, np.sort(np.fromiter((o for n, o in rows if n is None), dtype=np.int64))
    new = _rowids(
        conn,
        f"SELECT n.rowid FROM main.{name} n LEFT JOIN {OLD}.{name} o ON o.rowid = n.rowid "
        f"WHERE o.rowid IS NULL OR NOT ({same}) ORDER BY n.rowid",
    )
    gone = _rowids(
        conn,
        f"SELECT o.rowid FROM {OLD}.{name} o LEFT JOIN main.{name} n ON n.rowid = o.rowid "
        "WHERE n.rowid IS NULL ORDER BY o.rowid",
    )
    return new, gone


def _stored_as(col: Col) -> str:
    return getattr(col.rule, "stored", None) or "integer"


def holding(conn: sqlite3.Connection, table: Table, col: Col, values: list) -> np.ndarray:
    """Rowids of the rows whose `col` holds one of `values`, and of every row whose `col` is stored as
    another class than the rule expects (few; the rules may still read their value as one of these)."""
    if not values:
        return np.empty(0, dtype=np.int64)
    c, stored = sqlite_ident(col.source), _stored_as(col)
    # The rowid itself holds only integers: a lookup per value, no scan for other classes.
    odd = "" if is_rowid(conn, table.source, col.source) else f" OR typeof({c}) NOT IN ('{stored}', 'null')"
    return _rowids(
        conn,
        f"SELECT rowid FROM main.{sqlite_ident(table.source)} WHERE {c} IN (SELECT value FROM json_each(?)){odd}",
        (json.dumps(values),),
    )


def present(conn: sqlite3.Connection, table: Table, rowids: np.ndarray, schema: str = OLD) -> int:
    """How many of these rowids the table of `schema` holds."""
    if not len(rowids):
        return 0
    (count,) = conn.execute(
        f"SELECT count(*) FROM {schema}.{sqlite_ident(table.source)} WHERE rowid IN (SELECT value FROM json_each(?))",
        (json.dumps(rowids.tolist()),),
    ).fetchone()
    return count


def count(conn: sqlite3.Connection, table: Table) -> int:
    (n,) = conn.execute(f"SELECT count(*) FROM main.{sqlite_ident(table.source)}").fetchone()
    return n
