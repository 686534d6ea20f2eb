"""Rollback: PostgreSQL's current state, rejected rows restored, as a new SQLite file the old app runs on.

The `rollback_export` job (after the cutover, when the app writes to PostgreSQL): an op, not an asset, so
that "Materialize all" never writes a rollback file; it records the file on the external asset
`rollback_file`. It reads the target in one read-only snapshot and never writes to it; the file it writes
verifies itself (checks rows_reconcile, sums_reconcile, no_conflicts).
"""

from collections.abc import Iterator

import dagster as dg

from agent_migration import runlog
from agent_migration.boundary import expected_failures
from agent_migration.core import text
from agent_migration.core.artifacts import RollbackExport
from agent_migration.core.tables import TARGET_TABLES
from agent_migration.metadata import OWNERS, REJECTED_ROWS, markdown_table
from agent_migration.ops.record import evaluations, materialization
from agent_migration.resources import ExportFile, PostgresTarget, SqliteSource
from agent_migration.rollback import export as rollback

GROUP = "rollback"


def check_results(done: RollbackExport) -> list[dg.AssetCheckResult]:
    rows = {t.name: t.rows_reconcile for t in done.tables}
    sums = {
        t.name: {"file": t.sums_file, "expected": t.sums_expected} for t in done.tables if t.sums_expected
    }
    conflicts = sum(t.conflicts for t in done.tables)
    return [
        dg.AssetCheckResult(
            check_name="rows_reconcile",
            passed=all(rows.values()),
            metadata={"tables": dg.MetadataValue.json(rows)},
        ),
        dg.AssetCheckResult(
            check_name="sums_reconcile",
            passed=all(t.sums_reconcile for t in done.tables),
            metadata={"totals": dg.MetadataValue.json(sums)},
        ),
        dg.AssetCheckResult(
            check_name="no_conflicts",
            passed=conflicts == 0,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"rollback_conflicts": conflicts},
        ),
    ]


SPEC = dg.AssetSpec(
    "rollback_file",
    group_name=GROUP,
    kinds={"sqlite"},
    owners=OWNERS,
    deps=[t.name for t in TARGET_TABLES] + [REJECTED_ROWS],
    description="A new SQLite file in the app's own schema holding PostgreSQL's current state and every "
    "rejected row restored byte for byte (env EXPORT_SQLITE_PATH; never overwrites a file). Checks: "
    "rows_reconcile and sums_reconcile (the file = PostgreSQL + the restored rejects), no_conflicts (warns).",
)


@dg.op(name="rollback_file", out={}, description=SPEC.description)
def rollback_file(
    context: dg.OpExecutionContext, target: PostgresTarget, export: ExportFile, source: SqliteSource
) -> Iterator:
    with expected_failures(target):
        path = export.destination()
        context.log.info(f"rollback file: writing {path} from PostgreSQL at {target.describe()}")
        done = rollback.export(target, path, source.rows_per_chunk, context.log.info)
    table = [
        {
            "table": t.name,
            "postgresql": t.pg_rows,
            "rejects": t.rejects,
            "restored": t.restored,
            "conflicts": t.conflicts,
            "file": t.file_rows,
        }
        for t in done.tables
    ]
    heads = list(table[0])
    summary = text.text_table(
        heads, [[f"{v:,}" if isinstance(v, int) else v for v in row.values()] for row in table]
    )
    context.log.info(f"rollback file written in {done.seconds:.1f} s: {done.path}\n{summary}")
    yield materialization(
        SPEC,
        {
            "path": dg.MetadataValue.path(done.path),
            "tables": dg.MetadataValue.md(markdown_table(table, limit=20)),
            "dagster/row_count": sum(t.file_rows for t in done.tables),
            "rejects_restored": sum(t.restored for t in done.tables),
            "rollback_conflicts": sum(t.conflicts for t in done.tables),
            "seconds": done.seconds,
            "source": target.describe(),
        },
    )
    results = check_results(done)
    yield from evaluations(SPEC, results)
    failed = [r.check_name for r in results if not r.passed and r.severity == dg.AssetCheckSeverity.ERROR]
    if failed:  # the blocking checks of the asset this was: the file must not be trusted
        raise dg.Failure(
            description=f"rollback file {done.path} does not reconcile with PostgreSQL: {', '.join(failed)} "
            "failed (see the checks' metadata); do not use it.",
            allow_retries=False,
        )


@dg.job(
    name="rollback_export",
    config=runlog.LOG_CONFIG,
    logger_defs={"console": runlog.console},
    description="Write PostgreSQL's current state, every rejected row restored, into a new SQLite file in the "
    "app's own schema (env EXPORT_SQLITE_PATH): the rollback after a cutover. Reads PostgreSQL only.",
)
def rollback_export():
    rollback_file()
