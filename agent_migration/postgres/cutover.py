"""The cutover record: once the app writes to PostgreSQL, no re-sync from SQLite may write again."""

from __future__ import annotations

import json

from agent_migration.core.errors import MigrationError

UNDO = "DELETE FROM migration.cutover"


class CutoverDone(MigrationError):
    pass


def recorded(cur) -> dict | None:
    """The cutover row, or None (also when the bookkeeping schema does not exist yet)."""
    cur.execute("SELECT to_regclass('migration.cutover')")
    if cur.fetchone()[0] is None:
        return None
    cur.execute("SELECT cut_at, run_id, source_backup FROM migration.cutover ORDER BY cut_at DESC LIMIT 1")
    row = cur.fetchone()
    return None if row is None else {"cut_at": row[0], "run_id": row[1], "source_backup": row[2]}


def refusal(cut: dict) -> str:
    return (
        f"the cutover was recorded at {cut['cut_at']:%Y-%m-%d %H:%M:%S} UTC by run {cut['run_id']}: the app now "
        "writes to PostgreSQL and a re-sync from the old SQLite file would destroy those writes, so nothing was "
        f"written. To re-sync anyway (the cutover was rolled back on purpose), run `{UNDO};` in the target "
        "database, then run migrate again."
    )


def refuse_after_cutover(cur) -> None:
    cut = recorded(cur)
    if cut is not None:
        raise CutoverDone(refusal(cut))


def record(cur, run_id: str, source_backup: str, row_counts: dict[str, int]) -> None:
    cur.execute(
        "INSERT INTO migration.cutover (run_id, source_backup, row_counts) VALUES (%s, %s, %s)",
        (run_id, source_backup, json.dumps(row_counts)),
    )
