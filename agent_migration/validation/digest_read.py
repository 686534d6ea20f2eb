"""The expected side of a digest pass, chunk by chunk: SQLite's plain rows sifted out and digested where
the chunk is read, in worker processes for a big table (SQLite building each row's text is most of a
pass, and threads would share one GIL), else in one thread.

A chunk is a rowid range of `rows` rows. Sifting it: SQLite gives each row's rowid, key, parent
references and, where every value is plain, its canonical text (`digest.source_select`); a plain row also
needs a key no other row shares, parents that load and valid UTF-8. What comes back is small: the plain
rows' rowids, keys and digest, and the rowids left to the exact rules.
"""

from __future__ import annotations

import sqlite3
import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_all_start_methods, get_context
from pathlib import Path

import numpy as np
import pandas as pd

from agent_migration.core.tables import SOURCE_TABLES, Table
from agent_migration.source import sqlite_read
from agent_migration.source.files import sqlite_ident
from agent_migration.validation import digest

FIRST = -(2**63)
PROCESS_ROWS = 100_000  # a table's rowid span from which its chunks are sifted in worker processes
PROCESSES = 2


@dataclass(frozen=True)
class Sifted:
    """A chunk sifted: rows up to rowid `upto` done; the plain rows (rowids, keys, digest; their texts
    only when the chunk has other rows, whose texts join theirs), the rest."""

    upto: int
    plain_rowids: np.ndarray
    keys: list  # the plain rows' canonical keys, in rowid order
    digest: tuple[int, str | None]
    rest: np.ndarray  # rowids for the exact rules
    texts: list | None


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


def _loads(values: np.ndarray, loaded: np.ndarray) -> np.ndarray:
    """Per reference (an integer or NULL, as SQL found them plain): NULL, or one of the sorted `loaded`."""
    refs = pd.array(values, dtype="Int64")
    none = np.asarray(refs.isna())
    wanted = refs.fillna(0).to_numpy(dtype=np.int64)
    if not len(loaded):
        return none
    at = np.searchsorted(loaded, wanted).clip(0, len(loaded) - 1)
    return none | (loaded[at] == wanted)


def plain_rows(table: Table, block: np.ndarray, shared: np.ndarray, parents: dict[str, np.ndarray]) -> np.ndarray:
    """Rows whose canonical text SQLite made (and, with JSON columns, their tokens appended: the text is
    then whole), whose key no other row shares, whose parents load."""
    plain = ~pd.isna(block[:, -1]) & ~np.isin(block[:, 0].astype(np.int64), shared)
    for i, (col, _) in enumerate(table.parent_refs):
        at = np.flatnonzero(plain)
        plain[at] &= _loads(block[at, 2 + i], parents[col.name])
    plain = utf8(block[:, -1], plain)
    if digest.json_columns(table):
        _with_json(table, block, plain)
    return plain


_local = threading.local()


def _connect(snapshot: str) -> sqlite3.Connection:
    """This process's (thread's) read-only connection to the snapshot, kept for its next chunks."""
    conns = _local.__dict__.setdefault("conns", {})
    if snapshot not in conns:
        conn = sqlite3.connect(f"file:{Path(snapshot).resolve()}?mode=ro", uri=True, check_same_thread=False)
        conn.text_factory = bytes  # nothing decoded: each chunk's text is checked once (`utf8`)
        conns[snapshot] = conn
    return conns[snapshot]


