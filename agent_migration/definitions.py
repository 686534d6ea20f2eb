"""The Dagster code location: every asset, check, job, schedule and resource of the migration."""

from __future__ import annotations

import os

import dagster as dg

from agent_migration import jobs, runlog
from agent_migration.assets import extract, load, preflight, rollback, transform, validate, verify
from agent_migration.resources import ExportFile, PostgresTarget, SqliteSource

ASSET_MODULES = [extract, transform, load, verify, rollback, preflight, validate]
ASSETS = dg.load_assets_from_modules(ASSET_MODULES)


def resources() -> dict:
    """Resources from the environment: SQLITE_PATH (default ./db.sqlite), DATABASE_URL (default: embedded)."""
    return {
        "source": SqliteSource(path=os.environ.get("SQLITE_PATH", "db.sqlite")),
        # The URL is read from DATABASE_URL at run time, so no password is stored in the definitions.
        "target": PostgresTarget(),
        "export": ExportFile(),  # the rollback file: EXPORT_SQLITE_PATH, read at run time
        # Assets pass small typed values (the rows stay in the snapshot and in the run's Arrow files), so
        # Dagster's own pickling IO manager serves: a later run can re-execute any subset.
        "io_manager": dg.FilesystemIOManager(base_dir=os.environ.get("MIGRATION_STORAGE", ".migration/storage")),
    }


defs = dg.Definitions(
    assets=[*ASSETS, validate.validation_report],
    asset_checks=dg.load_asset_checks_from_modules(ASSET_MODULES),
    jobs=[jobs.migrate, jobs.cutover, jobs.rollback_export, jobs.preflight_job, jobs.validate],
    schedules=[jobs.resync],
    loggers={"console": runlog.console},  # INFO by default: env MIGRATION_LOG_LEVEL=DEBUG for more
    resources=resources(),
    # One process for the whole run: on 2 cores a process per step costs more than it parallelizes.
    executor=dg.in_process_executor,
)
