"""The sample check every `migrate` run makes: a random sample of each source table proven against
PostgreSQL value by value, as the `validate` job (`ops/validate.py`) does for every row."""

import dagster as dg

from agent_migration.boundary import expected_failures
from agent_migration.core.settings import SOURCE
from agent_migration.core.tables import SOURCE_TABLES
from agent_migration.metadata import table_metadata
from agent_migration.resources import PostgresTarget, SqliteSource
from agent_migration.validation.run import validate

SAMPLE = SOURCE["validate_sample"]


@dg.multi_asset_check(
    specs=[
        dg.AssetCheckSpec(
            "values_match_source",
            asset=t.name,
            description=f"A random sample of source rows (env {SAMPLE.env}, default {SAMPLE.default}; 0: off) "
            "compared value by value with PostgreSQL through the exact rules, as `validate` does for every row.",
        )
        for t in SOURCE_TABLES
    ],
    description="Every migrate run: a random sample of each source table proven against PostgreSQL.",
)
def values_match_source(context: dg.AssetCheckExecutionContext, source: SqliteSource, target: PostgresTarget):
    with expected_failures():
        n = source.setting("validate_sample").value
        report = None if n == 0 else validate(source, target, sample=n)
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
