"""The usernames a source references: each username column's distinct values, read from the snapshot."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pandas as pd

from agent_migration.core.rules import Username
from agent_migration.core.tables import SOURCE_TABLES, Table
from agent_migration.source.database import SourceDatabase
from agent_migration.source.sqlite_read import distinct_values, distinct_values_hashed, rowid_range


def referenced(conn, table: Table) -> dict[str, pd.Series]:
    """The distinct values of each username column of a source table (all a users table needs)."""
    return {
        c.source: distinct_values(conn, table, c.source)
        for c in table.migrated
        if isinstance(c.rule, Username)
    }


def _halves(conn, table: Table) -> list[tuple[int, int]]:
    """The table's rowid range in two halves."""
    span = rowid_range(conn, table)
    if span is None:
        return []
    lo, hi = span
    mid = lo + (hi - lo) // 2
    return [(lo, mid), (mid + 1, hi)] if hi > lo else [(lo, hi)]


def referenced_in_parallel(source: SourceDatabase, path: str) -> list[dict[str, pd.Series]]:
    """`referenced` for every source table, each table's rowid range in halves read on two threads with
    their own connections: ADBC reads and pyarrow hashes without the GIL, so both cores work (a value in
    both halves appears twice; users are made of the unique valid names). Hashing instead of SQLite's
    DISTINCT sort: 4 M chat messages' names in about 1.9 s of CPU instead of 4.2 s."""
    with source.connect(path) as conn:
        parts = [
            (t, c.source, span)
            for t in SOURCE_TABLES
            for span in _halves(conn, t)
            for c in t.migrated
            if isinstance(c.rule, Username)
        ]

    def read(part):
        table, column, span = part
        with source.connect(path) as conn, source.connect_arrow(path) as adbc:
            return distinct_values_hashed(conn, adbc, table, column, span)

    with ThreadPoolExecutor(max_workers=2) as pool:
        found = list(pool.map(read, parts))
    out = [{c.source: [pd.Series([], dtype=object)] for c in t.migrated if isinstance(c.rule, Username)} for t in SOURCE_TABLES]
    for (table, column, _), values in zip(parts, found, strict=True):
        out[SOURCE_TABLES.index(table)][column].append(values)
    return [{c: pd.concat(v, ignore_index=True) for c, v in cols.items()} for cols in out]
