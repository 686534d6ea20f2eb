"""Jobs and the schedule: `migrate` (every migration asset and check), `cutover` (the last one),
`rollback_export` (PostgreSQL back into a new SQLite file), `validate` (PostgreSQL proven against its
source, value by value), `resync`."""

import os

import dagster as dg

from agent_migration import runlog
from agent_migration.assets import preflight, rollback
from agent_migration.assets import validate as validate_ops
from agent_migration.assets.verify import CUTOVER_TAG
from agent_migration.resources import PostgresTarget
from agent_migration.target import cutover as cutover_record

# Dagster's run queue can cap runs carrying this tag (see dagster.yaml); the advisory lock is the last guard.
WRITER_TAG = {"agent_migration/writer": "postgres"}
# The migration's assets: everything but the groups other jobs run on their own.
MIGRATION = dg.AssetSelection.all() - dg.AssetSelection.groups(rollback.GROUP, preflight.GROUP, "validation")

migrate = dg.define_asset_job(
    "migrate",
    selection=MIGRATION,
    tags=WRITER_TAG,
    config=runlog.LOG_CONFIG,  # the console at INFO unless MIGRATION_LOG_LEVEL (or this config) says DEBUG
    description="Snapshot the SQLite source, clean and remap every table, publish to PostgreSQL, verify. "
    "Re-running it re-syncs: only what changed is written.",
)

cutover = dg.define_asset_job(
    "cutover",
    selection=MIGRATION,
    tags={**WRITER_TAG, CUTOVER_TAG: "true"},
    config=runlog.LOG_CONFIG,
    description="A final re-sync with every check blocking, then the cutover is recorded in migration.cutover: "
    "from then on migrate and the resync schedule refuse to write.",
)

preflight_job = dg.define_asset_job(
    "preflight",
    selection=dg.AssetSelection.groups(preflight.GROUP),
    config=runlog.LOG_CONFIG,
    description="What migrate would do, with nothing written to the target: every row rule over one snapshot "
    "of the source, the target checked read-only, the reject budget; fails, saying why, when migrate would.",
)

rollback_export = dg.define_asset_job(
    "rollback_export",
    selection=dg.AssetSelection.groups(rollback.GROUP),
    config=runlog.LOG_CONFIG,
    description="Write PostgreSQL's current state, every rejected row restored, into a new SQLite file in the "
    "app's own schema (env EXPORT_SQLITE_PATH): the rollback after a cutover. Reads PostgreSQL only.",
)


# An op job, not an asset job: "Materialize all" never runs it. It records its results on the external
# asset `validation_report` (a materialization and a check per table).
validate = dg.GraphDefinition(
    name="validate",
    node_defs=[validate_ops.validate_target],
    description="Prove PostgreSQL against the source snapshot it was last published from, every row, value by "
    "value through the exact rules (loaded rows, rejects and their payloads, no strays, users, listings). Writes "
    "nothing to the target; fails, listing each difference, when anything differs.",
).to_job(config=runlog.LOG_CONFIG, logger_defs={"console": runlog.console})


@dg.schedule(
    name="resync",
    job=migrate,
    cron_schedule=os.environ.get("RESYNC_CRON", "*/30 * * * *"),
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Re-sync PostgreSQL from the live SQLite source until cutover (off until turned on).",
)
def resync(context: dg.ScheduleEvaluationContext, target: PostgresTarget):
    with target.connect() as conn, conn.cursor() as cur:
        cut = cutover_record.recorded(cur)
    if cut is not None:
        return dg.SkipReason(f"no re-sync: {cutover_record.refusal(cut)}")
    return dg.RunRequest()
