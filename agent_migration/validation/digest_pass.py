"""A full pass over one table by digests (`digest.py`): the expected side chunk by chunk in rowid order,
per chunk one digest of its plain rows and one of the rest from each side, the chunk compared value by
value only where they differ.

The plain rows are sifted and digested where the chunk is read (`digest_read.py`). Every other row goes
through the exact rules (`expected.expect`) here, and its canonical text is rendered from their result.
PostgreSQL digests the stored rows with the same keys, in a thread, while the next chunk is judged.
Rejects and strays are proven as in the value pass: rejects merged on rowid, strays by the keys seen.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd

from agent_migration.core.tables import Table
from agent_migration.validation import compare, digest, expected, target_read
from agent_migration.validation.compare import Tally
from agent_migration.validation.digest_read import Readers, Sifted

ROWS = 50_000  # source rows per chunk (no JSON in these tables: a row is a few hundred bytes)
EMPTY = expected.Expected(pd.DataFrame(), pd.DataFrame(columns=["rowid", "source_key", "reason", "payload"]))


@dataclass(frozen=True)
class Judged:
    """A chunk judged: its plain rows (sifted), the exact rules' result for the rest, the chunk's keys
    and this side's digest of it; PostgreSQL's on its way."""

    sifted: Sifted
    exact: expected.Expected
    keys: list
    mine: tuple[int, str | None]
    got: Future


class Pass:
    """One table's digest pass; `judge` then `finish` per chunk (pipelined by the caller)."""

    def __init__(self, sconn, cur, pg: ThreadPoolExecutor, table: Table, facts, parents, tally: Tally):
        self.sconn, self.cur, self.pg, self.table = sconn, cur, pg, table
        self.facts, self.parents, self.tally = facts, parents, tally
        self.target = digest.Target(table)
        self.text_key = digest.is_text(table.key_col)

    def judge(self, s: Sifted) -> Judged:
        if not len(s.rest):  # every row plain: the sifted digest is the chunk's
            return Judged(s, EMPTY, s.keys, s.digest, self.pg.submit(self.target.digest, self.cur, s.keys))
        raw = expected.read_rowids(self.sconn, self.table, s.rest.tolist())
        exact = expected.expect(self.table, raw, self.facts, self.parents)
        keys = s.keys + exact.loaded[expected.KEY].tolist()
        mine = digest.of_rows(keys, s.texts + digest.render(self.table, exact.loaded), self.text_key)
        return Judged(s, exact, keys, mine, self.pg.submit(self.target.digest, self.cur, keys))

    def finish(self, j: Judged) -> pd.DataFrame:
        """Tally the chunk; returns its expected rejects (for the rejects' merge)."""
        if j.got.result() == j.mine:
            self.tally.compared += len(j.keys)
            self.tally.matched += len(j.keys)
            return j.exact.rejected
        # The digests differ: every row of the chunk value by value, so the log names the column.
        raw = expected.read_rowids(self.sconn, self.table, j.sifted.plain_rowids.tolist())
        more = expected.expect(self.table, raw, self.facts, self.parents)
        loaded = pd.concat([more.loaded, j.exact.loaded], ignore_index=True)
        got = self.pg.submit(target_read.read_rows, self.cur, self.table, loaded[expected.KEY].tolist())
        compare.loaded(self.table, loaded, got.result(), self.tally)
        rejected = pd.concat([more.rejected, j.exact.rejected], ignore_index=True)
        return rejected.sort_values("rowid", ignore_index=True)


def full_table(
    readers: Readers, snapshot: str, sconn, conn, cur, table: Table, parents: dict[str, np.ndarray], rows: int
) -> tuple[Tally, np.ndarray]:
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
        for sifted in readers.chunks(snapshot, sconn, table, facts.rowids, parents, rows):
            judged = one.judge(sifted)
            if pending is not None:
                rejects.upto(pending.sifted.upto, one.finish(pending))
            pending = judged
            seen.append(compare.key_codes(table, judged.keys))
            if integer:
                keys.append(np.asarray(judged.keys, dtype=np.int64))
        if pending is not None:
            rejects.upto(pending.sifted.upto, one.finish(pending))
    rejects.finish()
    compare.strays(table, compare.sorted_once(seen, np.uint64), target_read.stream_keys(conn, table), tally)
    return tally, compare.sorted_once(keys, np.int64)
