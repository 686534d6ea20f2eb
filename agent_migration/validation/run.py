"""`validate`: prove every row of PostgreSQL against the source snapshot it was last published from.

For each source table and every source row: a row that loads is in the target under the same key and
holds, column by column, what the exact rules make of the source row; a rejected row is in
`migration.rejected_rows` with the source row as stored in its payload; no target row or reject lacks
its source row. The tables no source table maps to (`derived.py`): `users` is exactly the set of valid
usernames the source references, `marketplace_listings` what the rules make of the agents, `battles` empty,
and no reject names a table the source does not have. Source rows are read chunk by chunk in rowid order; the target in one read-only snapshot.

`validate(source, target)` compares everything; `sample=N` compares N random source rows per table
(the check every `migrate` runs). Either returns a `Report`; nothing is written anywhere.
"""

from __future__ import annotations

import random
import sqlite3
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from agent_migration.core.cleaning import SOURCE_ROWID
from agent_migration.core.errors import MigrationError
from agent_migration.core.tables import AGENTS, SOURCE_TABLES, Table
from agent_migration.core.text import text_table
from agent_migration.postgres import cutover, history
from agent_migration.postgres.connection import TargetDatabase
from agent_migration.source import sqlite_read
from agent_migration.source.database import SourceDatabase
from agent_migration.validation import (
    compare,
    derived,
    digest,
    digest_pass,
    digest_read,
    expected,
    ledger,
    target_read,
)
from agent_migration.validation.compare import Difference, Tally

PARENTS = {parent.name for t in SOURCE_TABLES for _, parent in t.parent_refs}
HEADS = ["table", "rows compared", "matched", "differing", "missing", "extra"]


@dataclass(frozen=True)
class TableReport:
    name: str
    compared: int
    matched: int
    differing: int
    missing: int
    extra: int
    differences: tuple[Difference, ...]  # the first `compare.SHOWN`

    @property
    def ok(self) -> bool:
        return self.differing == self.missing == self.extra == 0

    @classmethod
    def of(cls, tally: Tally) -> TableReport:
        return cls(
            tally.table,
            tally.compared,
            tally.matched,
            tally.differing,
            tally.missing,
            tally.extra,
            tuple(tally.shown),
        )


@dataclass(frozen=True)
class Report:
    snapshot: str  # the source snapshot compared with
    published_by: str  # the run that published it
    mode: str  # "full" or "sample of N rows per table"
    notes: tuple[str, ...]  # said first (a recorded cutover)
    tables: tuple[TableReport, ...]
    seconds: float

    @property
    def ok(self) -> bool:
        return all(t.ok for t in self.tables)

    @property
    def failing(self) -> list[str]:
        return [t.name for t in self.tables if not t.ok]

    def lines(self) -> list[str]:
        """One line per difference (the first `compare.SHOWN` of each table)."""
        return [d.line() for t in self.tables for d in t.differences]

    def summary(self) -> str:
        rows = [[t.name, t.compared, t.matched, t.differing, t.missing, t.extra] for t in self.tables]
        verdict = "every row matches" if self.ok else f"DIFFERENCES in {', '.join(self.failing)}"
        return (
            f"validate ({self.mode}) against {self.snapshot}, published by run {self.published_by}: "
            f"{verdict} ({self.seconds:.1f} s)\n{text_table(HEADS, rows)}"
        )

    def failure(self) -> str:
        counts = ", ".join(
            f"{t.name}: {t.differing} differing, {t.missing} missing, {t.extra} extra"
            for t in self.tables
            if not t.ok
        )
        return f"validate found differences between PostgreSQL and its source: {counts} (see the log's lines)"


def baseline_snapshot(cur) -> tuple[str, str]:
    """(the snapshot the target was last published from, the run that published it), or a clear error."""
    base = history.baseline(cur)
    if base is None or not base["snapshot"]:
        raise MigrationError(
            "validate: the target records no publish (migration.runs is empty): run migrate first."
        )
    if not Path(base["snapshot"]).is_file():
        raise MigrationError(
            f"validate: the source snapshot the target was last published from is gone: {base['snapshot']} "
            f"(published by run {base['run_id']}); run migrate first: it publishes from a fresh snapshot, "
            "which validate then compares with."
        )
    return base["snapshot"], base["run_id"]


