"""The run's snapshot: a consistent copy of the source, the baseline a re-sync compares with, the plan
of what changed, and the folder where the run's cleaned rows wait for publish."""

from __future__ import annotations

import shutil
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from agent_migration.core.artifacts import Snapshot
from agent_migration.core.tables import SOURCE_TABLES
from agent_migration.source import delta
from agent_migration.source.database import SourceDatabase
from agent_migration.source.files import check_source_shape, describe_source, same_file
from agent_migration.source.sqlite_read import schema_objects, table_stats


def plan_changes(conn, base: dict | None, snapshot: Path, log) -> dict | None:
    """What this run redoes per table against the baseline, or None (a full run)."""
    if base is None:
        return None
    started = time.monotonic()
    try:
        changes = delta.plan(conn, base["snapshot"], snapshot)
    except sqlite3.Error as exc:  # e.g. a baseline of another shape: a full run is always right
        log(f"full run: the last published snapshot {base['snapshot']} cannot be compared ({exc})")
        return None
    redo = sum(len(changes[t.source]["rowids"]) for t in SOURCE_TABLES)
    log(
        f"change-only re-sync against run {base['run_id']}: {redo:,} rows to redo, "
        f"compared in {time.monotonic() - started:.1f} s"
    )
    return changes


def run_dir(source: SourceDatabase, run_id: str) -> Path:
    """This run's folder for cleaned rows; the folders of older runs beyond the last few are removed."""
    root = source.runs_folder
    folder = root / run_id
    folder.mkdir(parents=True, exist_ok=True)
    others = sorted((p for p in root.iterdir() if p.is_dir() and p != folder), key=lambda p: p.stat().st_mtime)
    for old in others[: max(0, len(others) - source.setting("keep_runs").value + 1)]:
        shutil.rmtree(old, ignore_errors=True)
    return folder


def take_snapshot(source: SourceDatabase, run_id: str, base: dict | None, log) -> Snapshot:
    """Copy the source, check its shape, count it and plan a re-sync's changes against `base` (the
    target's last published run, `history.find_baseline`; None: a full run)."""
    copy = source.snapshot(run_id, keep=base["snapshot"] if base else None, check=False)
    fresh = not base or not same_file(copy, base["snapshot"])  # a copy of the baseline's bytes was checked
    with ThreadPoolExecutor(max_workers=1) as checker:
        # The integrity check reads the whole copy in SQLite (no GIL): the plan's comparison goes on meanwhile.
        checked = checker.submit(source.check_integrity, copy) if fresh else None
        try:
            with source.connect(copy) as conn:
                extra = check_source_shape(describe_source(conn), source.sqlite_path)
                stats = {t.source: table_stats(conn, t) for t in SOURCE_TABLES}
                schema = schema_objects(conn)
                changes = plan_changes(conn, base, copy, log)
        finally:
            if checked is not None:
                checked.result()  # a corrupt copy fails the run with its own clear error, first
    if base and str(copy) == str(Path(base["snapshot"]).resolve()):
        log(f"source {source.sqlite_path} unchanged since run {base['run_id']} (byte for byte): its snapshot {copy} serves this run")
    else:
        log(f"source {source.sqlite_path} copied to {copy}")
    return Snapshot(
        path=str(copy),
        run_dir=str(run_dir(source, run_id)),
        stats=stats,
        extra=extra,
        baseline=base["snapshot"] if changes is not None else None,
        changes=changes,
        schema=schema,
    )
