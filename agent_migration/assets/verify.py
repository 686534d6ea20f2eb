"""Verify: asset checks on every target table and a final report, all read from PostgreSQL.

Per table: source rows = loaded + rejected (blocking: lost or duplicated rows fail the run), no orphan
foreign keys, CHECKs hold, sums reconcile, the sequence is ahead of max(id); rejected rows alone warn.
"""

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from queue import Queue

import dagster as dg

from agent_migration import runlog
from agent_migration.boundary import expected_failures
from agent_migration.core import text
from agent_migration.core.tables import MARKETPLACE_LISTINGS, SOURCE_TABLES, TARGET_TABLES, Table
from agent_migration.metadata import CUTOVER_TAG, OWNERS, REJECTED_ROWS, log_report, markdown_table
from agent_migration.postgres import audit, cutover
from agent_migration.resources import PostgresTarget, SqliteSource
from agent_migration.validation import since

WARN, ERROR = dg.AssetCheckSeverity.WARN, dg.AssetCheckSeverity.ERROR


def _accounting(cur, table: Table, stats) -> dg.AssetCheckResult:
    found = audit.accounting(cur, table, stats)
    return dg.AssetCheckResult(passed=found["passed"], metadata={"table": table.name, **found})


def _foreign_keys(cur, table: Table, stats) -> dg.AssetCheckResult:
    found = audit.orphans(cur, table)
    bad = {c: f for c, f in found.items() if f["sample_keys"]}
    return dg.AssetCheckResult(
        passed=not bad, metadata={"table": table.name, "orphans": dg.MetadataValue.json(found)}
    )


def _constraints(cur, table: Table, stats) -> dg.AssetCheckResult:
    found = audit.constraint_breaks(cur, table)
    bad = {c: keys for c, keys in found.items() if keys}
    return dg.AssetCheckResult(
        passed=not bad, metadata={"table": table.name, "breaking_keys": dg.MetadataValue.json(found)}
    )


def _sums(cur, table: Table, stats) -> dg.AssetCheckResult:
    found = audit.sums(cur, table, stats)
    return dg.AssetCheckResult(
        passed=all(f["passed"] for f in found.values()),
        metadata={"table": table.name, "totals": dg.MetadataValue.json(found)},
    )


def _sequence(cur, table: Table, stats) -> dg.AssetCheckResult:
    found = audit.sequence_lag(cur, table, stats.get(table.source, {}).get("max_id") if table.source else None)
    return dg.AssetCheckResult(passed=found["passed"], metadata={"table": table.name, **found})


def _rejects(cur, table: Table, stats) -> dg.AssetCheckResult:
    count = audit.rejected_count(cur, table)
    return dg.AssetCheckResult(
        passed=count == 0,
        severity=WARN,
        metadata={
            "table": table.name,
            "rows_rejected": count,
            "rejected_by_reason": dg.MetadataValue.json(audit.rejects_by_reason(cur, table)),
            "rejected_sample": dg.MetadataValue.md(markdown_table(audit.reject_sample(cur, table))),
        },
    )


def _listings(cur, table: Table, stats) -> dg.AssetCheckResult:
    found = audit.listing_mismatches(cur)
    passed = found["for_sale_without_one_listing"] == 0 and found["active_but_not_for_sale"] == 0
    return dg.AssetCheckResult(passed=passed, metadata={"table": table.name, **found})


Check = tuple[str, str, Callable, bool]  # name, description, evaluator, blocking


def checks_for(table: Table) -> list[Check]:
    found: list[Check] = []
    if table.source:
        found.append(
            (
                "row_accounting",
                "Source rows = loaded rows + rejected rows; no rejected key twice.",
                _accounting,
                True,
            )
        )
        found.append(
            (
                "rejected_rows",
                "Warns when source rows were rejected; shows how many and why.",
                _rejects,
                False,
            )
        )
    if table.foreign_keys:
        found.append(("foreign_keys", "No foreign key points at a missing row.", _foreign_keys, False))
    if any(c.check_sql or c.not_null for c in table.columns):
        found.append(("constraints", "Every CHECK and NOT NULL of the plan holds.", _constraints, False))
    if table.sums:
        found.append(
            (
                "sums_reconcile",
                f"Totals of {', '.join(table.sums)} reconcile: source = loaded + rejected.",
                _sums,
                False,
            )
        )
    if table.serial:
        found.append(
            (
                "sequence_ahead",
                "The id sequence is ahead of max(id) and of the largest source id, rejected rows included, so the app's next insert works and a rollback can restore every reject.",
                _sequence,
                False,
            )
        )
    if table is MARKETPLACE_LISTINGS:
        found.append(
            (
                "listings_follow_agents",
                "One active listing per agent for sale, at its price and owner.",
                _listings,
                False,
            )
        )
    return found


