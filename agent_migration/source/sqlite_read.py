"""Reading the SQLite snapshot: values exactly as stored (the exact path), typed Arrow batches of the rows
stored as their rules expect (the fast path), chunk plans, and the set-based facts a chunk cannot see.

SQLite is dynamically typed. The fast path asks SQLite itself which rows hold, in every column, the
storage class its rule expects (`typeof()`), and reads only those through ADBC as typed Arrow; every
other row is read value by value through Python's sqlite3, exactly as stored, for the exact rules.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from agent_migration.core.cleaning import SOURCE_ROWID, KeyFacts, key_facts_of
from agent_migration.core.contract import Chunk
from agent_migration.core.tables import Table
from agent_migration.core.values import SURROGATES, key_text, sum_units
from agent_migration.source.database import SourceDatabase, decode_text
from agent_migration.source.files import sqlite_ident

FETCH_ROWS = 100_000


def table_stats(conn, table: Table) -> dict:
    """Row count and reconciliation totals, read straight from the snapshot (independent of the frames)."""
    name = sqlite_ident(table.source)
    stats: dict = {"rows": conn.execute(f"SELECT count(*) FROM {name}").fetchone()[0], "sums": {}}
    if table.serial is not None:  # rejected rows count: the app's next id must pass them too
        key = sqlite_ident(table.key_col.source)
        stats["max_id"] = conn.execute(f"SELECT max({key}) FROM {name} WHERE typeof({key}) = 'integer'").fetchone()[0]
    for col_name in table.sums:
        col = table.col(col_name)
        values = (v for (v,) in conn.execute(f"SELECT {sqlite_ident(col.source)} FROM {name}"))
        stats["sums"][col_name] = str(sum_units(col.rule, values))
    return stats


def rowid_range(conn, table: Table) -> tuple[int, int] | None:
    """The table's smallest and largest rowid (None when empty). Two queries: SQLite reads min() or max()
    alone from the rowid b-tree, but both in one query by a full scan."""
    name = sqlite_ident(table.source)
    lo = conn.execute(f"SELECT min(rowid) FROM {name}").fetchone()[0]
    hi = conn.execute(f"SELECT max(rowid) FROM {name}").fetchone()[0]
    return None if lo is None else (lo, hi)


def schema_objects(conn) -> tuple[tuple[str, str, str, str], ...]:
    """The source's own schema statements (type, name, tbl_name, sql), in the order they were created,
    without SQLite's internal objects: what a rollback recreates."""
    rows = conn.execute(
        "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY rowid"
    ).fetchall()
    return tuple(tuple(r) for r in rows)


def distinct_values(conn, table: Table, column: str, rowids: tuple[int, int] | None = None) -> pd.Series:
    """Each distinct value of a source column as stored (1 and 1.0 apart, text compared byte for byte);
    of the rows with rowids in `rowids` (inclusive), if given."""

    def read():
        name, col = sqlite_ident(table.source), sqlite_ident(column)
        where, params = ("", ()) if rowids is None else (" WHERE rowid BETWEEN ? AND ?", rowids)
        query = f"SELECT DISTINCT typeof({col}), {col} COLLATE BINARY FROM {name}{where}"
        return pd.Series([v for _, v in conn.execute(query, params).fetchall()], dtype=object)

    return with_decoding(conn, read)


def distinct_values_hashed(conn, adbc, table: Table, column: str, rowids: tuple[int, int] | None = None) -> pd.Series:
    """`distinct_values` (the same values), found by hashing instead of SQLite's sort: the text values
    stream through ADBC in batches and pyarrow keeps the unique ones (memory: the distinct values and one
    batch); the other storage classes, which a username column rarely holds, come from SQLite."""
    name, col = sqlite_ident(table.source), sqlite_ident(column)
    where = "" if rowids is None else f" AND rowid BETWEEN {int(rowids[0])} AND {int(rowids[1])}"
    found = pa.array([], pa.binary())
    cur = adbc.cursor()
    try:
        cur.adbc_statement.set_options(**{"adbc.sqlite.query.batch_rows": str(1 << 16)})
        cur.execute(f"SELECT {col} FROM {name} WHERE typeof({col}) = 'text'{where}")
        for batch in cur.fetch_record_batch():  # (text read as bytes: UTF-8 is not assumed here)
            found = pc.unique(pa.concat_arrays([found, batch.column(0).cast(pa.binary())]))
    finally:
        cur.close()
    texts = [decode_text(v) for v in found.to_pylist()]
    query = f"SELECT DISTINCT typeof({col}), {col} FROM {name} WHERE typeof({col}) != 'text'{where}"
    return pd.Series(texts + [v for _, v in conn.execute(query).fetchall()], dtype=object)