def sift(snapshot: str, name: str, start: int, stop: int | None, shared: np.ndarray, parents: dict) -> Sifted:
    """One chunk: rows from rowid `start` to before `stop` (None: to the end)."""
    table = next(t for t in SOURCE_TABLES if t.name == name)
    params = (start,) if stop is None else (start, stop)
    rows = _connect(snapshot).execute(digest.source_select(table, stop is not None), params).fetchall()
    jsons = digest.json_columns(table)
    block = np.empty((len(rows), 3 + len(table.parent_refs) + len(jsons)), dtype=object)
    if rows:
        block[:] = rows
    plain = plain_rows(table, block, shared, parents)
    keys = block[plain, 1].tolist()
    if digest.is_text(table.key_col):
        keys = [k.decode("utf-8") for k in keys]
    rowids = block[:, 0].astype(np.int64)
    upto = stop - 1 if stop is not None else 2**63 - 1
    texts = block[plain, -1].tolist()
    mine = digest.of_rows(keys, texts, digest.is_text(table.key_col))
    rest = rowids[~plain]
    return Sifted(upto, rowids[plain], keys, mine, rest, texts if len(rest) else None)


def _with_json(table: Table, block: np.ndarray, plain: np.ndarray) -> None:
    """Each plain row's JSON tokens appended to its text (last: `digest.ordered`); a row whose JSON the
    rules may reject is not plain after all."""
    first = 2 + len(table.parent_refs)
    rules = [c.rule for c in digest.json_columns(table)]
    for at in np.flatnonzero(plain):
        tokens = [digest.json_token(rule, block[at, first + j]) for j, rule in enumerate(rules)]
        if None in tokens:
            plain[at] = False
        else:
            block[at, -1] += "".join(tokens).encode("utf-8")


def bounds(conn: sqlite3.Connection, table: Table, rows: int) -> Iterator[tuple[int, int | None]]:
    """Rowid ranges of `rows` rows each, the last one open: a walk over the rowids, no row read."""
    start = FIRST
    query = f"SELECT rowid FROM {sqlite_ident(table.source)} WHERE rowid >= ? ORDER BY rowid LIMIT 1 OFFSET ?"
    while True:
        nxt = conn.execute(query, (start, rows)).fetchone()
        yield start, None if nxt is None else nxt[0]
        if nxt is None:
            return
        start = nxt[0]


def ready() -> None:
    """Nothing: a worker that ran it has imported this module."""


class Readers:
    """Where chunks are sifted: worker processes, started when made, for the tables spanning
    `PROCESS_ROWS` rowids or more; one thread for the others."""

    def __init__(self, processes: int = 0):
        self._pool: Executor | None = None
        if processes:
            # Forked: a worker starts in milliseconds with nothing to import (spawned, it would import the
            # Dagster CLI again); it uses none of the connections or threads it inherits.
            method = "fork" if "fork" in get_all_start_methods() else "spawn"
            self._pool = ProcessPoolExecutor(processes, mp_context=get_context(method))
            for _ in range(processes):
                self._pool.submit(ready)  # start, and import this module, now
        self.processes = processes

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)

    def chunks(self, snapshot: str, sconn, table: Table, shared, parents, rows: int) -> Iterator[Sifted]:
        """The table's chunks sifted, in rowid order, `depth` read ahead."""
        span = sqlite_read.rowid_range(sconn, table)
        big = self._pool is not None and span is not None and span[1] - span[0] + 1 >= PROCESS_ROWS
        with ThreadPoolExecutor(max_workers=1) as thread:
            pool, depth = (self._pool, self.processes + 1) if big else (thread, 1)
            ahead: deque = deque()
            for start, stop in bounds(sconn, table, rows):
                ahead.append(pool.submit(sift, snapshot, table.name, start, stop, shared, parents))
                if len(ahead) > depth:
                    yield ahead.popleft().result()
            while ahead:
                yield ahead.popleft().result()


def readers_for(snapshot: str) -> Readers:
    """Worker processes when a table is big enough to repay them; made before any other thread starts."""
    conn = sqlite3.connect(f"file:{Path(snapshot).resolve()}?mode=ro", uri=True)
    try:
        spans = [sqlite_read.rowid_range(conn, t) for t in SOURCE_TABLES]
    finally:
        conn.close()
    big = any(span is not None and span[1] - span[0] + 1 >= PROCESS_ROWS for span in spans)
    return Readers(PROCESSES if big else 0)
