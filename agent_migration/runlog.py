"""What a run prints: the console logger (INFO by default, DEBUG on request) and the run-end summaries.

Dagster's own console logger prints every event at DEBUG, which buries how the migration went. The
jobs use `console` below instead: INFO and above unless env MIGRATION_LOG_LEVEL or the run config
(`loggers: {console: {config: {log_level: DEBUG}}}`) asks for more. Every `migrate`, `cutover` and
`preflight` run ends with a short table (per table: source rows, loaded, rejected, changes, checks) and
one line on how to connect and how to look at the rejects.
"""

from __future__ import annotations

import logging
import os
import sys
import weakref

import dagster as dg

from agent_migration.core.errors import MigrationError
from agent_migration.core.settings import LOG_LEVEL, resolve
from agent_migration.core.tables import TARGET_TABLES
from agent_migration.core.text import checks_cell, text_table
from agent_migration.postgres import embedded
from agent_migration.resources import PostgresTarget

LEVEL_ENV = LOG_LEVEL.env
# The jobs' default run config: the console logger below, at the level it reads at run time.
LOG_CONFIG = {"loggers": {"console": {"config": {}}}}
REJECTS_QUERY = "SELECT source_table, source_key, reason, payload FROM migration.rejected_rows ORDER BY 1, 2;"


@dg.logger(
    config_schema={
        "log_level": dg.Field(
            str,
            is_required=False,
            description=f"DEBUG, INFO (default: env {LEVEL_ENV}, else INFO), WARNING...",
        ),
        "name": dg.Field(str, is_required=False, default_value="dagster"),
    },
    description=f"The console log: INFO and above unless env {LEVEL_ENV} or this config asks for DEBUG.",
)
def console(init_context: dg.InitLoggerContext) -> logging.Logger:
    level = resolve(LOG_LEVEL, init_context.logger_config.get("log_level") or None).value.strip().upper()
    context = dg.InitLoggerContext(
        {"log_level": level, "name": init_context.logger_config.get("name", "dagster")},
        dg.colored_console_logger,
        run_id=init_context.run_id,
    )
    logger = dg.colored_console_logger.logger_fn(context)
    if level != "DEBUG":  # DEBUG keeps Dagster's traces for every failure
        for handler in logger.handlers:
            handler.addFilter(CleanFailures())
    _straight_to_the_terminal(logger)
    return logger


def _straight_to_the_terminal(logger: logging.Logger) -> None:
    """Dagster copies a run's stderr into its compute log and back to the terminal by a `tail` it kills
    as the run ends, so the last lines (a verdict, a run's summary) can miss the terminal
    (dagster-io/dagster#23336). The console writes to its own copy of the terminal's descriptor, taken now,
    before Dagster redirects stderr; the run's events stay in the event log as before."""
    try:
        fd = os.dup(sys.stderr.fileno())
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is both
        return  # stderr is no file (an embedding's own stream): Dagster's handler stays
    stream = os.fdopen(fd, "w", buffering=1, encoding=sys.stderr.encoding or "utf-8", errors="backslashreplace")
    for old in list(logger.handlers):
        new = logging.StreamHandler(stream)
        new.setLevel(old.level)
        new.setFormatter(old.formatter)
        for kept in old.filters:
            new.addFilter(kept)
        logger.removeHandler(old)
        logger.addHandler(new)
    weakref.finalize(logger, stream.close)


# The project's own failures: a refusal, a verdict, a bad setting, an unreachable server. Their message
# says everything; Dagster's stack trace (twice: step and run) would bury it.
DELIBERATE = {"Failure", "MigrationError", "SettingError", "CutoverDone"}


def deliberate_message(error) -> str | None:
    """The message of a failure the project raised on purpose (anywhere in the cause chain), else None."""
    while error is not None:
        if error.cls_name in DELIBERATE:
            return error.message.split(": ", 1)[-1].strip()  # "module.Class: text"
        error = error.cause
    return None


class CleanFailures(logging.Filter):
    """A deliberate step failure prints its message once, at ERROR, without a trace; the run failure that
    follows it only names the failed steps. Unexpected errors keep their trace."""

    def filter(self, record: logging.LogRecord) -> bool:
        meta = getattr(record, "dagster_meta", None) or {}
        event = meta.get("dagster_event")
        if event is None or event.event_type not in (
            dg.DagsterEventType.STEP_FAILURE,
            dg.DagsterEventType.RUN_FAILURE,
        ):
            return True
        data = event.event_specific_data
        message = deliberate_message(getattr(data, "error", None))
        if message is None and event.event_type == dg.DagsterEventType.RUN_FAILURE:
            message = "" if getattr(data, "error", None) is None else None  # steps failed: named below
        if message is None:
            return True
        where = " - ".join(str(p) for p in (meta.get("job_name"), meta.get("run_id"), meta.get("step_key")) if p)
        if event.event_type == dg.DagsterEventType.STEP_FAILURE:
            record.msg = f"{where} - {message}"
        else:
            record.msg = f"{where} - run failed ({meta.get('orig_message', '').strip()})"
        record.args = ()
        return True


