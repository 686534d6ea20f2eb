"""How many rows a chunk of a table holds: `chunk_rows` at most, fewer when the rows are wide.

A chunk's memory is its rows' bytes many times over (the typed batch, the read ahead, the cleaned rows,
a reject's JSON payload and reason, the COPY data in flight), so a fixed row count lets memory grow with
the texts' length: 50,000 chat messages of 400 characters weigh ten times 50,000 of 40. Each table's
chunks therefore hold about `CHUNK_BYTES` of source values, estimated from a few runs of rows spread over
the rowid range (a seek each: no scan of the table).
"""

from __future__ import annotations

from agent_migration.core.tables import Table
from agent_migration.source import sqlite_read
from agent_migration.source.files import sqlite_ident

CHUNK_BYTES = 6 << 20  # source values per chunk: reject-heavy runs of long texts stay under 512 MiB
MIN_ROWS = 1_000  # however wide the rows: per-chunk costs (queries, COPY statements) stay small
_PROBES, _PROBE_ROWS = 16, 64  # rows read to estimate a table's row width: at most 1,024
_PER_VALUE = 8  # Arrow's offset or value slot, and a COPY field's length word


def row_bytes(conn, table: Table) -> float | None:
    """The average bytes of a row's migrated values (text and BLOBs by their length, numbers by their
    digits), from rows at evenly spaced rowids; None for an empty table."""
    name, bounds = sqlite_ident(table.source), sqlite_read.rowid_range(conn, table)
    if bounds is None:
        return None
    low, high = bounds
    width = " + ".join(f"coalesce(length(CAST({sqlite_ident(c.source)} AS BLOB)), 0)" for c in table.migrated)
    query = f"SELECT sum(w), count(*) FROM (SELECT {width} AS w FROM {name} WHERE rowid >= ? ORDER BY rowid LIMIT ?)"
    total = rows = 0
    for i in range(_PROBES):
        at = low + (high - low) * i // _PROBES
        got, n = conn.execute(query, (at, _PROBE_ROWS)).fetchone()
        total, rows = total + (got or 0), rows + n
    return total / rows + _PER_VALUE * len(table.migrated)


def rows_per_chunk(conn, table: Table, most: int) -> int:
    """Rows per chunk of `table`: `most` (the `chunk_rows` setting), fewer when its rows are wide."""
    width = row_bytes(conn, table)
    if width is None:
        return most
    return max(min(most, MIN_ROWS), min(most, int(CHUNK_BYTES // width)))
