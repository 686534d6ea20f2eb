"""Preflight: what migrate would do with this source and target, with nothing written to the target.

Run by the `preflight` job. `preflight_source` copies the source (apart from migrate's backups) and derives
its users; `preflight_target` looks at the target in a read-only session; each `preflight_<table>` runs
migrate's cleaning over every chunk while profiling each column; `preflight_summary` logs the verdict and
fails the run, saying why, when migrate would fail (reject budget, target unreachable or of another
shape, cutover recorded). See `agent_migration/preflight/`.
"""

import dagster as dg

from agent_migration import preflight, runlog
from agent_migration.artifacts import PreflightSource, TableAssessment, TargetAssessment
from agent_migration.assets.common import OWNERS, markdown_table
from agent_migration.resources import MigrationError, PostgresTarget, SqliteSource
from agent_migration.tables import SOURCE_TABLES, Table
from agent_migration.target.budget import budget_of, describe, top_reasons

GROUP = "preflight"


def _budget(target: PostgresTarget):
    try:
        return budget_of(target)
    except MigrationError as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from None


@dg.asset(
    group_name=GROUP,
    kinds={"sqlite"},
    owners=OWNERS,
    description="One copy of the live source (online backup API, kept in .migration/preflight, apart from "
    "migrate's backups), its tables counted, its users derived; what the plan does not carry listed.",
)
def preflight_source(
    context: dg.AssetExecutionContext, source: SqliteSource, target: PostgresTarget
) -> dg.MaterializeResult:
    try:
        pre = preflight.snapshot(source, target, context.run_id, context.log.info)
    except MigrationError as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from None
    stats = pre.snapshot.stats
    return dg.MaterializeResult(
        value=pre,
        metadata={
            "source_path": dg.MetadataValue.path(str(source.path)),
            "snapshot": dg.MetadataValue.path(pre.snapshot.path),
            "rows_by_table": dg.MetadataValue.json({t: s["rows"] for t, s in stats.items()}),
            "dagster/row_count": sum(s["rows"] for s in stats.values()),
            "users": len(pre.users),
            "not_carried": dg.MetadataValue.json(runlog.not_carried(pre.snapshot.extra)),
        },
    )


@dg.asset(
    group_name=GROUP,
    kinds={"postgres"},
    owners=OWNERS,
    description="The target, read only: connection, privileges migrate needs, app tables of another shape, "
    "a recorded cutover.",
    check_specs=[
        dg.AssetCheckSpec(
            "target_ready",
            asset="preflight_target",
            description="migrate could write here: reachable, right shape, privileges, no cutover recorded.",
        )
    ],
)
def preflight_target(context: dg.AssetExecutionContext, target: PostgresTarget):
    found = preflight.assess_target(target)
    for problem in found.problems:
        context.log.warning(f"target {found.where}: {problem}")
    meta = {
        "target": found.where,
        "reachable": found.reachable,
        "problems": dg.MetadataValue.json(list(found.problems)),
    }
    return dg.MaterializeResult(
        value=found,
        metadata={
            **meta,
            **{k: dg.MetadataValue.json(v) if isinstance(v, list) else v for k, v in found.facts.items()},
        },
        check_results=[dg.AssetCheckResult(passed=not found.problems, metadata=meta)],
    )


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


def table_asset(table: Table) -> dg.AssetsDefinition:
    parents = list(dict.fromkeys(parent for _, parent in table.parent_refs))
    ins = {"preflight_source": dg.AssetIn()} | {f"preflight_{p.name}": dg.AssetIn() for p in parents}
    name = f"preflight_{table.name}"
    budget_check = "The share of rows that would be rejected is within MIGRATION_MAX_REJECT_SHARE."

    @dg.asset(
        name=name,
        group_name=GROUP,
        kinds={"sqlite", "pandas", "arrow"},
        owners=OWNERS,
        description=f"{table.source} through migrate's row rules, chunk by chunk, nothing written: rows that "
        "would load or be rejected (per reason, with samples), and each column against its target type.",
        ins=ins,
        check_specs=[
            dg.AssetCheckSpec("within_reject_budget", asset=name, description=budget_check),
            dg.AssetCheckSpec("rows_rejected", asset=name, description="Warns when rows would be rejected."),
        ],
    )
    def _assess(
        context: dg.AssetExecutionContext,
        source: SqliteSource,
        target: PostgresTarget,
        preflight_source: PreflightSource,
        **loaded: TableAssessment,
    ):
        budget = _budget(target)
        up = {n.removeprefix("preflight_"): v for n, v in loaded.items()}
        done = preflight.assess_table(source, preflight_source, table, up, context.log.info)
        return dg.MaterializeResult(
            value=done,
            metadata={
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
            check_results=_checked(done, budget),
        )

    return _assess


TABLE_ASSETS = [table_asset(t) for t in SOURCE_TABLES]


@dg.asset(
    group_name=GROUP,
    kinds={"sqlite", "postgres"},
    owners=OWNERS,
    ins={"preflight_source": dg.AssetIn(), "preflight_target": dg.AssetIn()}
    | {f"preflight_{t.name}": dg.AssetIn() for t in SOURCE_TABLES},
    description="The verdict: would migrate succeed? Logged as the run's last lines; the run fails, saying "
    "why, when migrate would fail.",
)
def preflight_summary(
    context: dg.AssetExecutionContext,
    target: PostgresTarget,
    preflight_source: PreflightSource,
    preflight_target: TargetAssessment,
    **assessed: TableAssessment,
) -> dg.MaterializeResult:
    budget = _budget(target)
    tables = [assessed[f"preflight_{t.name}"] for t in SOURCE_TABLES]
    why = preflight.blockers(preflight_target, tables, budget)
    connect = runlog.connect_line(target)
    context.log.info(preflight.summary(preflight_source, preflight_target, tables, budget, why, connect))
    meta = {
        "verdict": "migrate would fail" if why else "migrate would succeed",
        "why": dg.MetadataValue.json(why),
        "reject_budget": budget.share,
        "not_carried": dg.MetadataValue.json(runlog.not_carried(preflight_source.snapshot.extra)),
    }
    if why:
        raise dg.Failure(
            description="migrate would fail: " + " | ".join(why), metadata=meta, allow_retries=False
        )
    return dg.MaterializeResult(metadata=meta)
