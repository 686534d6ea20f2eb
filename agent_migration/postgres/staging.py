"""Early staging: a first load's rows copied into the stage schema while Python still cleans them.

On a first load (a full run, every app table empty or absent, more than one connection), `clean_<table>`
hands each cleaned chunk to a `Stager`: a thread with a connection of its own copies its loadable rows
(binary COPY, `FREEZE`) into `migration_stage.<table>` and its rejects into
`migration_stage.rejected_rows`, so the server inserts one chunk while Python cleans the next. Both
commit together, each with a marker: the Arrow file it mirrors, its row count and the table specs'
fingerprint (`<table>` and `rejected_rows:<source table>`). `publish` keeps a stage copy only when its
marker matches the run's cleaned file (`staged`), and copies that file itself otherwise. The clean steps
run one after another, so the rejects of each table append to the one stage table in turn.

Staging never fails a run: a target that is not a first load, the advisory lock held by another run, or a
PostgreSQL error mid-way leave the table unstaged and `publish` copies it as before. Nothing here is seen by
the app: `publish` swaps the stage tables in within its transaction, and a run that fails before that
leaves only `migration_stage`, which the next publish rebuilds.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pyarrow as pa
from psycopg2 import sql

from agent_migration.core import contract
from agent_migration.core.tables import TARGET_TABLES, Table
from agent_migration.postgres import cutover, ddl, faults, merge
from agent_migration.postgres.copy import Rows, copy_batches

STAGE = "migration_stage"
MARKERS = "staged"  # migration_stage.staged: one row per staged table
REJECTS = "rejected_rows"  # migration_stage.rejected_rows: every staged table's rejects


def rejects_marker(source_table: str) -> str:
    return f"{REJECTS}:{source_table}"
_END, _ABORT = object(), object()
_AHEAD = 3  # cleaned chunks waiting for the copy: memory stays a few chunks


class _Aborted(Exception):
    pass


def in_stage(name: str) -> sql.Composable:
    return sql.SQL("{}.{}").format(sql.Identifier(STAGE), sql.Identifier(name))


def create_markers(cur) -> None:
    cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(STAGE)))
    cur.execute(
        sql.SQL("CREATE TABLE IF NOT EXISTS {} (table_name TEXT PRIMARY KEY, loaded_path TEXT, rows BIGINT, spec TEXT)")
        .format(in_stage(MARKERS))
    )


def staged(cur, expected: dict[str, tuple[str, int]]) -> set[str]:
    """The tables whose stage copy mirrors `expected` (name -> (Arrow file, rows)) under today's specs."""
    cur.execute("SELECT to_regclass(%s)", (f"{STAGE}.{MARKERS}",))
    if cur.fetchone()[0] is None:
        return set()
    cur.execute(sql.SQL("SELECT table_name, loaded_path, rows, spec FROM {}").format(in_stage(MARKERS)))
    spec = contract.spec_fingerprint()
    return {
        name
        for name, path, rows, made_under in cur.fetchall()
        if name in expected and expected[name] == (path, rows) and made_under == spec
    }


def discard(cur) -> None:
    """Drop the stage schema (in the caller's transaction, which holds the advisory lock)."""
    cur.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(STAGE)))


def discard_after_failure(target) -> None:
    """A run that publishes nothing drops what its cleaning staged, unless another run holds the lock."""
    try:
        with target.connect() as conn, conn.cursor() as cur:
            if merge.try_lock(cur):
                discard(cur)
                conn.commit()
    except Exception:  # noqa: BLE001, S110 - the next publish rebuilds the stage anyway
        pass


def first_load_ahead(cur) -> str | None:
    """Why this target is not a first load to stage for (None: it is): the reason, for the log."""
    if not merge.try_lock(cur):
        return "another run holds the target's advisory lock"
    if cutover.recorded(cur) is not None:
        return "the cutover is recorded"
    for table in TARGET_TABLES:
        cur.execute("SELECT to_regclass(%s)", (f"{ddl.SCHEMA}.{table.name}",))
        if cur.fetchone()[0] is not None and not merge.is_empty(cur, table):
            return f"{table.name} already holds rows (a re-sync merges in one transaction)"
    return None