def with_decoding(conn, read):
    """`read()` with SQLite's fast C decoding; again with one that keeps bytes that are not UTF-8
    (as surrogates, so the rules reject them and payloads keep them) only if it meets such bytes."""
    conn.text_factory = str
    try:
        return read()
    except sqlite3.OperationalError as exc:
        if "decode" not in str(exc):
            raise
    conn.text_factory = decode_text
    return read()


def read_table(conn, table: Table, rowids: list[int] | None = None) -> pd.DataFrame:
    """Every row of a source table (or those with `rowids`) with its rowid, values exactly as stored."""
    return with_decoding(conn, lambda: _read(conn, table, rowids))


def _read(conn, table: Table, rowids: list[int] | None = None) -> pd.DataFrame:
    columns = ["_rowid", *table.source_columns]
    text = [c.source for c in table.migrated if c.rule.arrow_text]
    # A column whose rule takes Arrow text comes as two: its text as bytes (no Python string per row: the
    # batch becomes one Arrow buffer), and any value that is not text, as stored.
    selected = ["rowid"]
    for column in table.source_columns:
        c = sqlite_ident(column)
        if column in text:
            selected += [
                f"CASE WHEN typeof({c}) = 'text' THEN CAST({c} AS BLOB) END",
                f"CASE WHEN typeof({c}) <> 'text' THEN {c} END",
            ]
        else:
            selected.append(c)
    name = sqlite_ident(table.source)
    where, params = "", ()
    if rowids is not None:
        where, params = f" WHERE {IN_LIST}", (json.dumps(rowids),)
    cursor = conn.execute(f"SELECT {', '.join(selected)} FROM {name}{where} ORDER BY rowid", params)
    chunks: dict[str, list] = {c: [] for c in columns}
    read = 0
    while batch := cursor.fetchmany(FETCH_ROWS):
        block = np.empty((len(batch), len(selected)), dtype=object)
        block[:] = batch  # C speed; each value stays the object SQLite returned
        i = 0
        for column in columns:
            if column in text:
                chunks[column].append(text_chunk(block[:, i], block[:, i + 1]))
                i += 2
            else:
                chunks[column].append(block[:, i].copy())  # contiguous, free of the batch's other columns
                i += 1
        read += len(batch)
    return pd.DataFrame({c: join_chunks(chunks[c]) for c in columns}, index=pd.RangeIndex(read))


def text_chunk(utf8: np.ndarray, other: np.ndarray) -> np.ndarray | pa.Array:
    """One batch of a text column: Arrow text when every value is valid text or NULL, else the
    values as stored (undecodable bytes kept as surrogates, for the rules to reject)."""
    if pd.isna(other).all():
        arrow = arrow_text(utf8)
        if arrow is not None:
            return arrow
    out = other.copy()
    has_text = ~pd.isna(utf8)
    out[has_text] = [decode_text(b) for b in utf8[has_text]]
    return out


def arrow_text(utf8: np.ndarray) -> pa.Array | None:
    """Bytes (or None) as one Arrow text array, built from one joined buffer; None if not all UTF-8."""
    null = pd.isna(utf8)
    filled = np.where(null, b"", utf8) if null.any() else utf8
    offsets = np.zeros(len(filled) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, filled), dtype=np.int64, count=len(filled)), out=offsets[1:])
    validity = pa.py_buffer(np.packbits(~null, bitorder="little")) if null.any() else None
    buffers = [validity, pa.py_buffer(offsets), pa.py_buffer(b"".join(filled))]
    try:
        return pa.Array.from_buffers(pa.large_binary(), len(filled), buffers).cast(pa.large_string())
    except pa.ArrowInvalid:  # not UTF-8
        return None


def join_chunks(chunks: list) -> pd.Series:
    if chunks and all(isinstance(c, pa.Array) for c in chunks):
        return pd.Series(pd.arrays.ArrowExtensionArray(pa.chunked_array(chunks, type=pa.large_string())))
    # Values as stored, in Python objects (dtype object: pandas would otherwise infer its own text type);
    # a column whose text is Arrow in some batches only is one of these too.
    parts = [c.to_numpy(zero_copy_only=False) if isinstance(c, pa.Array) else c for c in chunks]
    return pd.Series(np.concatenate(parts) if parts else np.empty(0, dtype=object), dtype=object)


# ---------------------------------------------------------------- chunks and the fast path

