"""Extract: one consistent snapshot of the SQLite source, then one raw DataFrame per source table.

Raw frames keep every value exactly as SQLite stored it (object columns: None, int, float, str, bytes;
a text column holding only valid text is kept as Arrow text), so the row rules see what the app wrote
and rejected rows keep their true payload.
"""

import json
import sqlite3
import time
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import psycopg2
import pyarrow as pa
from pydantic import Field

from agent_migration import delta
from agent_migration.assets.common import OWNERS, frame_schema
from agent_migration.resources import (
    MigrationError,
    PostgresTarget,
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


class SnapshotConfig(dg.Config):
    full_refresh: bool = Field(
        default=False,
        description="Redo every source row. By default a re-sync redoes only what changed since the "
        "snapshot the target was last published from (when that snapshot is still kept).",
    )


def find_baseline(target: PostgresTarget, log) -> dict | None:
    """The last published snapshot, if a change-only re-sync can start from it (else None, logged)."""
    try:
        with target.connect() as conn, conn.cursor() as cur:
            found = delta.baseline(cur)
    except (MigrationError, psycopg2.Error):
        return None  # target_schema reports an unreachable or misconfigured target clearly
    why = None
    if found is None:
        why = "nothing was published to the target yet"
    elif found["spec"] != delta.spec_fingerprint():
        why = "the last run was published under other table specs or an older version"
    elif not found["snapshot"] or not Path(found["snapshot"]).is_file():
        why = f"the snapshot of the last published run ({found['snapshot']}) is no longer kept"
    if why:
        log(f"full run: {why}")
        return None
    return found


@dg.asset(
    group_name="extract",
    kinds={"sqlite"},
    owners=OWNERS,
    description="One consistent copy of the live SQLite source (online backup API), kept as the run's backup; "
    "compared with the snapshot the target was last published from, to redo only what changed.",
)
def source_snapshot(
    context: dg.AssetExecutionContext, config: SnapshotConfig, source: SqliteSource, target: PostgresTarget
) -> dg.MaterializeResult:
    base = None if config.full_refresh else find_baseline(target, context.log.info)
    try:
        copy = source.snapshot(context.run_id, keep=base["snapshot"] if base else None)
        with source.connect(copy) as conn:
            extra = check_source_shape(describe_source(conn), source.path)
            stats = {t.source: source_stats(conn, t) for t in SOURCE_TABLES}
            changes = plan_changes(conn, base, copy, context.log.info)
    except MigrationError as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from None
    if base and str(copy) == str(Path(base["snapshot"]).resolve()):
        context.log.info(
            f"source {source.path} unchanged since run {base['run_id']} (byte for byte): its snapshot {copy} serves this run"
        )
    else:
        context.log.info(f"source {source.path} copied to {copy}")
    meta = {}
    if changes is not None:
        summary = {
            t.source: {k: changes[t.source][k] for k in ("changed", "deleted")}
            | {"redo": len(changes[t.source]["rowids"])}
            for t in SOURCE_TABLES
        }
        summary["users"] = {k: len(v) for k, v in changes[delta.USER_CHANGES].items()}
        meta = {"baseline_run": base["run_id"], "changes_by_table": dg.MetadataValue.json(summary)}
    return dg.MaterializeResult(
        value={
            "path": str(copy),
            "stats": stats,
            "extra": extra,
            "baseline": base["snapshot"] if changes is not None else None,
            "changes": changes,
        },
        metadata={
            "source_path": dg.MetadataValue.path(str(source.path)),
            "backup_path": dg.MetadataValue.path(str(copy)),
            "mode": "change-only re-sync" if changes is not None else "full",
            "rows_by_table": dg.MetadataValue.json({t: s["rows"] for t, s in stats.items()}),
            "dagster/row_count": sum(s["rows"] for s in stats.values()),
            "ignored_extra_columns": dg.MetadataValue.json(extra),
            **meta,
        },
    )


def plan_changes(conn, base: dict | None, snapshot: Path, log) -> dict | None:
    """What this run redoes per table against the baseline, or None (a full run)."""
    if base is None:
        return None
    started = time.monotonic()
    try:
        changes = delta.plan(conn, base["snapshot"], snapshot)
    except sqlite3.Error as exc:  # e.g. a baseline of another shape: a full run is always right
        log(f"full run: the last published snapshot {base['snapshot']} cannot be compared ({exc})")
        return None
    redo = sum(len(changes[t.source]["rowids"]) for t in SOURCE_TABLES)
    log(
        f"change-only re-sync against run {base['run_id']}: {redo:,} rows to redo, "
        f"compared in {time.monotonic() - started:.1f} s"
    )
    return changes


def distinct_values(conn, table: Table, column: str) -> pd.Series:
    """Each distinct value of a source column as stored (1 and 1.0 apart, text compared byte for byte)."""

    def read():
        name, col = sqlite_ident(table.source), sqlite_ident(column)
        rows = conn.execute(f"SELECT DISTINCT typeof({col}), {col} COLLATE BINARY FROM {name}").fetchall()
        return pd.Series([v for _, v in rows], dtype=object)

    return with_decoding(conn, read)


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


def read_table(conn, table: Table, log=None, rowids: list[int] | None = None) -> pd.DataFrame:
    """Every row of a source table (or those with `rowids`) with its rowid, values exactly as stored."""
    return with_decoding(conn, lambda: _read(conn, table, log, rowids))


def _read(conn, table: Table, log=None, rowids: list[int] | None = None) -> pd.DataFrame:
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
        where, params = " WHERE rowid IN (SELECT value FROM json_each(?))", (json.dumps(rowids),)
        total = len(rowids)
    else:
        total = conn.execute(f"SELECT count(*) FROM {name}").fetchone()[0]
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
        before, read = read, read + len(batch)
        if log and total > FETCH_ROWS and quarter(before, total) != quarter(read, total):
            log(f"read {read:,} of {total:,} rows of {table.source}")
    return pd.DataFrame({c: join_chunks(chunks[c]) for c in columns}, index=pd.RangeIndex(read))


def quarter(done: int, total: int) -> int:
    """Progress in quarters: a large table logs its progress four times (each log line is a stored event)."""
    return 4 * done // max(total, 1)


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
        changes = (source_snapshot.get("changes") or {}).get(table.source)
        with source.connect(source_snapshot["path"]) as conn:
            frame = read_table(conn, table, context.log.info, changes["rowids"] if changes else None)
        meta = {"mode": "full"}
        if changes is None:
            # The IO manager keeps this pointer instead of a copy: the snapshot is immutable and kept.
            frame.attrs.update(snapshot=source_snapshot["path"], source_table=table.source)
        else:
            frame.attrs["delta"] = delta_attrs(source_snapshot, table)
            meta = {
                "mode": "change-only: the rows to redo since the last published snapshot",
                "rows_in_source": source_snapshot["stats"][table.source]["rows"],
                "rows_changed": changes["changed"],
                "rows_deleted": changes["deleted"],
            }
        return dg.MaterializeResult(
            value=frame,
            metadata={
                "dagster/row_count": len(frame),
                "dagster/column_schema": frame_schema(frame),
                "snapshot": dg.MetadataValue.path(source_snapshot["path"]),
                **meta,
            },
        )

    return _raw


def delta_attrs(source_snapshot: dict, table: Table) -> dict:
    """What a change-only frame is relative to: its snapshot, the baseline, and what to replace."""
    changes = source_snapshot["changes"][table.source]
    return {
        "snapshot": source_snapshot["path"],
        "baseline": source_snapshot["baseline"],
        "keys": changes["keys"],
        "gone_rowids": changes["gone_rowids"],
    }


RAW_ASSETS = [raw_asset(t) for t in SOURCE_TABLES]