class Stager:
    """Copies one table's cleaned chunks, loadable rows and rejects, into the stage on a thread of its own
    (see the module)."""

    def __init__(self, connect: Callable, table: Table, paths: tuple[str, str], run_id: str):
        self.table, (self.loaded_path, self.rejects_path), self.run_id = table, paths, run_id
        self.skipped: str | None = None  # why the table was not staged, once known
        self.rows = 0
        self.rejects = 0
        self._ended = False  # the copy took the last chunk (or the abort)
        self._aborted = False  # the cleaning failed: the copy is rolled back
        self._queue: queue.Queue = queue.Queue(maxsize=_AHEAD)
        self._thread = threading.Thread(target=self._run, args=(connect,), name=f"stage-{table.name}", daemon=True)
        self._thread.start()

    def write(self, loaded: pa.Table, rejects: pa.Table) -> None:
        """One cleaned chunk: its loadable rows and its rejects (REJECT_SCHEMA)."""
        self._queue.put((loaded, rejects))

    def finish(self, ok: bool) -> str | None:
        """Commit the copy (`ok`) or roll it back; -> why the table is not staged (None: it is)."""
        self._queue.put(_END if ok else _ABORT)
        self._thread.join()
        return self.skipped

    def _chunks(self) -> Iterator[tuple[pa.Table, pa.Table]]:
        while (item := self._queue.get()) not in (_END, _ABORT):
            yield item
        self._ended, self._aborted = True, item is _ABORT
        if self._aborted:
            raise _Aborted  # (psycopg2 ends the COPY with an error of its own, naming this one)

    def _drain(self) -> None:
        """After a failure: take the chunks still coming, so that the cleaning never waits on a full queue."""
        while not self._ended:
            self._ended = self._queue.get() in (_END, _ABORT)

    def _run(self, connect: Callable) -> None:
        try:
            with connect() as conn, conn.cursor() as cur:
                if reason := first_load_ahead(cur):
                    self.skipped = reason
                    conn.rollback()
                    self._drain()
                    return
                self._copy(cur)
                conn.commit()
        except Exception as exc:  # noqa: BLE001 - staging only saves time: publish copies the file instead
            self.skipped = "the cleaning failed" if self._aborted else (str(exc).strip() or type(exc).__name__).splitlines()[0]
            self._drain()

    def _copy(self, cur) -> None:
        name, columns = self.table.name, {c.name: c.pg_type for c in self.table.migrated}
        marker = rejects_marker(self.table.source)
        create_markers(cur)
        cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(in_stage(name)))
        cur.execute(ddl.create_table(self.table, STAGE, references=False, keys=False))
        frozen = _reject_table(cur, self.table.source)
        cur.execute(sql.SQL("DELETE FROM {} WHERE table_name = ANY(%s)").format(in_stage(MARKERS)), ([name, marker],))
        schema = contract.arrow_schema(self.table.migrated)
        constants = (("source_table", self.table.source), ("run_id", self.run_id))
        for loaded, rejects in self._chunks():
            if loaded.num_rows:
                self.rows += copy_batches(cur, in_stage(name), schema, [loaded], columns, _sent("stage"), freeze=True)
            if rejects.num_rows:
                rows = Rows(contract.REJECT_SCHEMA, rejects.num_rows, table=rejects, constants=constants)
                self.rejects += copy_batches(
                    cur, in_stage(REJECTS), rows.full_schema, rows.batches(), merge.REJECT_TYPES,
                    _sent("stage_rejects"), freeze=frozen,
                )
        spec = contract.spec_fingerprint()
        cur.execute(
            sql.SQL("INSERT INTO {} VALUES (%s, %s, %s, %s), (%s, %s, %s, %s)").format(in_stage(MARKERS)),
            (name, self.loaded_path, self.rows, spec, marker, self.rejects_path, self.rejects, spec),
        )


def _sent(point: str) -> Callable[[int], None]:
    return lambda _n: faults.here(point)


def _reject_table(cur, source_table: str) -> bool:
    """The stage's rejects table, without this table's rejects of an earlier (failed) run; True when it
    was created here (then COPY may write its rows frozen)."""
    cur.execute("SELECT to_regclass(%s)", (f"{STAGE}.{REJECTS}",))
    if cur.fetchone()[0] is None:
        cur.execute(ddl.create_rejects_table(in_stage(REJECTS)))
        return True
    cur.execute(sql.SQL("DELETE FROM {} WHERE source_table = %s").format(in_stage(REJECTS)), (source_table,))
    return False


@contextmanager
def stage_while_cleaning(
    target, table: Table, paths: tuple[str, str], run_id: str, full_run: bool
) -> Iterator[Stager | None]:
    """A `Stager` for a full run on more than one connection (else None); rolled back if the block fails.
    `paths`: the run's Arrow files of the table's loadable rows and rejects, which the copy mirrors."""
    if not full_run or target.setting("connections").value < 2:
        yield None
        return
    stager = Stager(target.connect, table, paths, run_id)
    try:
        yield stager
    except BaseException:
        stager.finish(ok=False)
        raise
    stager.finish(ok=True)


def outcome(stager: Stager) -> str:
    """The log line: the table copied into the stage while cleaning, or why not (publish copies it)."""
    name = stager.table.name
    if stager.skipped is None:
        return (
            f"{name}: {stager.rows:,} rows copied into {STAGE}.{name} and {stager.rejects:,} rejects into "
            f"{STAGE}.{REJECTS} while cleaning"
        )
    return f"{name}: not copied while cleaning ({stager.skipped}); publish copies it"