def cutover_note(cur) -> tuple[str, ...]:
    cut = cutover.recorded(cur)
    if cut is None:
        return ()
    return (
        f"the cutover was recorded at {cut['cut_at']:%Y-%m-%d %H:%M:%S} UTC by run {cut['run_id']}: the app now "
        "writes to PostgreSQL, so differences may be the app's own writes since then",
    )


def validate(
    source: SourceDatabase,
    target: TargetDatabase,
    sample: int | None = None,
    log: Callable[[str], None] | None = None,
    record: str | None = None,
    by_digest: bool = True,
) -> Report:
    """Compare the target with its baseline snapshot: every row, or `sample` random rows per table.
    `record` (a full validate's run id): when every row matches, record the ledger (`ledger.py`).
    `by_digest=False`: every table value by value (what the digests are held to)."""
    started = time.monotonic()
    log = log or (lambda _msg: None)
    with target_read.read_only(target) as conn, conn.cursor() as cur:
        snapshot, run_id = baseline_snapshot(cur)
        notes = cutover_note(cur)
        for note in notes:
            log(note)
        with ExitStack() as stack:
            readers = None
            if sample is None and by_digest:  # worker processes, forked before the ledger's thread starts
                readers = digest_read.readers_for(snapshot)
                stack.callback(readers.close)
            writer = None
            if record and sample is None and not notes:
                writer = ledger.Writer(target, conn, record)
                stack.callback(writer.close)
            report = _compare(source, conn, cur, snapshot, sample, log, by_digest, readers)
            report = Report(snapshot, run_id, report.mode, notes, report.tables, time.monotonic() - started)
            if writer is not None and (said := writer.finish(report.ok, source, snapshot, run_id)):
                log(said)
    return report


def _compare(
    source: SourceDatabase, conn, cur, snapshot: str, sample: int | None, log, by_digest: bool, readers
) -> Report:
    """Every table compared (or a sample of each): a report without its header."""
    parents: dict[str, np.ndarray] = {}
    reports = []
    listed: list[pd.DataFrame] = []  # the listings the rules make of the agents, chunk by chunk
    with source.connect(snapshot) as sconn:
        for table in SOURCE_TABLES:
            if sample is None:
                found = listed if table is AGENTS else None
                tally = full_table(
                    snapshot, sconn, conn, cur, table, parents, source.rows_per_chunk, found, by_digest, readers
                )
            else:
                tally = sample_table(sconn, cur, table, sample)
            reports.append(TableReport.of(tally))
            log(f"validate: {table.name}: {tally.compared:,} source rows compared")
        if sample is None:
            for tally in derived.tallies(sconn, conn, cur, listed):
                reports.append(TableReport.of(tally))
    mode = "full" if sample is None else f"sample of {sample:,} rows per table"
    return Report(snapshot, "", mode, (), tuple(reports), 0.0)


