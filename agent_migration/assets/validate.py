"""Validate: the `validate` job's op, the sample check every `migrate` runs, and what both report.

Thin on purpose: the comparison is `agent_migration.validation`. The job is op-based (not an asset job)
so that "Materialize all" in the UI never runs it; its results are recorded on the external asset
`validation_report` (a materialization, and one check per table).
"""

import os

import dagster as dg

from agent_migration.assets.common import OWNERS, markdown_table
from agent_migration.resources import MigrationError, PostgresTarget, SqliteSource
from agent_migration.tables import SOURCE_TABLES, TARGET_TABLES
from agent_migration.target.publishing import REJECTED_ROWS
from agent_migration.validation import Report, TableReport, validate

REPORT = dg.AssetKey("validation_report")
SAMPLE_ENV = "MIGRATION_VALIDATE_SAMPLE"
SAMPLE_DEFAULT = 1000

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


def table_metadata(t: TableReport) -> dict:
    return {
        "rows_compared": t.compared,
        "matched": t.matched,
        "differing": t.differing,
        "missing": t.missing,
        "extra": t.extra,
        "differences": dg.MetadataValue.md("\n".join(f"- `{d.line()}`" for d in t.differences) or "_none_"),
    }


def report_metadata(report: Report) -> dict:
    rows = [
        {
            "table": t.name,
            "rows compared": t.compared,
            "matched": t.matched,
            "differing": t.differing,
            "missing": t.missing,
            "extra": t.extra,
        }
        for t in report.tables
    ]
    return {
        "summary": dg.MetadataValue.md(markdown_table(rows, limit=len(rows))),
        "passed": report.ok,
        "snapshot": dg.MetadataValue.path(report.snapshot),
        "published_by_run": report.published_by,
        "mode": report.mode,
        "seconds": round(report.seconds, 2),
        "notes": dg.MetadataValue.md("\n".join(report.notes) or "_none_"),
    }


def log_report(log, report: Report) -> None:
    """One line per difference (the first 20 per table), then the summary table."""
    for line in report.lines():
        log.error(line)
    log.info(report.summary())


@dg.op(
    description="Compare PostgreSQL with the source snapshot it was last published from, value by value; "
    "writes nothing to the target; fails when any row differs.",
    out=dg.Out(dg.Nothing),
)
def validate_target(context: dg.OpExecutionContext, source: SqliteSource, target: PostgresTarget):
    try:
        report = validate(source, target, log=context.log.info)
    except MigrationError as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from None
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


def sample_size() -> int:
    raw = os.environ.get(SAMPLE_ENV, str(SAMPLE_DEFAULT)).strip()
    try:
        n = int(raw)
    except ValueError:
        n = -1
    if n < 0:
        raise MigrationError(
            f"{SAMPLE_ENV} must be a whole number of rows >= 0 (0 turns the check off), not {raw!r}."
        )
    return n


@dg.multi_asset_check(
    specs=[
        dg.AssetCheckSpec(
            "values_match_source",
            asset=t.name,
            description=f"A random sample of source rows (env {SAMPLE_ENV}, default {SAMPLE_DEFAULT}; 0: off) "
            "compared value by value with PostgreSQL through the exact rules, as `validate` does for every row.",
        )
        for t in SOURCE_TABLES
    ],
    description="Every migrate run: a random sample of each source table proven against PostgreSQL.",
)
def values_match_source(context: dg.AssetCheckExecutionContext, source: SqliteSource, target: PostgresTarget):
    try:
        n = sample_size()
        report = None if n == 0 else validate(source, target, sample=n)
    except MigrationError as exc:
        raise dg.Failure(description=str(exc)) from None
    if report is not None and not report.ok:
        for line in report.lines():
            context.log.error(line)
    by_name = {t.name: t for t in report.tables} if report else {}
    for table in SOURCE_TABLES:
        found = by_name.get(table.name)
        meta = {"sample_rows": n} if found is None else {"sample_rows": n, **table_metadata(found)}
        yield dg.AssetCheckResult(
            asset_key=table.name,
            check_name="values_match_source",
            passed=found is None or found.ok,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata=meta,
        )
