"""The reject budget: how much of a source table may be rejected before migrate refuses to publish.

A table's share is its rejected rows after this run over its source rows. On a full run that is this
run's rejects; on a change-only re-sync, the rejects the target keeps (those outside the rows this run
redoes) plus this run's. `migrate` decides it in `target_schema`, after every table is cleaned and before
anything is written, so a refused run leaves the target as it was, on a first load and on a re-sync.
`preflight` applies the same budget to its full assessment of the source.
"""

from __future__ import annotations

from collections import Counter
from contextlib import nullcontext
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from agent_migration.core.artifacts import CleanTable, Snapshot
from agent_migration.core.contract import reason_kinds
from agent_migration.core.errors import MigrationError
from agent_migration.core.rules import INT32_MAX, INT32_MIN
from agent_migration.core.tables import BY_SOURCE, SOURCE_TABLES
from agent_migration.postgres.connection import TargetDatabase

ENV = "MIGRATION_MAX_REJECT_SHARE"
OVERFLOW = ": overflows a PostgreSQL INTEGER"  # the end of an integer's reason kind
ORPHAN = ", which is missing or rejected"  # the end of a row naming a missing or rejected parent
TOP_REASONS = 3


@dataclass(frozen=True)
class Budget:
    """The largest share of a table's source rows that may be rejected, and which setting gave it."""

    share: float
    setting: str


def budget_of(target: TargetDatabase) -> Budget:
    """The budget at run time: the resource's `max_reject_share`, else env MIGRATION_MAX_REJECT_SHARE, else
    0.5 (a bad value fails naming the setting and where it came from)."""
    found = target.setting("max_reject_share")
    if found.origin == "run config":
        return Budget(found.value, f"{found.field} = {found.value:g}")
    if found.origin == "environment":
        return Budget(found.value, f"{found.name}={found.value:g}")
    return Budget(found.value, f"{found.name} not set: the default")


@dataclass(frozen=True)
class Share:
    """One source table's rejects after the run: how many of its source rows, and why (top reasons)."""

    table: str  # the source table
    rows: int
    rejected: int
    reasons: dict[str, int] = field(default_factory=dict)  # reason kind -> rows
    # overflow kind -> how many of its values are below the range (the others are above it)
    below: dict[str, int] = field(default_factory=dict)

    @property
    def share(self) -> float:
        return self.rejected / self.rows if self.rows else 0.0

    def over(self, budget: Budget) -> bool:
        return self.share > budget.share


def count_reasons(rejects: pa.Table | pa.RecordBatch) -> tuple[Counter, Counter]:
    """Rows per reason kind (a row rejected for several reasons counts under each), and per integer
    overflow kind how many values were below the range rather than above it."""
    kinds = rejects.column("reason_kind")
    counted = reason_kinds(kinds.combine_chunks() if isinstance(kinds, pa.ChunkedArray) else kinds)
    below = Counter()
    for kind in counted:
        if kind.endswith(OVERFLOW):
            below[kind] = pc.sum(pc.match_substring(rejects.column("reason"), f"{kind} (got -")).as_py() or 0
    return counted, below


def file_reasons(path: str) -> tuple[Counter, Counter]:
    """`count_reasons` over a run's rejects file, one batch at a time."""
    counted, below = Counter(), Counter()
    with pa.OSFile(path, "rb") as f:
        for batch in pa.ipc.open_stream(f):
            more, less = count_reasons(batch)
            counted.update(more)
            below.update(less)
    return counted, below


_OUTSIDE = (
    "FROM migration.rejected_rows AS r WHERE r.source_table = %s AND NOT EXISTS "
    "(SELECT 1 FROM unnest(%s::bigint[]) AS k(rowid) WHERE k.rowid = r.source_rowid)"
)


def kept_rejects(cur, source_table: str, redone: list[int]) -> int:
    """The target's rejects of a table that a change-only re-sync keeps: those outside its redone rowids."""
    cur.execute(f"SELECT count(*) {_OUTSIDE}", (source_table, redone))
    return cur.fetchone()[0]


def kept_reasons(cur, source_table: str, redone: list[int]) -> tuple[Counter, Counter]:
    """`count_reasons` over the rejects a change-only re-sync keeps, in the target."""
    cur.execute(
        "SELECT kind, count(*), count(*) FILTER (WHERE strpos(r.reason, kind || ' (got -') > 0) "
        "FROM migration.rejected_rows AS r, unnest(string_to_array(coalesce(r.reason_kind, r.reason), '; ')) "
        "AS kind WHERE r.source_table = %s AND NOT EXISTS "
        "(SELECT 1 FROM unnest(%s::bigint[]) AS k(rowid) WHERE k.rowid = r.source_rowid) GROUP BY kind",
        (source_table, redone),
    )
    rows = cur.fetchall()
    return Counter({k: n for k, n, _ in rows}), Counter({k: b for k, _, b in rows if k.endswith(OVERFLOW)})


