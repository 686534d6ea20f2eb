"""Transform: derive the users, then clean each source table chunk by chunk.

`derived_users` reads the distinct usernames set-based from the snapshot (keeping the ids of users
already in the target). Each `clean_<table>` streams its chunks through the row rules, remaps usernames
to users.id and checks agent references, writing loadable rows and rejects (reason and payload) to the
run's folder: nothing is dropped here; the load step copies both.
"""

import dagster as dg

from agent_migration.boundary import expected_failures
from agent_migration.core.artifacts import CleanTable, Snapshot, SourceTable
from agent_migration.core.contract import loaded_path, rejects_path
from agent_migration.core.tables import SOURCE_TABLES, Table
from agent_migration.metadata import OWNERS, frame_schema, markdown_table
from agent_migration.postgres import staging
from agent_migration.postgres import users as pg_users
from agent_migration.resources import PostgresTarget, SqliteSource
from agent_migration.source import sqlite_read, usernames
from agent_migration.transform import users as user_lib
from agent_migration.transform.streaming import CleaningInputs, clean_source


@dg.asset(
    group_name="transform",
    kinds={"pandas", "postgres"},
    owners=OWNERS,
    description="Users derived from every username in the source (owners, balances, payments, chats).",
    ins={"source_snapshot": dg.AssetIn()},
    # The usernames are read as distinct values straight from the snapshot the raw tables are chunks of.
    deps=[f"raw_{t.source}" for t in SOURCE_TABLES],
)
def derived_users(
    context: dg.AssetExecutionContext, target: PostgresTarget, source: SqliteSource, source_snapshot: Snapshot
):
    with expected_failures(target):
        existing, sequence = pg_users.read_existing_users(target)
        read = lambda: usernames.referenced_in_parallel(source, source_snapshot.path)  # noqa: E731 - full runs only
        users, referenced_by = user_lib.users_of(existing, sequence, source_snapshot, read)
    new = int((~users["username"].isin(existing["username"])).sum())
    context.log.info(f"{len(users):,} users ({new:,} new, {len(existing):,} already in the target)")
    return dg.MaterializeResult(
        value=users,
        metadata={
            "dagster/row_count": len(users),
            "dagster/column_schema": frame_schema(users),
            "new_users": new,
            "referenced_by": dg.MetadataValue.json(referenced_by or {"(change-only re-sync)": len(users)}),
        },
    )


def clean_asset(table: Table) -> dg.AssetsDefinition:
    parents = list(dict.fromkeys(parent for _, parent in table.parent_refs))
    ins = {"raw": dg.AssetIn(f"raw_{table.source}"), "derived_users": dg.AssetIn()}
    ins |= {"source_snapshot": dg.AssetIn()}
    ins |= {f"clean_{p.name}": dg.AssetIn() for p in parents}
    is_parent = any(p is table for t in SOURCE_TABLES for _, p in t.parent_refs)

    @dg.asset(
        name=f"clean_{table.name}",
        group_name="transform",
        kinds={"pandas", "arrow"},
        owners=OWNERS,
        description=f"{table.source}: row rules applied chunk by chunk, usernames remapped to users.id"
        + (f", {', '.join(p.name for p in parents)} references checked" if parents else "")
        + "; rejects kept with reason and payload.",
        ins=ins,
    )
    def _clean(
        context: dg.AssetExecutionContext,
        source: SqliteSource,
        target: PostgresTarget,
        raw: SourceTable,
        derived_users,
        source_snapshot: Snapshot,
        **loaded: CleanTable,
    ):
        with expected_failures(target):
            parents = {n.removeprefix("clean_"): v for n, v in loaded.items()}
            parent_keys = user_lib.parent_keys(table, parents, lambda parent: pg_users.held_keys(target, parent))
            ctx = CleaningInputs(derived_users, parent_keys, raw.facts)
            run_dir, full_run = source_snapshot.run_dir, raw.delta is None and source_snapshot.changes is None
            paths = (loaded_path(run_dir, table), rejects_path(run_dir, table))
            with (
                staging.stage_while_cleaning(target, table, paths, context.run_id, full_run) as stager,
                sqlite_read.chunk_reader(source, raw.snapshot, table) as reader,
            ):
                sink = stager.write if stager else None
                done = clean_source(reader, raw, table, ctx, run_dir, is_parent, context.log.info, sink=sink)
        if stager:
            context.log.info(staging.outcome(stager))
        context.log.info(
            f"{table.source}: {done.rows:,} rows, {done.rejected:,} rejected; "
            f"{done.fast_rows:,} judged in Arrow, {done.rows - done.fast_rows:,} value by value"
        )
        return dg.MaterializeResult(
            value=done,
            metadata={
                "dagster/row_count": done.rows,
                "rows_loadable": done.loaded,
                "rows_rejected": dg.MetadataValue.int(done.rejected),
                "rows_fast_path": done.fast_rows,
                "rejected_by_reason": dg.MetadataValue.json(done.reasons),
                "rejected_preview": dg.MetadataValue.md(markdown_table(done.preview)),
                "loadable_rows_file": dg.MetadataValue.path(done.loaded_path),
            },
        )

    return _clean


CLEAN_ASSETS = [clean_asset(t) for t in SOURCE_TABLES]