ARROW_OF = {"integer": pa.int64(), "real": pa.float64(), "text": pa.string()}
IN_RANGE = "rowid > ? AND rowid <= ?"
IN_FIRST_RANGE = "rowid >= ? AND rowid <= ?"
IN_LIST = "rowid IN (SELECT value FROM json_each(?))"
_BEFORE_ALL = -(2**63)


def range_chunks(conn, table: Table, chunk_rows: int) -> Iterator[Chunk]:
    """Rowid ranges (after, up to] of at most `chunk_rows` rows each, found by walking the rowid index;
    the first range is [smallest, up to], so a row at the smallest rowid SQLite allows is read too."""
    name = sqlite_ident(table.source)
    after, first = _BEFORE_ALL, True
    while True:
        above = ">=" if first else ">"
        row = conn.execute(
            f"SELECT rowid FROM {name} WHERE rowid {above} ? ORDER BY rowid LIMIT 1 OFFSET ?",
            (after, chunk_rows - 1),
        ).fetchone()
        where = IN_FIRST_RANGE if first else IN_RANGE
        if row is not None:
            yield Chunk(where, (after, row[0]), chunk_rows)
            after, first = row[0], False
            continue
        last, rows = conn.execute(
            f"SELECT max(rowid), count(*) FROM {name} WHERE rowid {above} ?", (after,)
        ).fetchone()
        if rows:
            yield Chunk(where, (after, last), rows)
        return


def list_chunks(rowids: list[int], chunk_rows: int) -> Iterator[Chunk]:
    """The given rowids (a change-only re-sync's rows to redo, all in the snapshot), `chunk_rows` at a time."""
    for start in range(0, len(rowids), chunk_rows):
        part = rowids[start : start + chunk_rows]
        yield Chunk(IN_LIST, (json.dumps(part),), len(part))


def typical(table: Table) -> str:
    """SQL: the row holds, in every migrated column, NULL or the storage class its rule reads typed; text
    without NUL characters (PostgreSQL refuses them; the exact rules reject them)."""
    parts = []
    for col in table.migrated:
        c = sqlite_ident(col.source)
        parts.append(f"typeof({c}) IN ('{col.rule.stored}', 'null')")
        if col.rule.stored == "text":
            parts.append(f"coalesce(instr({c}, char(0)), 0) = 0")
    return " AND ".join(parts)


def read_typed(adbc, table: Table, chunk: Chunk) -> pa.Table:
    """The chunk's typical rows (see `typical`) as typed Arrow: `_rowid` and each migrated source column.

    ADBC infers a column's type from what it reads; here every value of a column has one storage class,
    so the inference cannot fail, and a column NULL throughout is cast to its class's type.
    """
    columns = ", ".join(sqlite_ident(c.source) for c in table.migrated)
    query = (
        f"SELECT rowid AS _rowid, {columns} FROM {sqlite_ident(table.source)} "
        f"WHERE ({chunk.where}) AND {typical(table)}"
    )
    cur = adbc.cursor()
    try:
        cur.adbc_statement.set_options(**{"adbc.sqlite.query.batch_rows": str(1 << 20)})
        cur.execute(query, chunk.params)
        got = cur.fetch_arrow_table()
    finally:
        cur.close()
    fields = [pa.field("_rowid", pa.int64())]
    fields += [pa.field(c.source, ARROW_OF[c.rule.stored]) for c in table.migrated]
    arrays = [got.column(i).combine_chunks().cast(f.type) for i, f in enumerate(fields)]
    return pa.table(arrays, schema=pa.schema(fields))


def typed_chunks(adbc, table: Table, chunks: Iterator[Chunk]) -> Iterator[tuple[Chunk, pa.Table]]:
    """Each chunk with its typed rows; the next chunk is read (in C, without the GIL) while the caller
    cleans this one, so reading and cleaning share the machine's cores. One chunk ahead at most."""
    with ThreadPoolExecutor(max_workers=1) as reader:
        ahead = None
        for chunk in chunks:
            future = reader.submit(read_typed, adbc, table, chunk)
            if ahead is not None:
                yield ahead[0], ahead[1].result()
            ahead = (chunk, future)
        if ahead is not None:
            yield ahead[0], ahead[1].result()


def odd_rowids(conn, table: Table, chunk: Chunk, typical_rowids: np.ndarray) -> list[int]:
    """The chunk's other rows (a value of another storage class, or text with a NUL): every rowid of the
    chunk that `read_typed` did not return (rowids only: SQLite decodes no column for this)."""
    every = [
        r
        for (r,) in conn.execute(
            f"SELECT rowid FROM {sqlite_ident(table.source)} WHERE {chunk.where}", chunk.params
        )
    ]
    return sorted(set(every) - set(typical_rowids.tolist()))


