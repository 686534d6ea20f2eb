"""The Dagster code location: every asset, check, job, schedule and resource of the migration."""

from __future__ import annotations

import os

import dagster as dg

from agent_migration import jobs
from agent_migration.assets import extract, load, transform, verify
from agent_migration.resources import PostgresTarget, SqliteSource

ASSET_MODULES = [extract, transform, load, verify]
ASSETS = dg.load_assets_from_modules(ASSET_MODULES)


def resources() -> dict:
    """Resources from the environment: SQLITE_PATH (default ./db.sqlite), DATABASE_URL (default: embedded)."""
    return {
        "source": SqliteSource(path=os.environ.get("SQLITE_PATH", "db.sqlite")),
        # The URL is read from DATABASE_URL at run time, so no password is stored in the definitions.
        "target": PostgresTarget(),
        # Assets pass small typed values (the rows stay in the snapshot and in the run's Arrow files), so
        # Dagster's own pickling IO manager serves: a later run can re-execute any subset.
        "io_manager": dg.FilesystemIOManager(base_dir=os.environ.get("MIGRATION_STORAGE", ".migration/storage")),
    }


defs = dg.Definitions(
    assets=ASSETS,
    asset_checks=dg.load_asset_checks_from_modules(ASSET_MODULES),
    jobs=[jobs.migrate, jobs.cutover],
    schedules=[jobs.resync],
    resources=resources(),
    # One process for the whole run: on 2 cores a process per step costs more than it parallelizes.
    executor=dg.in_process_executor,
)
