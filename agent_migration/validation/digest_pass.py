"""A full pass over one table by digests (`digest.py`): the expected side chunk by chunk in rowid order,
one digest per chunk from each side, the chunk compared value by value only where they differ.

Per chunk: SQLite gives each row's rowid, key, parent references and, where every value is plain, its
canonical text. A plain row also needs a key no other row shares and parents that load. Every other row
goes through the exact rules (`expected.expect`), and its canonical text is rendered from their result.
PostgreSQL digests the stored rows with the chunk's keys, in a thread, while the next chunk is read and
judged. Rejects and strays are proven as in the value pass: rejects merged on rowid, strays by the keys
seen.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from agent_migration.core.cleaning import KeyFacts
from agent_migration.core.tables import Table
from agent_migration.validation import compare, digest, expected, target_read
from agent_migration.validation.compare import Tally

ROWS = 50_000  # source rows per chunk and digest (no JSON in these tables: a row is a few hundred bytes)
FIRST = -(2**63)


@dataclass(frozen=True)
class Fetched:
    """A chunk as SQLite gave it: rowids, keys and parent references as stored, canonical text of the
    rows plain in SQL (None elsewhere)."""

    rowids: np.ndarray
    keys: np.ndarray
    refs: dict[str, np.ndarray]
    texts: np.ndarray


@dataclass(frozen=True)
class Judged:
    """A chunk judged: which rows are plain, the exact rules' result for the others, this side's digest."""

    fetched: Fetched
    plain: np.ndarray
    exact: expected.Expected
    keys: list
    mine: tuple[int, str | None]
    got: Future


def utf8(texts: np.ndarray, plain: np.ndarray) -> np.ndarray:
    """`plain`, less the rows whose text is not valid UTF-8 (the exact rules reject those)."""
    try:
        b"".join(texts[plain]).decode("utf-8")
        return plain
    except UnicodeDecodeError:
        pass
    ok = plain.copy()
    for i in np.flatnonzero(plain):
        try:
            texts[i].decode("utf-8")
        except UnicodeDecodeError:
            ok[i] = False
    return ok


def fetch(conn: sqlite3.Connection, table: Table, start: int, limit: int) -> Fetched:
    """Up to `limit` rows from rowid `start` on. Text as SQLite stores it (UTF-8 bytes): nothing decoded
    here, each chunk checked once (`utf8`)."""
    conn.text_factory = bytes
    rows = conn.execute(digest.source_select(table), (start, limit)).fetchall()
    block = np.empty((len(rows), 3 + len(table.parent_refs)), dtype=object)
    if rows:
        block[:] = rows
    refs = {col.name: block[:, 2 + i] for i, (col, _) in enumerate(table.parent_refs)}
    return Fetched(block[:, 0].astype(np.int64), block[:, 1], refs, block[:, -1])


def chunks(snapshot: str, table: Table, rows: int) -> Iterator[Fetched]:
    """The table's chunks in rowid order, the next read in a thread (SQLite builds each row's text
    without the GIL). One reader: a second one only fights the first for the GIL."""
    conn = sqlite3.connect(f"file:{Path(snapshot).resolve()}?mode=ro", uri=True, check_same_thread=False)
    try:
        with ThreadPoolExecutor(max_workers=1) as reader:
            ahead = reader.submit(fetch, conn, table, FIRST, rows)
            while len((got := ahead.result()).rowids):
                ahead = reader.submit(fetch, conn, table, int(got.rowids[-1]) + 1, rows)
                yield got
    finally:
        conn.close()


def _loads(values: np.ndarray, loaded: np.ndarray) -> np.ndarray:
    """Per reference (an integer or NULL, as SQL found them plain): NULL, or one of the sorted `loaded`."""
    refs = pd.array(values, dtype="Int64")
    none = refs.isna()
    wanted = refs.fillna(0).to_numpy(dtype=np.int64)
    if not len(loaded):
        return np.asarray(none)
    at = np.searchsorted(loaded, wanted).clip(0, len(loaded) - 1)
    return np.asarray(none) | (loaded[at] == wanted)


def plain_rows(table: Table, f: Fetched, facts: KeyFacts, parents: dict[str, np.ndarray]) -> np.ndarray:
    """Rows whose canonical text SQLite made: every value plain, no shared key, every parent loads."""
    plain = ~pd.isna(f.texts) & ~np.isin(f.rowids, facts.rowids)
    for col, _ in table.parent_refs:
        at = np.flatnonzero(plain)
        plain[at] &= _loads(f.refs[col.name][at], parents[col.name])
    return plain


class Pass:
    """One table's digest pass; `chunk` then `finish` per chunk (pipelined by the caller)."""

    def __init__(self, sconn, cur, pg: ThreadPoolExecutor, table: Table, facts, parents, tally: Tally):
        self.sconn, self.cur, self.pg, self.table = sconn, cur, pg, table
        self.facts, self.parents, self.tally = facts, parents, tally
        self.query = digest.target_query(table)
        self.text_key = digest.is_text(table.key_col)

    def judge(self, f: Fetched) -> Judged:
        plain = utf8(f.texts, plain_rows(self.table, f, self.facts, self.parents))
        rest = f.rowids[~plain]
        raw = expected.read_rowids(self.sconn, self.table, rest.tolist())
        exact = expected.expect(self.table, raw, self.facts, self.parents)
        keys = f.keys[plain].tolist()
        if self.text_key:  # stored as UTF-8 (checked above)
            keys = [k.decode("utf-8") for k in keys]
        keys += exact.loaded[expected.KEY].tolist()
        texts = f.texts[plain].tolist() + digest.render(self.table, exact.loaded)
        got = self.pg.submit(digest.target_digest, self.cur, self.query, self.table, keys)
        return Judged(f, plain, exact, keys, digest.of_rows(keys, texts, self.text_key), got)

    def finish(self, j: Judged) -> pd.DataFrame:
        """Tally the chunk; returns its expected rejects (for the rejects' merge)."""
        if j.got.result() == j.mine:
            self.tally.compared += len(j.keys)
            self.tally.matched += len(j.keys)
            return j.exact.rejected
        # The digests differ: every row of the chunk value by value, so the log names the column.
        raw = expected.read_rowids(self.sconn, self.table, j.fetched.rowids[j.plain].tolist())
        more = expected.expect(self.table, raw, self.facts, self.parents)
        loaded = pd.concat([more.loaded, j.exact.loaded], ignore_index=True)
        got = self.pg.submit(target_read.read_rows, self.cur, self.table, loaded[expected.KEY].tolist())
        compare.loaded(self.table, loaded, got.result(), self.tally)
        rejected = pd.concat([more.rejected, j.exact.rejected], ignore_index=True)
        return rejected.sort_values("rowid", ignore_index=True)


