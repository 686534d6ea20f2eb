"""The Dagster code location: every asset, check, job, schedule and resource of the migration."""

from __future__ import annotations

import os

import dagster as dg

from agent_migration import jobs
from agent_migration.assets import extract, load, transform, verify
from agent_migration.resources import PostgresTarget, SqliteSource

ASSET_MODULES = [extract, transform, load, verify]


def resources() -> dict:
    """Resources from the environment: SQLITE_PATH (default ./db.sqlite), DATABASE_URL (default: embedded)."""
    return {
        "source": SqliteSource(path=os.environ.get("SQLITE_PATH", "db.sqlite")),
        # The URL is read from DATABASE_URL at run time, so no password is stored in the definitions.
        "target": PostgresTarget(),
        "io_manager": dg.FilesystemIOManager(
            base_dir=os.environ.get("MIGRATION_STORAGE", ".migration/storage")
        ),
    }


defs = dg.Definitions(
    assets=dg.load_assets_from_modules(ASSET_MODULES),
    asset_checks=dg.load_asset_checks_from_modules(ASSET_MODULES),
    jobs=[jobs.migrate, jobs.cutover],
    schedules=[jobs.resync],
    resources=resources(),
    # One process for the whole run: on 2 cores a process per step costs more than it parallelizes, and
    # frames pass between steps in memory.
    executor=dg.in_process_executor,
)