CHECKS = {(t.name, name): (t, fn) for t in TARGET_TABLES for name, _, fn, _ in checks_for(t)}
SPECS = [
    dg.AssetCheckSpec(name, asset=t.name, description=desc, blocking=blocking)
    for t in TARGET_TABLES
    for name, desc, _, blocking in checks_for(t)
]


CHECK_CONNECTIONS = 2  # the checks of the big tables each read a whole table: two at a time


def _evaluate_all(target: PostgresTarget, stats) -> Iterator[tuple[tuple[str, str], dg.AssetCheckResult, float]]:
    """Every check, on `CHECK_CONNECTIONS` read-only sessions of their own (the server scans two
    tables at once), yielded in their order with the seconds each took."""
    with ExitStack() as stack:
        sessions: Queue = Queue()
        for _ in range(CHECK_CONNECTIONS):
            conn = stack.enter_context(target.connect())
            conn.set_session(readonly=True)
            sessions.put(conn)

        def evaluate(table: Table, fn: Callable) -> tuple[dg.AssetCheckResult, float]:
            conn = sessions.get()
            try:
                started = time.monotonic()
                with conn.cursor() as cur:
                    return fn(cur, table, stats), time.monotonic() - started
            finally:
                sessions.put(conn)

        # The slowest first (whole-table reads of the largest tables), so the two sessions end together.
        order = sorted(CHECKS, key=lambda key: -(stats.get(CHECKS[key][0].source or "", {}).get("rows") or 0))
        pool = stack.enter_context(ThreadPoolExecutor(max_workers=CHECK_CONNECTIONS))
        futures = {key: pool.submit(evaluate, *CHECKS[key]) for key in order}
        for key in CHECKS:
            result, took = futures[key].result()
            yield key, result, took


@dg.multi_asset_check(
    specs=SPECS, description="All checks of the migrated tables, two PostgreSQL sessions at a time."
)
def migration_checks(context: dg.AssetCheckExecutionContext, target: PostgresTarget):
    lost = []
    with expected_failures(target):
        with target.connect() as conn, conn.cursor() as cur:
            stats = audit.recorded_source_stats(cur)
        took = {}
        for (table_name, name), result, seconds in _evaluate_all(target, stats):
            took[f"{table_name}.{name}"] = seconds
            if name == "row_accounting" and not result.passed:
                lost.append(table_name)
            yield dg.AssetCheckResult(
                asset_key=table_name,
                check_name=name,
                passed=result.passed,
                severity=result.severity,
                metadata=result.metadata,
            )
        # One line, not one per check: every log line is an event the instance stores.
        slowest = ", ".join(f"{k} {v:.2f} s" for k, v in sorted(took.items(), key=lambda kv: -kv[1])[:3])
        context.log.debug(f"{len(took)} checks in {sum(took.values()):.2f} s; slowest: {slowest}")
    if lost:
        raise dg.Failure(
            description=f"rows lost or duplicated in: {', '.join(lost)} (see check row_accounting). {FULL_RUN_HINT}"
        )


FULL_RUN_HINT = (
    "If the target was changed outside the migration, a full run reloads every row: launch migrate with "
    "ops: {source_snapshot: {config: {full_refresh: true}}}"
)


def failing_audits(context: dg.AssetExecutionContext, cur, stats) -> list[str]:
    """Every check of every table that does not pass (reject warnings aside): what blocks a cutover. As
    this run's checks found them a moment ago (a cutover runs them all, and nothing writes in between),
    else evaluated anew."""
    ran = runlog.check_results(context.instance, context.run_id)
    blocking = [key for key in CHECKS if key[1] != "rejected_rows"]
    if all(key in ran for key in blocking):
        return [f"{t}.{n}" for t, n in blocking if not ran[(t, n)]]
    return [f"{t}.{n}" for t, n in blocking if not CHECKS[(t, n)][1](cur, CHECKS[(t, n)][0], stats).passed]