def check_counts(instance: dg.DagsterInstance, run_id: str) -> dict[str, list[int]]:
    """Per asset: this run's checks [passed, warned, failed] (read back from the run's own events)."""
    found: dict[str, list[int]] = {}
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records
    for record in records:
        evaluation = record.event_log_entry.dagster_event.event_specific_data
        counts = found.setdefault(evaluation.asset_key.to_user_string(), [0, 0, 0])
        warned = evaluation.severity == dg.AssetCheckSeverity.WARN
        counts[0 if evaluation.passed else (1 if warned else 2)] += 1
    return found


def check_metadata(instance: dg.DagsterInstance, run_id: str, check_name: str) -> dict[str, dict]:
    """Per asset: the metadata (plain values) of this run's evaluation of `check_name`."""
    found: dict[str, dict] = {}
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records
    for record in records:
        evaluation = record.event_log_entry.dagster_event.event_specific_data
        if evaluation.check_name == check_name:
            found[evaluation.asset_key.to_user_string()] = {k: v.value for k, v in evaluation.metadata.items()}
    return found


def check_results(instance: dg.DagsterInstance, run_id: str) -> dict[tuple[str, str], bool]:
    """(asset, check) -> passed, for every check this run evaluated."""
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records
    found = {}
    for record in records:
        evaluation = record.event_log_entry.dagster_event.event_specific_data
        found[(evaluation.asset_key.to_user_string(), evaluation.check_name)] = evaluation.passed
    return found


def connect_line(target: PostgresTarget) -> str:
    """How to connect (never with a password) and how to look at the rejects."""
    try:
        if target.is_embedded:  # its URL holds no secret: the server trusts local socket connections
            where = f"psql '{embedded.ensure_database(target.embedded_folder)}'"
        else:
            url = target.url()
            plain = url._replace(drivername="postgresql", password=None).render_as_string(hide_password=False)
            where = f"psql '{plain}'" + (" (password not shown)" if url.password else "")
    except MigrationError:
        where = "psql (see DATABASE_URL)"
    return f"connect with: {where}; the rejects: {REJECTS_QUERY}"


def extras_of_last_snapshot(instance: dg.DagsterInstance) -> dict[str, list[str]]:
    """What the latest `source_snapshot` found beyond the plan (its `ignored_extra_columns` metadata)."""
    event = instance.get_latest_materialization_event(dg.AssetKey("source_snapshot"))
    found = event.asset_materialization.metadata.get("ignored_extra_columns") if event else None
    return dict(found.value) if found is not None else {}


def migrate_summary(
    title: str,
    accounting: list[dict],
    counts: dict[str, int],
    changes: dict,
    checks: dict,
    target: PostgresTarget,
    extra: list[str] = (),
) -> str:
    """The run-end table of `migrate` and `cutover`: every target table, then how to connect."""
    by_table = {row["table"]: row for row in accounting}
    heads = [
        "table",
        "source rows",
        "loaded",
        "rejected",
        "inserted",
        "updated",
        "deleted",
        "checks ok/warn/fail",
    ]
    rows = []
    for table in TARGET_TABLES:
        acc, change = by_table.get(table.name, {}), changes.get(table.name, {})
        rows.append(
            [
                table.name,
                acc.get("source_rows"),
                counts.get(table.name),
                acc.get("rejected_rows"),
                *(change.get(k) for k in ("inserted", "updated", "deleted")),
                checks_cell(checks.get(table.name)),
            ]
        )
    left = f"\nnot carried by the plan (left behind in SQLite): {', '.join(extra)}" if extra else ""
    return f"{title}\n{text_table(heads, rows)}{left}\n{connect_line(target)}"


def budget_summary(shares: list, budget) -> str:
    """The table of a run the reject budget refused (`budget.Share`s): nothing was written."""
    heads = ["table", "source rows", "would load", "would reject", "share", "budget"]
    rows = [
        [
            s.table,
            s.rows,
            s.rows - s.rejected,
            s.rejected,
            f"{s.share:.1%}",
            "OVER" if s.over(budget) else "within",
        ]
        for s in shares
    ]
    return (
        f"reject budget {budget.share:.0%} ({budget.setting}); nothing was written\n{text_table(heads, rows)}"
    )