def shares(cur, snap: Snapshot, clean: dict[str, CleanTable], why: bool = False) -> list[Share]:
    """Every source table's share after this run (`cur`: the target, read only; needed for a re-sync).
    `why`: also count the reasons (reads the run's rejects files and the target's kept rejects)."""
    found = []
    for table in SOURCE_TABLES:
        done, rows = clean[table.name], snap.stats[table.source]["rows"]
        resync = done.delta is not None
        kept = kept_rejects(cur, table.source, done.redone_rowids) if resync else 0
        reasons, below = Counter(), Counter()
        if why:
            reasons, below = file_reasons(done.rejects_path)
            if resync:
                more, less = kept_reasons(cur, table.source, done.redone_rowids)
                reasons.update(more)
                below.update(less)
        found.append(Share(table.source, rows, kept + done.rejected, dict(reasons), dict(below)))
    return found


def describe(kind: str, n: int, below: int = 0, example: str = "") -> str:
    """A reason kind and its count, for people: `agents.gene: 100,000 values above INTEGER's 2147483647`
    (`example`: a sample row, e.g. `key 1, got 281474976710757`)."""
    label, _, what = kind.partition(": ")
    tail = f", e.g. {example}" if example else ""
    if kind.endswith(OVERFLOW):
        parts = [f"{n - below:,} values above INTEGER's {INT32_MAX}"] if n > below else []
        parts += [f"{below:,} values below INTEGER's {INT32_MIN}"] if below else []
        return f"{label}: {' and '.join(parts)}" + (f" ({example})" if example else "")
    if kind.endswith(ORPHAN):
        return f"{label}: {n:,} rows name an agent that is missing or rejected" + (
            f" ({example})" if example else ""
        )
    rows = f"{n:,} row" + ("s" if n != 1 else "")
    return f"{label}: {what} ({rows}{tail})" if what else f"{kind} ({rows}{tail})"


def top_reasons(share: Share, top: int = TOP_REASONS) -> list[str]:
    ranked = sorted(share.reasons.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    return [describe(kind, n, share.below.get(kind, 0)) for kind, n in ranked]


def root_cause(share: Share, by_table: dict[str, Share], listed: set[str]) -> str:
    """For a table whose rows name rejected parents: the parents' own rejects, the root cause (named in
    full unless the parent table is itself over the budget, and so named first)."""
    table = BY_SOURCE[share.table]
    if not any(kind.endswith(ORPHAN) for kind in share.reasons):
        return ""
    causes = []
    for _, parent in dict.fromkeys(table.parent_refs):
        up = by_table.get(parent.source)
        if up is None or not up.rejected:
            continue
        said = f"see {parent.source}" if parent.source in listed else "; ".join(top_reasons(up, 1))
        causes.append(f"{up.rejected:,} of {up.rows:,} {parent.source} are rejected ({said})")
    return f", because {' and '.join(causes)}" if causes else ""


def refusal(over: list[Share], every: list[Share], budget: Budget) -> str:
    """The message of a refused run: each table over budget (parents first, so the root cause leads),
    its share and top reasons, and how to raise the budget."""
    by_table, listed = {s.table: s for s in every}, {s.table for s in over}
    parts = [
        f"{s.table}: {s.rejected:,} of {s.rows:,} source rows would be rejected ({s.share:.1%})"
        f"{root_cause(s, by_table, listed)}: " + "; ".join(top_reasons(s))
        for s in over
    ]
    return (
        f"reject budget exceeded: {' | '.join(parts)}. The budget is {budget.share:.0%} of each table's rows "
        f"({budget.setting}). Nothing was written to the target. To publish anyway, raise the budget: env "
        f"{ENV}=1 (a fraction of a table's rows), or run config resources: {{target: {{config: "
        "{max_reject_share: 1}}}; the preflight job shows every reason with sample rows."
    )


def over_budget(every: list[Share], budget: Budget) -> list[Share]:
    return [s for s in every if s.over(budget)]


class BudgetExceeded(MigrationError):
    """A refused run: the message, and every table's share (for the run's summary)."""

    def __init__(self, message: str, every: list[Share], budget: Budget):
        super().__init__(message)
        self.shares, self.budget = every, budget


def enforce(
    target: TargetDatabase, snap: Snapshot, clean: dict[str, CleanTable]
) -> tuple[Budget, list[Share]]:
    """The budget and every table's share; `BudgetExceeded` when a table is over it. Reads the target only
    on a change-only re-sync (the rejects it keeps), and writes nothing."""
    budget = budget_of(target)
    resync = any(c.delta is not None for c in clean.values())
    with target.connect() if resync else nullcontext() as conn:
        cur = None
        if conn is not None:
            conn.set_session(readonly=True)
            cur = conn.cursor()
        found = shares(cur, snap, clean)
        if over_budget(found, budget):
            found = shares(cur, snap, clean, why=True)
            raise BudgetExceeded(refusal(over_budget(found, budget), found, budget), found, budget)
    return budget, found
