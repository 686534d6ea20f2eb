"""The target's record of published runs: the baseline a change-only re-sync starts from."""

from __future__ import annotations

from pathlib import Path

import psycopg2

from agent_migration.core import contract
from agent_migration.core.errors import MigrationError
from agent_migration.postgres.connection import TargetDatabase


def baseline(cur) -> dict | None:
    """The snapshot the target's last published run was made from, with the specs it was made under."""
    cur.execute("SELECT to_regclass('migration.runs') IS NOT NULL")
    if not cur.fetchone()[0]:
        return None
    # to_jsonb: a bookkeeping table from before the spec column reads as NULL instead of failing.
    cur.execute(
        "SELECT run_id, snapshot, to_jsonb(r) ->> 'spec' FROM migration.runs AS r ORDER BY finished_at DESC LIMIT 1"
    )
    row = cur.fetchone()
    return None if row is None else {"run_id": row[0], "snapshot": row[1], "spec": row[2]}


def find_baseline(target: TargetDatabase, log) -> dict | None:
    """The last published snapshot, if a change-only re-sync can start from it (else None, logged)."""
    try:
        with target.connect() as conn, conn.cursor() as cur:
            found = baseline(cur)
    except (MigrationError, psycopg2.Error):
        return None  # target_schema reports an unreachable or misconfigured target clearly
    why = None
    if found is None:
        why = "nothing was published to the target yet"
    elif found["spec"] != contract.spec_fingerprint():
        why = "the last run was published under other table specs or an older version"
    elif not found["snapshot"] or not Path(found["snapshot"]).is_file():
        why = f"the snapshot of the last published run ({found['snapshot']}) is no longer kept"
    if why:
        log(f"full run: {why}")
        return None
    return found
