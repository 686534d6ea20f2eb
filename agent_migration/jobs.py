"""Jobs and the schedule: `migrate` (every asset and check: what "Materialize all" launches), `cutover`
(the last one), `resync`; and the op jobs beside them, `preflight`, `rollback_export` and `validate` (in
`ops/`)."""


import dagster as dg
from dagster._utils.schedules import is_valid_cron_string  # (no public form in 1.13)

from agent_migration import runlog
from agent_migration.core.settings import RESYNC_CRON, SettingError, resolve
from agent_migration.metadata import CUTOVER_TAG
from agent_migration.postgres import cutover as cutover_record
from agent_migration.resources import PostgresTarget

# Dagster's run queue can cap runs carrying this tag (see dagster.yaml); the advisory lock is the last guard.
WRITER_TAG = {"agent_migration/writer": "postgres"}
# The migration's assets: every materializable asset (the side jobs are op jobs on external assets), so
# `migrate` is exactly what "Materialize all" launches.
MIGRATION = dg.AssetSelection.all().materializable()

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

def resync_cron() -> str:
    """RESYNC_CRON, checked now (the code location loads it): a bad one fails naming it and its origin."""
    cron = resolve(RESYNC_CRON, None)
    if not is_valid_cron_string(cron.value):
        raise SettingError(f"{cron.name} must be {RESYNC_CRON.rule}, not {cron.value!r} ({cron.where}).")
    return cron.value


@dg.schedule(
    name="resync",
    job=migrate,
    cron_schedule=resync_cron(),
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Re-sync PostgreSQL from the live SQLite source until cutover (off until turned on).",
)
def resync(context: dg.ScheduleEvaluationContext, target: PostgresTarget):
    with target.connect() as conn, conn.cursor() as cur:
        cut = cutover_record.recorded(cur)
    if cut is not None:
        return dg.SkipReason(f"no re-sync: {cutover_record.refusal(cut)}")
    return dg.RunRequest()