def _prove_every_row(context: dg.AssetExecutionContext, source: SqliteSource, target: PostgresTarget) -> str:
    """No cutover unless every row is proven against the snapshot this run just published: in full where
    anything changed since the last validate's ledger, by the ledger elsewhere (`validation/since.py`);
    without a usable ledger, the full validate. Returns what it proved."""
    report = since.prove(source, target, log=context.log.info)
    log_report(context.log, report)
    if not report.ok:
        raise dg.Failure(description=f"cutover refused: {report.failure()}", allow_retries=False)
    return report.notes[0] if report.notes else (
        f"full validate before cutover: every row matches ({sum(t.compared for t in report.tables):,} compared)"
    )


def _log_summary(context: dg.AssetExecutionContext, target: PostgresTarget, rows, counts, changes) -> None:
    """The run-end table. This asset runs after `migration_checks` (blocking checks order it so)."""
    job = context.run.job_name if not context.run.job_name.startswith("__") else "run"
    title = (
        f"{job} finished (run {context.run_id[:8]}): loaded and rejected as the target holds them now; "
        "inserted/updated/deleted by this run"
    )
    checks = runlog.check_counts(context.instance, context.run_id)
    extra = text.not_carried(runlog.extras_of_last_snapshot(context.instance))
    context.log.info(runlog.migrate_summary(title, rows, counts, changes.get("changes", {}), checks, target, extra))


ACCOUNTING_KEYS = ("source_rows", "loaded_rows", "rejected_rows", "difference", "duplicate_reject_keys", "passed")


def _accounting_rows(context: dg.AssetExecutionContext, cur, stats: dict) -> list[dict]:
    """Per source table, source = loaded + rejected: as this run's `row_accounting` checks found it a
    moment ago (nothing writes in between; counting millions of rejects again cost seconds), else read
    anew (a run that did not execute those checks). A cutover's proof then accounts for every row."""
    found = runlog.check_metadata(context.instance, context.run_id, "row_accounting")
    if all(t.name in found for t in SOURCE_TABLES):
        return [{"table": t.name, **{k: found[t.name].get(k) for k in ACCOUNTING_KEYS}} for t in SOURCE_TABLES]
    return [{"table": t.name, **audit.accounting(cur, t, stats)} for t in SOURCE_TABLES]


@dg.asset(
    group_name="verify",
    kinds={"postgres"},
    owners=OWNERS,
    deps=[t.name for t in TARGET_TABLES] + [REJECTED_ROWS],
    description="The migration's final account: per table, source = loaded + rejected, this run's changes.",
)
def migration_report(
    context: dg.AssetExecutionContext, source: SqliteSource, target: PostgresTarget
) -> dg.MaterializeResult:
    cutting_over = context.run.tags.get(CUTOVER_TAG) == "true"
    proven = None
    with expected_failures(target), target.connect() as conn, conn.cursor() as cur:
        stats = audit.recorded_source_stats(cur)
        rows = _accounting_rows(context, cur, stats)
        counts = {t.name: audit.loaded_count(cur, t) for t in TARGET_TABLES}
        totals = {f"{t.name}.{k}": v for t in SOURCE_TABLES for k, v in audit.sums(cur, t, stats).items()}
        changes = audit.last_run_changes(cur)
        bad = [r["table"] for r in rows if not r["passed"]]
        if bad:
            _log_summary(context, target, rows, counts, changes)
            raise dg.Failure(
                description=f"rows lost or duplicated in {', '.join(bad)}. {FULL_RUN_HINT}",
                metadata={"accounting": dg.MetadataValue.md(markdown_table(rows))},
            )
        if cutting_over:
            failed = failing_audits(context, cur, stats)
            if failed:
                _log_summary(context, target, rows, counts, changes)
                raise dg.Failure(description=f"cutover refused: checks fail: {', '.join(failed)}")
            proven = _prove_every_row(context, source, target)
            cutover.record(cur, context.run_id, changes.get("snapshot"), counts)
            conn.commit()
            context.log.info("cutover recorded: migrate and the resync schedule will no longer write")
    change_rows = [{"table": t, **c} for t, c in changes.get("changes", {}).items()]
    _log_summary(context, target, rows, counts, changes)  # the run's last INFO line: every check ran before
    return dg.MaterializeResult(
        metadata={
            "accounting": dg.MetadataValue.md(markdown_table(rows)),
            "changes_this_run": dg.MetadataValue.md(markdown_table(change_rows)),
            "row_counts": dg.MetadataValue.json(counts),
            "totals": dg.MetadataValue.json(totals),
            "dagster/row_count": sum(counts.values()),
            "rows_rejected": sum(r["rejected_rows"] for r in rows),
            "target": target.describe(),
            "cutover_recorded": cutting_over,
            **({"validated": dg.MetadataValue.md(proven)} if proven else {}),
        }
    )