def _loaded_parents(table: Table, parents: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {col.name: parents[parent.name] for col, parent in table.parent_refs}


CHUNK_ROWS = 25_000  # rows compared at a time: about 100 MiB in flight, two chunks in the pipeline
JSON_CHUNK_ROWS = 10_000  # a parsed JSON value takes about a kilobyte in Python


def chunk_size(table: Table, chunk_rows: int) -> int:
    """Rows per chunk (at most the source's `chunk_rows`): memory stays flat whatever the table."""
    has_json = any(c.pg_type == "JSONB" for c in table.migrated)
    return min(chunk_rows, JSON_CHUNK_ROWS if has_json else CHUNK_ROWS)


def source_chunks(snapshot: str, table: Table, rows: int) -> Iterator[pd.DataFrame]:
    """The table's rows, `rows` at a time in rowid order, the next chunk read in a thread while the
    caller compares this one (SQLite reads its pages without the GIL). Its own read-only connection."""
    conn = sqlite3.connect(f"file:{Path(snapshot).resolve()}?mode=ro", uri=True, check_same_thread=False)
    try:
        with ThreadPoolExecutor(max_workers=1) as reader:
            ahead = reader.submit(expected.read_after, conn, table, None, rows)
            while len(raw := ahead.result()):
                ahead = reader.submit(expected.read_after, conn, table, int(raw[SOURCE_ROWID].iloc[-1]), rows)
                yield raw
    finally:
        conn.close()


def full_table(
    snapshot: str,
    sconn: sqlite3.Connection,
    conn,
    cur,
    table: Table,
    parents: dict,
    chunk_rows: int,
    listed: list | None = None,
    by_digest: bool = True,
    readers: digest_read.Readers | None = None,
) -> Tally:
    """Every source row of `table`, chunk by chunk in rowid order, then the target's rows without one;
    `listed` (the agents) gets each chunk's listings by the rules (`derived.for_sale`).

    By digests (`digest_pass.py`), or (`by_digest=False`) value by value, pipelined: while PostgreSQL
    answers for one chunk (in a thread: the server works, the GIL is free), the next chunk goes through
    the exact rules."""
    if by_digest and digest.eligible(table) and digest.usable(cur, sconn):
        rows, refs = min(digest_pass.ROWS, chunk_rows), _loaded_parents(table, parents)
        with ExitStack() as stack:
            if readers is None:
                readers = digest_read.Readers()
                stack.callback(readers.close)
            tally, loads = digest_pass.full_table(readers, snapshot, sconn, conn, cur, table, refs, rows)
        if table.name in PARENTS:
            parents[table.name] = loads
        if listed is not None:  # the agents, proven: their listings by the rules
            listed.extend(derived.listed_by_target(conn))
        return tally
    tally = Tally(table.name)
    facts = expected.source_facts(sconn, table)
    rejects = compare.Rejects(table, target_read.stream_rejects(conn, table), tally)
    seen, keys = [], []

    def finish(exp: expected.Expected, got: Future, last: int) -> None:
        compare.loaded(table, exp.loaded, got.result(), tally)
        rejects.upto(last, exp.rejected)

    with ThreadPoolExecutor(max_workers=1) as pg:
        pending = None
        for raw in source_chunks(snapshot, table, chunk_size(table, chunk_rows)):
            exp = expected.expect(table, raw, facts, _loaded_parents(table, parents))
            if listed is not None:
                listed.append(derived.for_sale(exp.loaded))
            loaded_keys = exp.loaded[expected.KEY].tolist()
            got = pg.submit(target_read.read_rows, cur, table, loaded_keys)
            if pending is not None:
                finish(*pending)
            pending = (exp, got, int(raw[SOURCE_ROWID].iloc[-1]))
            seen.append(compare.key_codes(table, loaded_keys))
            if table.name in PARENTS:
                keys.append(np.asarray(loaded_keys, dtype=np.int64))
        if pending is not None:
            finish(*pending)
    rejects.finish()
    if table.name in PARENTS:
        parents[table.name] = compare.sorted_once(keys, np.int64)
    compare.strays(table, compare.sorted_once(seen, np.uint64), target_read.stream_keys(conn, table), tally)
    return tally


def sample_rowids(sconn: sqlite3.Connection, table: Table, n: int) -> list[int]:
    """Up to `2 n` rowids of the table to draw `n` rows from: every rowid of a small range, else random
    ones drawn from the range, kept where they exist (no count(*), which reads the whole table)."""
    span = sqlite_read.rowid_range(sconn, table)
    if span is None:
        return []
    lo, hi = span
    if hi - lo + 1 <= 2 * n:
        return [r for (r,) in sconn.execute(f'SELECT rowid FROM "{table.source}"')]
    # Rowids are dense in practice: twice n draws from the range leave n rows to pick after gaps.
    return sorted(random.sample(range(lo, hi + 1), 2 * n))


def sample_table(sconn: sqlite3.Connection, cur, table: Table, n: int) -> Tally:
    """`n` random source rows (a parent reference checked against the parent keys the target holds)."""
    tally = Tally(table.name)
    raw = expected.read_rowids(sconn, table, sample_rowids(sconn, table, n))
    raw = raw.sample(n=min(n, len(raw)), random_state=None).sort_values(SOURCE_ROWID, ignore_index=True)
    if not len(raw):
        return tally
    parents = {
        col.name: np.sort(np.asarray(target_read.keys_of(cur, parent), dtype=np.int64))
        for col, parent in table.parent_refs
    }
    exp = expected.expect(table, raw, expected.source_facts(sconn, table), parents)
    compare.loaded(
        table, exp.loaded, target_read.read_rows(cur, table, exp.loaded[expected.KEY].tolist()), tally
    )
    # The rejects of every sampled row: a loaded row with a reject too is an extra reject.
    rowids = raw[SOURCE_ROWID].astype("int64").tolist()
    rejects = compare.Rejects(table, [target_read.rejects_of(cur, table, rowids)], tally)
    rejects.upto(max(rowids), exp.rejected)
    return tally
