"""Publishing: every cleaned table into PostgreSQL in one transaction, and the run recorded.

The cleaned rows come from the run's Arrow files, one batch at a time (binary COPY); a first load goes
straight into the empty tables, a re-sync stages and merges (see `merge.py`).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import pandas as pd
import pyarrow as pa
from psycopg2 import sql

from agent_migration.core import contract
from agent_migration.core.artifacts import CleanTable, Snapshot
from agent_migration.core.contract import REJECT_SCHEMA, arrow_schema
from agent_migration.core.errors import MigrationError
from agent_migration.core.rules import Username
from agent_migration.core.tables import MARKETPLACE_LISTINGS, SOURCE_TABLES, TARGET_TABLES, USERS
from agent_migration.postgres import cutover, history, merge, parallel, staging
from agent_migration.postgres.connection import TargetDatabase
from agent_migration.postgres.copy import Rows

USER_TYPES = {"id": "INTEGER", "username": "VARCHAR(255)"}


def rows_to_load(users: pd.DataFrame, clean: dict[str, CleanTable]) -> dict[str, Rows]:
    users_table = pa.table(
        {
            "id": pa.array(users["id"].to_numpy(), pa.int32()),
            "username": pa.array(users["username"], pa.string()),
        }
    )
    found = {USERS.name: Rows(users_table.schema, len(users), table=users_table)}
    for t in SOURCE_TABLES:
        done = clean[t.name]
        found[t.name] = Rows(arrow_schema(t.migrated), done.loaded, path=done.loaded_path)
    return found


def rejects_to_load(clean: dict[str, CleanTable], run_id: str) -> list[Rows]:
    return [
        Rows(
            REJECT_SCHEMA,
            clean[t.name].rejected,
            path=clean[t.name].rejects_path,
            constants=(("source_table", t.source), ("run_id", run_id)),
        )
        for t in SOURCE_TABLES
    ]


def column_types() -> dict[str, dict[str, str]]:
    columns = {USERS.name: USER_TYPES}
    return columns | {t.name: {c.name: c.pg_type for c in t.migrated} for t in SOURCE_TABLES}


def change_scopes(snap: Snapshot, users: pd.DataFrame, clean: dict[str, CleanTable]) -> dict | None:
    """For a change-only re-sync, what each table redid: target keys and source rowids (else None)."""
    if snap.changes is None and all(c.delta is None for c in clean.values()):
        return None
    if any(c.delta is None or c.snapshot != snap.path for c in clean.values()) or snap.changes is None:
        raise MigrationError(
            "publish got cleaned tables of different runs (some change-only, or from another "
            "snapshot); materialize everything from source_snapshot on, in one run."
        )
    ids = users.set_index("username")["id"]
    scopes = {}
    for table in SOURCE_TABLES:
        done = clean[table.name]
        keys = list(done.delta.keys)
        if isinstance(table.key_col.rule, Username):  # the target is keyed by users.id
            keys = [int(ids[k]) for k in keys if k in ids.index]
        scopes[table.name] = {"keys": [int(k) for k in keys], "rowids": [int(r) for r in done.redone_rowids]}
    return scopes


def nothing_to_merge(scopes: dict, snap: Snapshot) -> bool:
    """A change-only run that redid no row and changed no username: the target already holds it all."""
    users = snap.changes[contract.USER_CHANGES]
    return (
        not users["added"]
        and not users["removed"]
        and not any(s["keys"] or s["rowids"] for s in scopes.values())
    )


def check_baseline(cur, baseline: str) -> None:
    """Refuse a change-only publish when another run published since this one compared its snapshot."""
    latest = history.baseline(cur)
    if latest is None or latest["snapshot"] != baseline:
        raise merge.ConcurrentRun(
            "another run published to the target after this run compared its snapshot with the last "
            "published one; run again"
        )


def table_counts(cur) -> dict[str, int]:
    counts = {}
    for table in TARGET_TABLES:
        cur.execute(sql.SQL("SELECT count(*) FROM {}").format(merge.target(table)))
        counts[table.name] = cur.fetchone()[0]
    return counts


def record_run(cur, snap: Snapshot, run_id: str, locked_at, changes: dict) -> None:
    """The source's counts (for the checks) and this run (its snapshot: the next re-sync's baseline)."""
    cur.execute("DELETE FROM migration.source_stats")
    cur.executemany(
        "INSERT INTO migration.source_stats (source_table, source_rows, sums, max_id, snapshot, run_id)"
        " VALUES (%s, %s, %s, %s, %s, %s)",
        [
            (t, s["rows"], json.dumps(s["sums"]), s.get("max_id"), snap.path, run_id)
            for t, s in snap.stats.items()
        ],
    )
    # The source's own schema, so that a rollback export recreates it from PostgreSQL alone.
    cur.execute("DELETE FROM migration.source_schema")
    cur.executemany(
        "INSERT INTO migration.source_schema (position, type, name, tbl_name, sql, run_id)"
        " VALUES (%s, %s, %s, %s, %s, %s)",
        [(i, *obj, run_id) for i, obj in enumerate(snap.schema)],
    )
    for table in SOURCE_TABLES:  # past rejected ids too: a restored reject must keep its id
        merge.advance_sequence(cur, table, snap.stats[table.source].get("max_id"))
    cur.execute(
        "INSERT INTO migration.runs (run_id, locked_at, snapshot, changes, spec) VALUES (%s, %s, %s, %s, %s)"
        " ON CONFLICT (run_id) DO UPDATE SET locked_at = EXCLUDED.locked_at, changes = EXCLUDED.changes,"
        " snapshot = EXCLUDED.snapshot, spec = EXCLUDED.spec,"
        " finished_at = clock_timestamp() AT TIME ZONE 'UTC'",
        (run_id, locked_at, snap.path, json.dumps(changes), contract.spec_fingerprint()),
    )


@dataclass(frozen=True)
class Published:
    changes: dict  # per target table: inserted, updated, deleted (and rejected for the source tables)
    phases: dict  # seconds: "copy", "indexes" (and "stage", "parallel", "swap" on a parallel first load)
    connections: int  # connections the load used
    copied_while_cleaning: tuple[str, ...] = ()  # tables the cleaning had already copied into the stage

    def counts(self, cur) -> dict[str, int]:
        """Rows per app table once committed: a parallel first load's own counts (its tables held nothing
        else; the checks count them again), else counted."""
        if "parallel" in self.phases:
            return {t.name: self.changes.get(t.name, {}).get("inserted", 0) for t in TARGET_TABLES}
        return table_counts(cur)


def first_load(cur) -> bool:
    """Every app table empty: what a parallel load may replace whole."""
    return all(merge.is_empty(cur, t) for t in TARGET_TABLES)


def load_in_parallel(cur, target: TargetDatabase, users, clean, run_id: str, workers: int, log) -> tuple:
    """A first load built on `workers` connections in the stage schema, swapped in by `cur`'s transaction."""
    frames = rows_to_load(users, clean)
    built = parallel.build(
        target.connect, frames, column_types(), rejects_to_load(clean, run_id), merge.REJECT_TYPES, workers
    )
    phases, staged, listings = built.seconds, built.staged, built.listings
    started = time.monotonic()
    parallel.swap(cur)
    for table in TARGET_TABLES:
        merge.advance_sequence(cur, table)
    phases["swap"] = time.monotonic() - started
    log(
        f"first load on {workers} connections: stage {phases['stage']:.1f} s, copy and build {phases['parallel']:.1f} s "
        f"(copy {phases.get('copy', 0):.1f} s, indexes and keys {phases.get('indexes', 0):.1f} s summed over "
        f"connections; longest: {built.longest()}), swap {phases['swap']:.1f} s; "
        f"copied while cleaning: {', '.join(sorted(staged)) or 'none'}"
    )
    changes = {name: {"inserted": rows.count, "updated": 0, "deleted": 0} for name, rows in frames.items()}
    changes[MARKETPLACE_LISTINGS.name] = {"inserted": listings["inserted"], "updated": 0, "deleted": 0}
    return changes, phases, tuple(sorted(staged))


