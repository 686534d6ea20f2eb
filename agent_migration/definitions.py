"""The Dagster code location: every asset, check, job, schedule and resource of the migration."""

from __future__ import annotations

import os

import dagster as dg

from agent_migration import jobs
from agent_migration.assets import extract, load, transform, verify
from agent_migration.io import FrameIOManager
from agent_migration.resources import PostgresTarget, SqliteSource

ASSET_MODULES = [extract, transform, load, verify]
ASSETS = dg.load_assets_from_modules(ASSET_MODULES)


def consumers() -> dict[str, int]:
    """How many assets read each asset's value: the IO manager frees a frame once they all have it."""
    counts: dict[str, int] = {}
    for asset in ASSETS:
        for key in set(asset.keys_by_input_name.values()):
            counts[key.to_user_string()] = counts.get(key.to_user_string(), 0) + 1
    return counts


def resources() -> dict:
    """Resources from the environment: SQLITE_PATH (default ./db.sqlite), DATABASE_URL (default: embedded)."""
    return {
        "source": SqliteSource(path=os.environ.get("SQLITE_PATH", "db.sqlite")),
        # The URL is read from DATABASE_URL at run time, so no password is stored in the definitions.
        "target": PostgresTarget(),
        # Frames pass in memory within a run (freed once consumed); raw frames are stored as pointers
        # to the run's snapshot, the rest pickled, for re-executing a subset later.
        "io_manager": FrameIOManager(
            base_dir=os.environ.get("MIGRATION_STORAGE", ".migration/storage"), consumers=consumers()
        ),
    }


defs = dg.Definitions(
    assets=ASSETS,
    asset_checks=dg.load_asset_checks_from_modules(ASSET_MODULES),
    jobs=[jobs.migrate, jobs.cutover],
    schedules=[jobs.resync],
    resources=resources(),
    # One process for the whole run: on 2 cores a process per step costs more than it parallelizes, and
    # frames pass between steps in memory.
    executor=dg.in_process_executor,
)
