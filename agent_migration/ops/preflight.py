"""Preflight: what migrate would do with this source and target, with nothing written to the target.

The `preflight` job: ops, not assets, so that "Materialize all" never runs it; each op records its findings
(metadata and checks) on the external asset of its own name, so their history shows on the asset pages. `preflight_source` copies the source (apart from migrate's backups) and derives
its users; `preflight_target` looks at the target in a read-only session; each `preflight_<table>` runs
migrate's cleaning over every chunk while profiling each column; `preflight_summary` logs the verdict and
fails the run, saying why, when migrate would fail (reject budget, target unreachable or of another
shape, cutover recorded). See `agent_migration/preflight/`.
"""

from collections.abc import Iterator

import dagster as dg

from agent_migration import runlog
from agent_migration.boundary import expected_failures
from agent_migration.core import text
from agent_migration.core.artifacts import PreflightSource, TableAssessment, TargetAssessment
from agent_migration.core.tables import SOURCE_TABLES, Table
from agent_migration.metadata import OWNERS, markdown_table
from agent_migration.ops.record import checked, materialization, recorded
from agent_migration.postgres.budget import budget_of, describe, top_reasons
from agent_migration.preflight import assess as preflight
from agent_migration.resources import PostgresTarget, SqliteSource

GROUP = "preflight"


def _budget(target: PostgresTarget):
    with expected_failures():
        return budget_of(target)


def _spec(name: str, kinds: set[str], description: str, deps=()) -> dg.AssetSpec:
    """An external asset of the preflight group: its op records each run's findings on it."""
    return dg.AssetSpec(name, group_name=GROUP, kinds=kinds, owners=OWNERS, deps=deps, description=description)


SOURCE_SPEC = _spec(
    "preflight_source",
    {"sqlite"},
    "One copy of the live source (online backup API, kept in .migration/preflight, apart from "
    "migrate's backups), its tables counted, its users derived; what the plan does not carry listed.",
)


@dg.op(description=SOURCE_SPEC.description)
def preflight_source(context: dg.OpExecutionContext, source: SqliteSource, target: PostgresTarget) -> PreflightSource:
    with expected_failures():
        pre = preflight.snapshot(source, target, context.run_id, context.log.info)
    stats = pre.snapshot.stats
    return recorded(
        context,
        SOURCE_SPEC,
        pre,
        {
            "source_path": dg.MetadataValue.path(str(source.sqlite_path)),
            "snapshot": dg.MetadataValue.path(pre.snapshot.path),
            "rows_by_table": dg.MetadataValue.json({t: s["rows"] for t, s in stats.items()}),
            "dagster/row_count": sum(s["rows"] for s in stats.values()),
            "users": len(pre.users),
            "not_carried": dg.MetadataValue.json(text.not_carried(pre.snapshot.extra)),
        },
    )


TARGET_SPEC = _spec(
    "preflight_target",
    {"postgres"},
    "The target, read only: connection, privileges migrate needs, app tables of another shape, "
    "a recorded cutover. Check target_ready: migrate could write here.",
)


@dg.op(description=TARGET_SPEC.description)
def preflight_target(context: dg.OpExecutionContext, target: PostgresTarget) -> TargetAssessment:
    found = preflight.assess_target(target)
    for problem in found.problems:
        context.log.warning(f"target {found.where}: {problem}")
    meta = {
        "target": found.where,
        "reachable": found.reachable,
        "problems": dg.MetadataValue.json(list(found.problems)),
    }
    facts = {k: dg.MetadataValue.json(v) if isinstance(v, list) else v for k, v in found.facts.items()}
    checked(context, TARGET_SPEC, [dg.AssetCheckResult(check_name="target_ready", passed=not found.problems, metadata=meta)])
    return recorded(context, TARGET_SPEC, found, {**meta, **facts})


def _samples(done: TableAssessment) -> str:
    rows = [
        {
            "reason": describe(kind, n, done.below.get(kind, 0)),
            "source_key": s["source_key"],
            "why": s["reason"],
        }
        for kind, n in sorted(done.reasons.items(), key=lambda kv: -kv[1])
        for s in done.samples.get(kind, [])
    ]
    return markdown_table(rows, limit=30, width=120)


def _profile(done: TableAssessment) -> str:
    rows = [
        {
            "column": name,
            "target": col["target"],
            "seen": ", ".join(f"{k} {n:,}" for k, n in col["seen"].items()),
            "min..max": f"{col['min']}..{col['max']}" if "min" in col else "",
            "longest": col.get("longest", ""),
            "formats": ", ".join(f"{k} {n:,}" for k, n in col.get("formats", {}).items()),
            "fits": {True: "yes", False: "NO"}.get(col.get("fits"), ""),
        }
        for name, col in done.columns.items()
    ]
    return markdown_table(rows, limit=100, width=120)