def _sorted(parts: list[np.ndarray], dtype) -> np.ndarray:
    every = np.concatenate(parts) if parts else np.empty(0, dtype)
    parts.clear()
    every.sort()
    return every


def full_table(snapshot: str, sconn, conn, cur, table: Table, parents: dict[str, np.ndarray], rows: int):
    """Every source row of `table` by digests, then the target's rows without one (strays); returns the
    tally and the sorted keys that load (integer keys; empty otherwise: a parent table's are needed)."""
    tally = Tally(table.name)
    facts = expected.source_facts(sconn, table)
    rejects = compare.Rejects(table, target_read.stream_rejects(conn, table), tally)
    seen, keys = [], []
    integer = not digest.is_text(table.key_col)
    with ThreadPoolExecutor(max_workers=1) as pg:
        one = Pass(sconn, cur, pg, table, facts, parents, tally)
        pending = None
        for fetched in chunks(snapshot, table, rows):
            judged = one.judge(fetched)
            if pending is not None:
                rejects.upto(int(pending.fetched.rowids[-1]), one.finish(pending))
            pending = judged
            seen.append(compare.key_codes(table, judged.keys))
            if integer:
                keys.append(np.asarray(judged.keys, dtype=np.int64))
        if pending is not None:
            rejects.upto(int(pending.fetched.rowids[-1]), one.finish(pending))
    rejects.finish()
    compare.strays(table, _sorted(seen, np.uint64), target_read.stream_keys(conn, table), tally)
    return tally, _sorted(keys, np.int64)
