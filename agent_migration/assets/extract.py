"""Extract: one consistent snapshot of the SQLite source, then one raw DataFrame per source table.

Raw frames keep every value exactly as SQLite stored it (object columns: None, int, float, str, bytes),
so the row rules see what the app wrote and rejected rows keep their true payload.
"""

import sqlite3

import dagster as dg
import pandas as pd

from agent_migration.assets.common import OWNERS, frame_schema
from agent_migration.resources import (
    MigrationError,
    SqliteSource,
    check_source_shape,
    decode_text,
    describe_source,
    sqlite_ident,
)
from agent_migration.rules import sum_units
from agent_migration.tables import BY_SOURCE, SOURCE_TABLES, Table

FETCH_ROWS = 100_000


def source_stats(conn, table: Table) -> dict:
    """Row count and reconciliation totals, read straight from the snapshot (independent of the frames)."""
    name = sqlite_ident(table.source)
    stats: dict = {"rows": conn.execute(f"SELECT count(*) FROM {name}").fetchone()[0], "sums": {}}
    for col_name in table.sums:
        col = table.col(col_name)
        values = (v for (v,) in conn.execute(f"SELECT {sqlite_ident(col.source)} FROM {name}"))
        stats["sums"][col_name] = str(sum_units(col.rule, values))
    return stats


@dg.asset(
    group_name="extract",
    kinds={"sqlite"},
    owners=OWNERS,
    description="One consistent copy of the live SQLite source (online backup API), kept as the run's backup.",
)
def source_snapshot(context: dg.AssetExecutionContext, source: SqliteSource) -> dg.MaterializeResult:
    try:
        copy = source.snapshot(context.run_id)
        with source.connect(copy) as conn:
            extra = check_source_shape(describe_source(conn), source.path)
            stats = {t.source: source_stats(conn, t) for t in SOURCE_TABLES}
    except MigrationError as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from None
    context.log.info(f"source {source.path} copied to {copy}")
    return dg.MaterializeResult(
        value={"path": str(copy), "stats": stats, "extra": extra},
        metadata={
            "source_path": dg.MetadataValue.path(str(source.path)),
            "backup_path": dg.MetadataValue.path(str(copy)),
            "rows_by_table": dg.MetadataValue.json({t: s["rows"] for t, s in stats.items()}),
            "dagster/row_count": sum(s["rows"] for s in stats.values()),
            "ignored_extra_columns": dg.MetadataValue.json(extra),
        },
    )


def read_table(conn, table: Table, log=None) -> pd.DataFrame:
    """Every row of a source table with its rowid, values exactly as stored (object columns).

    Text is decoded by SQLite's C path; only a table holding bytes that are not UTF-8 is read again
    with a decoder that keeps them (as surrogates), so the rules can reject them and payloads keep them.
    """
    conn.text_factory = str
    try:
        return _read(conn, table, log)
    except sqlite3.OperationalError as exc:
        if "decode" not in str(exc):
            raise
    conn.text_factory = decode_text
    return _read(conn, table, log)


def _read(conn, table: Table, log=None) -> pd.DataFrame:
    columns = ["_rowid", *table.source_columns]
    selected = ", ".join(["rowid", *map(sqlite_ident, table.source_columns)])
    name = sqlite_ident(table.source)
    cursor = conn.execute(f"SELECT {selected} FROM {name} ORDER BY rowid")
    total = conn.execute(f"SELECT count(*) FROM {name}").fetchone()[0]
    rows: list = []
    while batch := cursor.fetchmany(FETCH_ROWS):
        rows.extend(batch)
        if log and total > FETCH_ROWS:
            log(f"read {len(rows):,} of {total:,} rows of {table.source}")
    return pd.DataFrame(rows, columns=columns, dtype=object)


def read_snapshot_table(path: str, table_name: str) -> pd.DataFrame:
    """A raw frame read again from a run's snapshot (the snapshot is where raw frames are kept)."""
    table = BY_SOURCE[table_name]
    with SqliteSource(path=path).connect(path) as conn:
        frame = read_table(conn, table)
    frame.attrs.update(snapshot=path, source_table=table_name)
    return frame


def raw_asset(table: Table) -> dg.AssetsDefinition:
    @dg.asset(
        name=f"raw_{table.source}",
        group_name="extract",
        kinds={"sqlite", "pandas"},
        owners=OWNERS,
        description=f"The SQLite table {table.source}, every row as stored, read from the run's snapshot.",
        ins={"source_snapshot": dg.AssetIn()},
    )
    def _raw(
        context: dg.AssetExecutionContext, source: SqliteSource, source_snapshot: dict
    ) -> dg.MaterializeResult:
        with source.connect(source_snapshot["path"]) as conn:
            frame = read_table(conn, table, context.log.info)
        # The IO manager keeps this pointer instead of a copy: the snapshot is immutable and kept.
        frame.attrs.update(snapshot=source_snapshot["path"], source_table=table.source)
        return dg.MaterializeResult(
            value=frame,
            metadata={
                "dagster/row_count": len(frame),
                "dagster/column_schema": frame_schema(frame),
                "snapshot": dg.MetadataValue.path(source_snapshot["path"]),
            },
        )

    return _raw


RAW_ASSETS = [raw_asset(t) for t in SOURCE_TABLES]