def _checked(done: TableAssessment, budget) -> list[dg.AssetCheckResult]:
    share = preflight.share(done)
    reasons = {"top_reasons": dg.MetadataValue.json(top_reasons(share, 10))}
    return [
        dg.AssetCheckResult(
            check_name="within_reject_budget",
            passed=not share.over(budget),
            metadata={"reject_share": round(share.share, 4), "budget": budget.share, **reasons},
        ),
        dg.AssetCheckResult(
            check_name="rows_rejected",
            passed=done.rejected == 0,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"rows_would_reject": done.rejected, **reasons},
        ),
    ]


def table_spec(table: Table) -> dg.AssetSpec:
    return _spec(
        f"preflight_{table.name}",
        {"sqlite", "pandas", "arrow"},
        f"{table.source} through migrate's row rules, chunk by chunk, nothing written: rows that "
        "would load or be rejected (per reason, with samples), and each column against its target type. "
        "Checks: within_reject_budget (the share within MIGRATION_MAX_REJECT_SHARE), rows_rejected (warns).",
    )


def table_op(table: Table) -> dg.OpDefinition:
    parents = list(dict.fromkeys(parent for _, parent in table.parent_refs))
    spec = table_spec(table)

    @dg.op(
        name=spec.key.to_python_identifier(),
        description=spec.description,
        ins={"preflight_source": dg.In()} | {f"preflight_{p.name}": dg.In() for p in parents},
    )
    def _assess(
        context: dg.OpExecutionContext,
        source: SqliteSource,
        target: PostgresTarget,
        preflight_source: PreflightSource,
        **loaded: TableAssessment,
    ) -> TableAssessment:
        budget = _budget(target)
        up = {n.removeprefix("preflight_"): v for n, v in loaded.items()}
        done = preflight.assess_table(source, preflight_source, table, up, context.log.info)
        checked(context, spec, _checked(done, budget))
        return recorded(
            context,
            spec,
            done,
            {
                "dagster/row_count": done.rows,
                "rows_would_load": done.loaded,
                "rows_would_reject": done.rejected,
                "reject_share": round(preflight.share(done).share, 4),
                "rejected_by_reason": dg.MetadataValue.json(done.reasons),
                "reject_samples": dg.MetadataValue.md(_samples(done)),
                "column_profile": dg.MetadataValue.md(_profile(done)),
                "columns": dg.MetadataValue.json(done.columns),
                "seconds": done.seconds,
            },
        )

    return _assess


TABLE_OPS = {t.name: table_op(t) for t in SOURCE_TABLES}


SUMMARY_SPEC = _spec(
    "preflight_summary",
    {"sqlite", "postgres"},
    "The verdict: would migrate succeed? Logged as the run's last lines; the run fails, saying why, when "
    "migrate would fail.",
    deps=[SOURCE_SPEC, TARGET_SPEC, *(table_spec(t) for t in SOURCE_TABLES)],
)


@dg.op(
    out={},
    description=SUMMARY_SPEC.description,
    ins={"preflight_source": dg.In(), "preflight_target": dg.In()}
    | {f"preflight_{t.name}": dg.In() for t in SOURCE_TABLES},
)
def preflight_summary(
    context: dg.OpExecutionContext,
    target: PostgresTarget,
    preflight_source: PreflightSource,
    preflight_target: TargetAssessment,
    **assessed: TableAssessment,
) -> Iterator[dg.AssetMaterialization]:
    budget = _budget(target)
    tables = [assessed[f"preflight_{t.name}"] for t in SOURCE_TABLES]
    why = preflight.blockers(preflight_target, tables, budget)
    connect = runlog.connect_line(target)
    context.log.info(preflight.summary(preflight_source, preflight_target, tables, budget, why, connect))
    meta = {
        "verdict": "migrate would fail" if why else "migrate would succeed",
        "why": dg.MetadataValue.json(why),
        "reject_budget": budget.share,
        "not_carried": dg.MetadataValue.json(text.not_carried(preflight_source.snapshot.extra)),
    }
    yield materialization(SUMMARY_SPEC, meta)
    if why:
        raise dg.Failure(
            description="migrate would fail: " + " | ".join(why), metadata=meta, allow_retries=False
        )


SPECS = [SOURCE_SPEC, TARGET_SPEC, *(table_spec(t) for t in SOURCE_TABLES), SUMMARY_SPEC]


@dg.job(
    name="preflight",
    tags={"agent_migration/side_job": "preflight"},
    config=runlog.LOG_CONFIG,
    logger_defs={"console": runlog.console},
    description="What migrate would do, with nothing written to the target: every row rule over one snapshot "
    "of the source, the target checked read-only, the reject budget; fails, saying why, when migrate would.",
)
def preflight_job():
    pre = preflight_source()
    done: dict = {}
    for table in SOURCE_TABLES:  # parents first (the spec's order), so children see their parents' keys
        parents = dict.fromkeys(p.name for _, p in table.parent_refs)
        done[table.name] = TABLE_OPS[table.name](
            preflight_source=pre, **{f"preflight_{p}": done[p] for p in parents}
        )
    preflight_summary(
        preflight_source=pre,
        preflight_target=preflight_target(),
        **{f"preflight_{name}": value for name, value in done.items()},
    )
