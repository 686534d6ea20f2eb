"""Extract: one consistent snapshot of the SQLite source, then each source table as chunks of it.

`source_snapshot` checks the target (reachable, right shape, no cutover) before anything else, copies the
live source with SQLite's online backup API, and plans a re-sync's changes. Each `raw_<table>` plans its
chunks (rowid ranges, or the rows to redo) and finds, set-based in SQLite, which rows share a key.
"""

import dagster as dg
from pydantic import Field

from agent_migration.boundary import expected_failures
from agent_migration.core.artifacts import Snapshot, SourceTable
from agent_migration.core.cleaning import KeyFacts
from agent_migration.core.contract import USER_CHANGES
from agent_migration.core.tables import SOURCE_TABLES, Table
from agent_migration.metadata import OWNERS
from agent_migration.postgres import history, readiness
from agent_migration.resources import PostgresTarget, SqliteSource
from agent_migration.source import chunk_size, snapshots, sqlite_read


class SnapshotConfig(dg.Config):
    full_refresh: bool = Field(
        default=False,
        description="Redo every source row. By default a re-sync redoes only what changed since the "
        "snapshot the target was last published from (when that snapshot is still kept).",
    )


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
    with expected_failures():
        source.check_file()
        readiness.check_target(target)
        base = None if config.full_refresh else history.find_baseline(target, context.log.info)
        snap = snapshots.take_snapshot(source, context.run_id, base, context.log.info)
    meta = {}
    if snap.changes is not None:
        summary = {
            t.source: {k: snap.changes[t.source][k] for k in ("changed", "deleted")}
            | {"redo": len(snap.changes[t.source]["rowids"])}
            for t in SOURCE_TABLES
        }
        summary["users"] = {k: len(v) for k, v in snap.changes[USER_CHANGES].items()}
        meta = {"changes_by_table": dg.MetadataValue.json(summary)}
    return dg.MaterializeResult(
        value=snap,
        metadata={
            "source_path": dg.MetadataValue.path(str(source.sqlite_path)),
            "backup_path": dg.MetadataValue.path(snap.path),
            "mode": "change-only re-sync" if snap.changes is not None else "full",
            "rows_by_table": dg.MetadataValue.json({t: s["rows"] for t, s in snap.stats.items()}),
            "dagster/row_count": sum(s["rows"] for s in snap.stats.values()),
            "ignored_extra_columns": dg.MetadataValue.json(snap.extra),
            **meta,
        },
    )


def plan_table(source: SqliteSource, snap: Snapshot, table: Table) -> SourceTable:
    """The chunks this run reads of `table` and the facts about its keys."""
    rowids = None if snap.changes is None else tuple(snap.changes[table.source]["rowids"])
    with source.connect(snap.path) as conn:
        facts = sqlite_read.key_facts(conn, table) if rowids != () else KeyFacts()  # nothing to redo
        per_chunk = chunk_size.rows_per_chunk(conn, table, source.rows_per_chunk)
        if rowids is None:
            chunks = tuple(sqlite_read.range_chunks(conn, table, per_chunk))
            return SourceTable(table.source, snap.path, snap.stats[table.source]["rows"], chunks, facts)
    chunks = tuple(sqlite_read.list_chunks(list(rowids), per_chunk))
    return SourceTable(table.source, snap.path, len(rowids), chunks, facts, rowids, snap.delta(table.source))


def raw_asset(table: Table) -> dg.AssetsDefinition:
    @dg.asset(
        name=f"raw_{table.source}",
        group_name="extract",
        kinds={"sqlite", "pandas"},
        owners=OWNERS,
        description=f"The SQLite table {table.source} as chunks of the run's snapshot (read as pandas frames "
        "by the transform), with the rows that share a key found set-based.",
        ins={"source_snapshot": dg.AssetIn()},
    )
    def _raw(context: dg.AssetExecutionContext, source: SqliteSource, source_snapshot: Snapshot):
        with expected_failures():
            planned = plan_table(source, source_snapshot, table)
        mode = "full" if planned.rowids is None else "change-only: the rows to redo since the last published snapshot"
        return dg.MaterializeResult(
            value=planned,
            metadata={
                "dagster/row_count": planned.rows,
                "chunks": len(planned.chunks),
                "chunk_rows": max((c.rows for c in planned.chunks), default=0),
                "rows_sharing_a_key": len(planned.facts.ambiguous),
                "snapshot": dg.MetadataValue.path(source_snapshot.path),
                "mode": mode,
                "rows_in_source": source_snapshot.stats[table.source]["rows"],
            },
        )

    return _raw


RAW_ASSETS = [raw_asset(t) for t in SOURCE_TABLES]
