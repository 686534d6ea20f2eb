"""Where a run's time went, from the run's own records: Dagster's step timings and publish's phases.

The Dagster instance of a measured job run (its DAGSTER_HOME) keeps each step's start and end, and
`publish` records its load phases as metadata (`load_phases_seconds`). Start-up is what the step timings
do not cover: the process start, loading the code, Dagster's run bookkeeping and shutdown.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

CLEAN = "clean (∥ COPY on a first load)"  # a first load's clean steps copy each chunk as it is cleaned
PHASES = (
    "start-up and bookkeeping",
    "snapshot",
    "users",
    CLEAN,
    "budget and schema",
    "publish: copy",
    "publish: indexes and keys",
    "publish: copy ∥ indexes (parallel)",
    "publish: rest (swap, merge, record)",
    "checks",
    "final report (a cutover's proof)",
)


def _phase(step_key: str) -> str:
    if step_key == "source_snapshot" or step_key.startswith("raw_"):
        return "snapshot"
    if step_key == "derived_users":
        return "users"
    if step_key.startswith("clean_"):
        return CLEAN
    if step_key == "target_schema":
        return "budget and schema"
    if step_key == "publish":
        return "publish"
    if step_key == "migration_report":
        return "final report (a cutover's proof)"
    return "checks"  # the checks' steps and migration_report


def _publish_split(total: float, load: dict) -> dict[str, float]:
    """publish's wall time split by its recorded phases (summed per connection where parallel)."""
    if "parallel" in load:  # copies and builds overlap on several connections: one wall figure
        split = {"publish: copy ∥ indexes (parallel)": load["parallel"]}
    else:
        split = {"publish: copy": load.get("copy", 0.0), "publish: indexes and keys": load.get("indexes", 0.0)}
    split["publish: rest (swap, merge, record)"] = max(0.0, total - sum(split.values()))
    return split


def _publish_phases(instance: dg.DagsterInstance, run_id: str) -> dict:
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records
    for record in records:
        found = record.event_log_entry.asset_materialization.metadata.get("load_phases_seconds")
        if found is not None:
            return dict(found.value)
    return {}


def phases_of(dagster_home: Path, wall: float) -> dict[str, float]:
    """Seconds per phase of the latest run in `dagster_home` (a job measured with `wall` seconds)."""
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        runs = instance.get_runs(limit=1)
        if not runs:
            return {}
        run_id = runs[0].run_id
        found: dict[str, float] = {}
        for stat in instance.get_run_step_stats(run_id):
            if stat.start_time is None or stat.end_time is None:
                continue
            phase = _phase(stat.step_key)
            found[phase] = found.get(phase, 0.0) + stat.end_time - stat.start_time
        publish = found.pop("publish", None)
        if publish is not None:
            found |= _publish_split(publish, _publish_phases(instance, run_id))
    found["start-up and bookkeeping"] = max(0.0, wall - sum(found.values()))
    return {p: round(found[p], 2) for p in PHASES if p in found}