def key_facts(conn, table: Table) -> KeyFacts:
    """Which rows share a key, over the whole table, found set-based: SQLite groups the keys stored as
    the key rule expects; the few others (another storage class, or text with a NUL or backslash, whose
    text form may be an escape) are read with every row they may collide with, and the exact in-frame
    logic (`key_facts_of`) runs over that small superset."""
    col = table.key_col
    name, k, stored = sqlite_ident(table.source), sqlite_ident(col.source), col.rule.stored
    if stored == "integer" and is_rowid(conn, table.source, col.source):
        return KeyFacts()  # the rowid itself: always an integer, never NULL, never twice
    odd = f"typeof({k}) NOT IN ('{stored}', 'null')"
    if stored == "text":
        odd += f" OR instr({k}, char(0)) > 0 OR instr({k}, '\\') > 0"
    grouped = f"SELECT {k} FROM {name} WHERE typeof({k}) = '{stored}' GROUP BY {k} HAVING count(*) > 1"

    def read():
        rows = conn.execute(f"SELECT rowid, {k} FROM {name} WHERE {k} IN ({grouped}) OR {odd}").fetchall()
        probes = _collision_probes(col.rule, [v for _, v in rows if _is_odd(v, stored)], table)
        if probes:
            rows += conn.execute(
                f"SELECT rowid, {k} FROM {name} WHERE typeof({k}) = '{stored}' AND {k} IN "
                "(SELECT value FROM json_each(?))",
                (json.dumps(probes),),
            ).fetchall()
        return rows

    rows = dict(with_decoding(conn, read))  # rowid -> key: each row once
    if not rows:
        return KeyFacts()
    raw = pd.DataFrame({SOURCE_ROWID: list(rows), col.source: pd.Series(list(rows.values()), dtype=object)})
    return key_facts_of(table, raw)


def is_rowid(conn, table: str, column: str) -> bool:
    """Whether `column` is an alias of the rowid: the one primary key column, declared exactly INTEGER, and
    no index made for the key (an `INTEGER PRIMARY KEY DESC` gets one: it is no alias)."""
    info = conn.execute(f"PRAGMA table_info({sqlite_ident(table)})").fetchall()
    keys = [row for row in info if row[5]]
    if not (len(keys) == 1 and keys[0][1] == column and keys[0][2].upper() == "INTEGER"):
        return False
    indexes = conn.execute(f"PRAGMA index_list({sqlite_ident(table)})").fetchall()
    return not any(row[3] == "pk" for row in indexes)


def _is_odd(value, stored: str) -> bool:
    if stored == "text":
        return (
            not isinstance(value, str) or "\x00" in value or "\\" in value or bool(SURROGATES.search(value))
        )
    return not isinstance(value, int)


def _collision_probes(rule, values: list, table: Table) -> list:
    """The typed values an odd key may collide with: its clean value, its text form, its number."""
    if not values:
        return []
    clean = rule.apply(pd.Series(values, dtype=object), table.source).values
    probes: set = {v.item() if hasattr(v, "item") else v for v in clean.dropna()}
    for v in values:
        text = key_text(v)
        probes.add(text)
        if isinstance(v, float) and v.is_integer():
            probes.add(int(v))
        if text is not None and text.lstrip("-").isdigit() and text.isascii():  # '²' is a digit, no number
            probes.add(int(text))
    if rule.stored == "integer":
        return sorted(p for p in probes if isinstance(p, int) and -(2**63) <= p < 2**63)
    return sorted(p for p in probes if isinstance(p, str) and not SURROGATES.search(p))


@dataclass(frozen=True)
class ChunkReader:
    """One source table of a snapshot, read chunk by chunk for the transform: its typical rows typed
    through ADBC, the others as stored (sqlite3)."""

    conn: sqlite3.Connection
    adbc: object
    table: Table

    def typed(self, chunks: Iterator[Chunk]) -> Iterator[tuple[Chunk, pa.Table]]:
        return typed_chunks(self.adbc, self.table, chunks)

    def odd_rowids(self, chunk: Chunk, typical_rowids: np.ndarray) -> list[int]:
        return odd_rowids(self.conn, self.table, chunk, typical_rowids)

    def rows(self, rowids: list[int]) -> pd.DataFrame:
        return read_table(self.conn, self.table, rowids=rowids)


@contextmanager
def chunk_reader(source: SourceDatabase, path: str, table: Table) -> Iterator[ChunkReader]:
    """A `ChunkReader` of `table` in the snapshot at `path`, its connections closed on exit."""
    with source.connect(path) as conn, source.connect_arrow(path) as adbc:
        yield ChunkReader(conn, adbc, table)
