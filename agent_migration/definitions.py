"""The Dagster code location: every asset, check, job, schedule and resource of the migration.

No setting of the project is read here: every one is read at run time by the resources (`resources.py`),
so a run config that sets one field keeps the others from the environment. Arrow's memory pool is chosen
here, before anything allocates (`core/arrow_memory.py`)."""

from __future__ import annotations

import dagster as dg

from agent_migration import jobs, runlog
from agent_migration.assets import extract, load, transform, validate, verify
from agent_migration.core import arrow_memory
from agent_migration.ops import preflight, rollback
from agent_migration.ops import validate as validate_ops
from agent_migration.resources import ExportFile, PostgresTarget, RunStorage, SqliteSource

arrow_memory.prefer_jemalloc()

ASSET_MODULES = [extract, transform, load, verify, validate]
ASSETS = dg.load_assets_from_modules(ASSET_MODULES)
# The side jobs' results, recorded by their ops: shown in the graph and on asset pages, never materialized
# by "Materialize all".
EXTERNAL = [*preflight.SPECS, rollback.SPEC, validate_ops.validation_report]

RESOURCES = {
    "source": SqliteSource(),  # SQLITE_PATH, MIGRATION_CHUNK_ROWS, MIGRATION_BACKUP_DIR, ... at run time
    "target": PostgresTarget(),  # DATABASE_URL (else the embedded server), at run time: no password stored
    "export": ExportFile(),  # the rollback file: EXPORT_SQLITE_PATH, at run time
    # Assets pass small typed values (the rows stay in the snapshot and in the run's Arrow files), so
    # Dagster's own pickling IO manager serves: a later run can re-execute any subset.
    "io_manager": RunStorage(),  # MIGRATION_STORAGE, at run time
}

defs = dg.Definitions(
    assets=[*ASSETS, *EXTERNAL],
    asset_checks=dg.load_asset_checks_from_modules(ASSET_MODULES),
    jobs=[jobs.migrate, jobs.cutover, rollback.rollback_export, preflight.preflight_job, validate_ops.validate_job],
    schedules=[jobs.resync],
    loggers={"console": runlog.console},  # INFO by default: env MIGRATION_LOG_LEVEL=DEBUG for more
    resources=RESOURCES,
    # One process for the whole run: on 2 cores a process per step costs more than it parallelizes.
    executor=dg.in_process_executor,
)
