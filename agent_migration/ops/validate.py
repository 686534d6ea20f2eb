"""Validate: the `validate` job, and what it (and migrate's sample check) reports.

Thin on purpose: the comparison is `agent_migration.validation`. The job is op-based (not an asset job)
so that "Materialize all" in the UI never runs it; its results are recorded on the external asset
`validation_report` (a materialization, and one check per table).
"""

import dagster as dg

from agent_migration import runlog
from agent_migration.boundary import expected_failures
from agent_migration.core.tables import TARGET_TABLES
from agent_migration.metadata import (
    OWNERS,
    REJECTED_ROWS,
    log_report,
    report_metadata,
    table_metadata,
)
from agent_migration.resources import PostgresTarget, SqliteSource
from agent_migration.validation.run import validate

REPORT = dg.AssetKey("validation_report")

validation_report = dg.AssetSpec(
    REPORT,
    group_name="validation",
    kinds={"postgres", "sqlite"},
    owners=OWNERS,
    deps=[t.name for t in TARGET_TABLES] + [REJECTED_ROWS],
    description="The last `validate` run: PostgreSQL compared, value by value, with the source snapshot it "
    "was last published from (every source row loaded as the exact rules say, or rejected with its "
    "payload; no stray row; users and listings derived right). Written by the `validate` job only.",
)


@dg.op(
    description="Compare PostgreSQL with the source snapshot it was last published from, value by value; "
    "when every row matches, records its ledger (migration.validate_ledger, migration.ledger_*: a digest per "
    "stored row) so that a cutover proves only the rows changed since; never writes a migrated table; fails "
    "when any row differs.",
    out={},
)
def validate_target(context: dg.OpExecutionContext, source: SqliteSource, target: PostgresTarget):
    with expected_failures():
        report = validate(source, target, log=context.log.info, record=context.run_id)
    log_report(context.log, report)
    # Yielded, not `context.log_event`-ed: events logged so are dropped when the op then fails.
    yield dg.AssetMaterialization(asset_key=REPORT, metadata=report_metadata(report))
    for t in report.tables:
        yield dg.AssetCheckEvaluation(
            asset_key=REPORT,
            check_name=f"{t.name}_matches_source",
            passed=t.ok,
            metadata=table_metadata(t),
            severity=dg.AssetCheckSeverity.ERROR,
        )
    if not report.ok:
        raise dg.Failure(description=report.failure(), metadata=report_metadata(report), allow_retries=False)


validate_job = dg.GraphDefinition(
    name="validate",
    node_defs=[validate_target],
    description="Prove PostgreSQL against the source snapshot it was last published from, every row, value by "
    "value through the exact rules (loaded rows, rejects and their payloads, no strays, users, listings). Writes "
    "only its ledger (a cutover then proves only what changed since); fails, listing each difference, when "
    "anything differs.",
).to_job(config=runlog.LOG_CONFIG, logger_defs={"console": runlog.console})
