"""The validate ledger: what a full `validate` proved, kept so that a cutover proves only what changed since.

Recorded by a full `validate` that finds every row matching, and by nothing else:
- in PostgreSQL (`postgres/ledger.py`): a digest of every stored row of every target table and of every
  reject, computed by the server in the very snapshot of the target that validate compared; and a record
  (the validate run, the specs, each table's row count);
- on disk: a hard link to the source snapshot validate compared with (`<backup_dir>/validated/`), kept
  apart from the snapshots a re-sync prunes.

The digests are written on a second connection that imports the validate transaction's snapshot, while
validate compares (the server computes them as the comparison runs), and are committed only once every
row matched: a validate that fails or is killed leaves the previous ledger as it was.
"""

from __future__ import annotations

import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from psycopg2.extensions import ISOLATION_LEVEL_REPEATABLE_READ

from agent_migration.core import contract
from agent_migration.postgres import faults
from agent_migration.postgres import ledger as pg_ledger
from agent_migration.postgres.connection import TargetDatabase
from agent_migration.source.database import SourceDatabase

FOLDER = "validated"  # under the backup folder: the proven snapshots (one at a time)


def pinned_path(source: SourceDatabase, snapshot: str) -> Path:
    return (source.backup_folder / FOLDER / Path(snapshot).name).resolve()


def pin(source: SourceDatabase, snapshot: str) -> Path:
    """A hard link to the proven snapshot, which a re-sync's pruning never removes (a copy where the
    filesystem has no hard links)."""
    pinned = pinned_path(source, snapshot)
    pinned.parent.mkdir(parents=True, exist_ok=True)
    if not pinned.exists():
        try:
            os.link(snapshot, pinned)
        except OSError:
            shutil.copyfile(snapshot, pinned)
    return pinned


def unpin_others(keep: Path) -> None:
    for old in keep.parent.glob("*.sqlite"):
        if old.resolve() != keep:
            old.unlink(missing_ok=True)


class Writer:
    """The ledger being recorded alongside a full validate; `finish` commits it (or drops it)."""

    def __init__(self, target: TargetDatabase, conn, run_id: str):
        self.run_id = run_id
        self._stack = ExitStack()
        with conn.cursor() as cur:
            cur.execute("SELECT pg_export_snapshot()")
            (exported,) = cur.fetchone()
        self._conn = self._stack.enter_context(target.connect())
        self._conn.set_session(isolation_level=ISOLATION_LEVEL_REPEATABLE_READ)
        self._cur = self._stack.enter_context(self._conn.cursor())
        self._cur.execute("SET TRANSACTION SNAPSHOT %s", (exported,))
        pool = self._stack.enter_context(ThreadPoolExecutor(max_workers=1))
        self._digests = pool.submit(pg_ledger.write_digests, self._cur)

    def finish(self, ok: bool, source: SourceDatabase, snapshot: str, published_by: str) -> str | None:
        """Commit the ledger if every row matched; returns what the log says of it."""
        try:
            kind = self._digests.result()
            if not ok:
                self._conn.rollback()
                return None
            pinned = pin(source, snapshot)
            pg_ledger.write_record(self._cur, self.run_id, str(pinned), published_by, spec(kind))
            faults.here("ledger")
            self._conn.commit()
            unpin_others(pinned)
            return (
                f"validate: ledger recorded (run {self.run_id[:8]}): a cutover now proves only the rows "
                "changed since"
            )
        finally:
            self.close()

    def close(self) -> None:
        self._stack.close()


def spec(kind: str) -> str:
    """What a ledger holds is only comparable under the same table specs and the same row digest."""
    return f"{contract.spec_fingerprint()}/{kind}"


@dataclass(frozen=True)
class Usable:
    record: pg_ledger.Recorded
    kind: str  # the row digest to recompute


def usable(cur) -> Usable | str:
    """The ledger a cutover can start from, or why there is none."""
    found = pg_ledger.recorded(cur)
    if found is None:
        return "no validate has recorded a ledger in this target"
    kind = pg_ledger.digest_kind(cur)
    if found.spec != spec(kind):
        return f"the ledger of validate run {found.run_id[:8]} was recorded under other table specs or another row digest"
    if not Path(found.snapshot).is_file():
        return f"the source snapshot validate run {found.run_id[:8]} proved is gone ({found.snapshot})"
    return Usable(found, kind)
