"""Load: create the target schema, then publish every table in one PostgreSQL transaction.

`publish` copies each cleaned table's Arrow file with binary COPY (straight into the empty tables on a
first load, through a staging table and a set-based merge on a re-sync; see `publishing.py`); the whole
run's writes commit together or not at all.
"""

import time

import dagster as dg

from agent_migration import runlog
from agent_migration.boundary import expected_failures
from agent_migration.core.artifacts import CleanTable, Snapshot
from agent_migration.core.errors import MigrationError
from agent_migration.core.rules import Username
from agent_migration.core.tables import SOURCE_TABLES, TARGET_TABLES, Table
from agent_migration.metadata import OWNERS, REJECTED_ROWS, markdown_table, table_schema
from agent_migration.postgres import budget, cutover, ddl, embedded, merge, publishing, staging
from agent_migration.resources import PostgresTarget

POOL = "postgres"
RETRY = dg.RetryPolicy(max_retries=3, delay=2, backoff=dg.Backoff.EXPONENTIAL)



@dg.asset(
    group_name="load",
    kinds={"postgres"},
    owners=OWNERS,
    pool=POOL,
    retry_policy=RETRY,
    # After every table is cleaned: a source that cannot be read, or rejects over the budget, fail the run
    # before anything is written.
    ins={"source_snapshot": dg.AssetIn()} | {f"clean_{t.name}": dg.AssetIn() for t in SOURCE_TABLES},
    description="The plan's 7 app tables with every index, and the `migration` bookkeeping schema (idempotent); "
    "first, the reject budget: no table may have more than MIGRATION_MAX_REJECT_SHARE of its rows rejected.",
)
def target_schema(
    context: dg.AssetExecutionContext, target: PostgresTarget, source_snapshot: Snapshot, **clean: CleanTable
) -> dg.MaterializeResult:
    with expected_failures(target):
        cleaned = {t.name: clean[f"clean_{t.name}"] for t in SOURCE_TABLES}
        try:
            limit, shares = budget.enforce(target, source_snapshot, cleaned)
        except MigrationError as exc:
            if isinstance(exc, budget.BudgetExceeded):
                context.log.info(runlog.budget_summary(exc.shares, exc.budget))
            staging.discard_after_failure(target)  # (a bad setting too: what the cleaning staged goes)
            raise
        with target.connect() as conn, conn.cursor() as cur:
            merge.lock(cur, wait_s=target.lock_wait_s)
            cutover.refuse_after_cutover(cur)
            try:
                created = ddl.ensure_schema(cur)
            except ValueError as exc:
                conn.rollback()
                staging.discard_after_failure(target)
                raise MigrationError(
                    f"the target {target.describe()} already holds app tables of another shape: {exc}. "
                    "Nothing was changed; migrate into an empty database or fix those tables."
                ) from None
            conn.commit()
    where = target.describe()
    if target.is_embedded:
        # The embedded server trusts local socket connections: its URL holds no secret.
        url = embedded.ensure_database(target.embedded_folder)
        context.log.info(f"target: embedded PostgreSQL in {target.embedded_folder}; connect with: psql '{url}'")
    else:
        context.log.info(f"target: PostgreSQL at {where}")
    return dg.MaterializeResult(
        metadata={
            "target": where,
            "tables_created": dg.MetadataValue.json(created),
            "tables": dg.MetadataValue.json([t.name for t in TARGET_TABLES]),
            "reject_budget": limit.share,
            "reject_share_by_table": dg.MetadataValue.json({s.table: round(s.share, 4) for s in shares}),
        }
    )


def upstream(table: Table) -> list[str]:
    """The assets a target table is computed from (for lineage in the graph)."""
    if table.source:
        return [f"clean_{table.name}", "derived_users"]
    assets = {d.split(".")[0] for c in table.columns for d in c.derived_from}
    return sorted({a if a == "derived_users" else f"clean_{a}" for a in assets}) or ["target_schema"]


def column_lineage(table: Table) -> dg.TableColumnLineage:
    deps: dict[str, list[dg.TableColumnDep]] = {}
    for c in table.columns:
        found = [dg.TableColumnDep(f"raw_{table.source}", c.source)] if c.source else []
        if isinstance(c.rule, Username):
            found.append(dg.TableColumnDep("derived_users", "username"))
        found += [dg.TableColumnDep(*d.split(".")) for d in c.derived_from]
        if found:
            deps[c.name] = found
    return dg.TableColumnLineage(deps)