def publish_all(
    cur, target: TargetDatabase, snap: Snapshot, users, clean: dict[str, CleanTable], run_id: str, log
) -> Published:
    """The whole publish, in the caller's transaction: lock, checks, load or merge, record."""
    scopes = change_scopes(snap, users, clean)
    merge.lock(cur, wait_s=target.lock_wait_s)
    cutover.refuse_after_cutover(cur)
    if scopes is not None:
        check_baseline(cur, snap.baseline)
    cur.execute("SELECT clock_timestamp() AT TIME ZONE 'UTC'")
    locked_at = cur.fetchone()[0]
    phases: dict[str, float] = {}
    staged: tuple[str, ...] = ()
    workers = target.setting("connections").value
    if scopes is not None and nothing_to_merge(scopes, snap):
        log("no source row changed since the last published run: nothing to merge")
        changes = {t.name: {"inserted": 0, "updated": 0, "deleted": 0} for t in TARGET_TABLES}
    elif scopes is None and workers > 1 and first_load(cur):
        changes, phases, staged = load_in_parallel(cur, target, users, clean, run_id, workers, log)
    else:
        workers = 1
        staging.discard(cur)  # (a target that stopped being a first load after this run's cleaning staged)
        changes = merge.load_tables(
            cur,
            rows_to_load(users, clean),
            column_types(),
            list(SOURCE_TABLES),
            rejects_to_load(clean, run_id),
            log,
            scopes,
            phases,
        )
    for table in SOURCE_TABLES:
        changes[table.name]["rejected"] = clean[table.name].rejected
    record_run(cur, snap, run_id, locked_at, changes)
    return Published(changes, phases, workers, staged)