def lineage_markdown(lineage: dg.TableColumnLineage) -> str:
    rows = [
        {"column": col, "from": ", ".join(f"{'/'.join(d.asset_key.path)}.{d.column_name}" for d in deps)}
        for col, deps in lineage.deps_by_column.items()
    ]
    return markdown_table(rows, limit=100)


SPECS = [
    dg.AssetSpec(
        t.name,
        description=t.description,
        group_name="load",
        kinds={"postgres"},
        owners=OWNERS,
        deps=["target_schema", *upstream(t)],
        metadata={"dagster/column_schema": table_schema(t), "dagster/table_name": f"public.{t.name}"},
    )
    for t in TARGET_TABLES
] + [
    dg.AssetSpec(
        REJECTED_ROWS,
        description="migration.rejected_rows: every source row that could not be loaded, with reason and payload.",
        group_name="load",
        kinds={"postgres"},
        owners=OWNERS,
        deps=["target_schema", "source_snapshot", *(f"clean_{t.name}" for t in SOURCE_TABLES)],
    )
]


@dg.multi_asset(
    specs=SPECS,
    ins={"source_snapshot": dg.AssetIn(), "derived_users": dg.AssetIn()}
    | {f"clean_{t.name}": dg.AssetIn() for t in SOURCE_TABLES},
    pool=POOL,
    retry_policy=RETRY,
    description="Copy every cleaned table (binary COPY) and merge it into PostgreSQL in one transaction.",
)
def publish(
    context: dg.AssetExecutionContext,
    target: PostgresTarget,
    source_snapshot: Snapshot,
    derived_users,
    **clean,
):
    started = time.monotonic()
    tables: dict[str, CleanTable] = {t.name: clean[f"clean_{t.name}"] for t in SOURCE_TABLES}
    with expected_failures(target), target.connect() as conn, conn.cursor() as cur:
        published = publishing.publish_all(
            cur, target, source_snapshot, derived_users, tables, context.run_id, context.log.info
        )
        changes = published.changes
        conn.commit()
        counts = published.counts(cur)
    seconds = time.monotonic() - started
    loaded = len(derived_users) + sum(t.loaded for t in tables.values())
    context.log.info(
        f"published {loaded:,} rows in {seconds:.1f} s ({loaded / max(seconds, 1e-9):,.0f} rows/s)"
    )
    common = {
        "target": target.describe(),
        "source_backup": dg.MetadataValue.path(source_snapshot.path),
        "load_seconds": round(seconds, 3),
        "load_phases_seconds": dg.MetadataValue.json({k: round(v, 3) for k, v in published.phases.items()}),
        "connections": published.connections,
        "copied_while_cleaning": dg.MetadataValue.json(list(published.copied_while_cleaning)),
        "rows_per_second": round(loaded / max(seconds, 1e-9)),
    }
    for table in TARGET_TABLES:
        lineage = column_lineage(table)
        meta = {
            **common,
            "dagster/row_count": counts[table.name],
            "dagster/column_schema": table_schema(table),
            "dagster/column_lineage": lineage,
            "column_lineage": dg.MetadataValue.md(lineage_markdown(lineage)),
            "changes": dg.MetadataValue.json(
                changes.get(table.name, {"inserted": 0, "updated": 0, "deleted": 0})
            ),
        }
        if table.name in tables:
            meta["rows_rejected"] = tables[table.name].rejected
            meta["rejected_by_reason"] = dg.MetadataValue.json(tables[table.name].reasons)
        yield dg.MaterializeResult(asset_key=table.name, metadata=meta)
    preview = [{"source_table": t.source, **row} for t in SOURCE_TABLES for row in tables[t.name].preview][
        :10
    ]
    by_reason: dict[str, int] = {}
    for done in tables.values():
        for reason, n in done.reasons.items():
            by_reason[reason] = by_reason.get(reason, 0) + n
    yield dg.MaterializeResult(
        asset_key=REJECTED_ROWS,
        metadata={
            **common,
            "dagster/row_count": sum(t.rejected for t in tables.values()),
            "rejected_by_reason": dg.MetadataValue.json(
                dict(sorted(by_reason.items(), key=lambda kv: -kv[1])[:10])
            ),
            "rejected_preview": dg.MetadataValue.md(markdown_table(preview)),
        },
    )
