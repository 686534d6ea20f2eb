"""The cutover's proof: every row of every table, proven in full only where something changed since the
last full `validate` recorded its ledger (`ledger.py`).

What changed is found by the cutover's own means, never from the re-sync's change list:
- source rows: the current snapshot against the one validate proved, row by row in SQLite (`row_diff`);
- target rows: every stored row's digest recomputed by PostgreSQL against the ledger's (`postgres/ledger`).
Run together (SQLite in this thread, the server in another).

Proven in full, through the exact rules (as `validate` does), per source table: the source rows that
changed; the rows holding the key of a target row that changed, or of a user that changed; the rows that
share a key now or did then; the rows of a changed reject; the rows naming a parent whose rows changed.
Every other source row is unchanged, and so is its target row or reject (its digest says so): the ledger
proves it. Row counts close the argument (loaded and rejected per table = the ledger's, less the
re-proven rows' old outcomes, plus their new ones), so no stray can hide in an unchanged digest; a table
whose counts disagree, or with most of its rows changed, is proven by a full pass, which names every
difference. `users`, listings (from the proven agents), `battles` and stray rejects are proven whole.
No usable ledger: the full `validate`, and the log says why and how to shorten the next window.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from agent_migration.core.tables import SOURCE_TABLES, USERS, Table
from agent_migration.postgres import ledger as pg_ledger
from agent_migration.source import row_diff
from agent_migration.validation import compare, derived, expected, ledger, run, target_read
from agent_migration.validation.compare import Difference, Tally

FULL_SHARE = 0.3  # more of a table's rows than this to re-prove: one full pass of the table is cheaper
ROWS = 10_000  # source rows proven at a time
SHORTER = (
    "To shorten the next cutover's window: run validate while the app still writes, shortly before the "
    "cutover; the cutover then proves in full only the rows changed since."
)


@dataclass(frozen=True)
class Changes:
    """What differs from the ledger: per source table (rowids new or changed now, rowids gone), per
    target table the keys whose digest differs, and the changed rejects; and the usernames the source
    references now (read while the server still computes digests: `users` is proven whole)."""

    source: dict[str, tuple[np.ndarray, np.ndarray]]
    target: dict[str, pg_ledger.Changed]
    rejects: pg_ledger.ChangedRejects
    usernames: set[str]

    def rows(self) -> int:
        found = sum(len(new) + len(gone) for new, gone in self.source.values())
        found += sum(len(c.now) + len(c.gone) for c in self.target.values())
        return found + sum(len(r) for r in self.rejects.rowids.values())


@dataclass
class Proof:
    """The proof's state: connections, the ledger, what changed, and what the proven tables tell the next."""

    sconn: object  # the current snapshot, the proven one attached
    old: object  # the proven snapshot alone (its key facts)
    conn: object
    cur: object
    snapshot: str
    record: pg_ledger.Recorded
    changes: Changes
    chunk_rows: int
    counts: dict[str, int] = field(default_factory=dict)  # source table -> its rows now
    touched: dict[str, set | None] = field(default_factory=dict)  # parent -> keys re-proven (None: all)
    proven: int = 0  # source rows proven in full
    full: list[str] = field(default_factory=list)  # tables proven by a full pass, with why


def find_changes(sconn, snapshot: str, cur, kind: str) -> tuple[Changes, float, float]:
    """What changed since the ledger: source by SQLite (here; the usernames it references in a thread),
    target by PostgreSQL (in another)."""

    def target_side() -> tuple[dict, pg_ledger.ChangedRejects, float]:
        began = time.monotonic()
        found = {t.name: pg_ledger.changed(cur, t, kind) for t in (*SOURCE_TABLES, USERS)}
        return found, pg_ledger.changed_rejects(cur), time.monotonic() - began

    def usernames_side() -> set[str]:  # its own connection: SQLite reads both files at once
        with closing(sqlite3.connect(f"file:{snapshot}?mode=ro", uri=True)) as own:
            return expected.referenced_users(own, SOURCE_TABLES)

    with ThreadPoolExecutor(max_workers=2) as pool:
        pending, names = pool.submit(target_side), pool.submit(usernames_side)
        began = time.monotonic()
        source = {t.name: row_diff.changed(sconn, t) for t in SOURCE_TABLES}
        usernames = names.result()
        source_s = time.monotonic() - began
        target, rejects, target_s = pending.result()
    return Changes(source, target, rejects, usernames), source_s, target_s


def _parents(cur, table: Table) -> dict[str, np.ndarray]:
    """Per parent, its keys as the target holds them (proven before its children)."""
    return {
        parent.name: np.sort(np.asarray(target_read.keys_of(cur, parent), dtype=np.int64))
        for _, parent in table.parent_refs
    }


def _to_prove(p: Proof, table: Table, keys: list) -> np.ndarray:
    """The source rows `table` re-proves: see the module's docstring."""
    new, _ = p.changes.source[table.name]
    parts = [
        new,
        row_diff.holding(p.sconn, table, table.key_col, keys),
        expected.source_facts(p.sconn, table).rowids,
        expected.source_facts(p.old, table).rowids,
        np.fromiter(p.changes.rejects.rowids.get(table.source, ()), dtype=np.int64),
    ]
    for col, parent in table.parent_refs:
        parts.append(row_diff.holding(p.sconn, table, col, sorted(p.touched.get(parent.name, ()))))
    return np.unique(np.concatenate(parts))


def _int_keys(values) -> set[int]:
    found = set()
    for v in values:
        try:
            found.add(int(v))
        except (TypeError, ValueError):
            continue
    return found


def _prove_rows(p: Proof, table: Table, rowids: np.ndarray, tally: Tally) -> tuple[int, int, set]:
    """Prove these source rows in full; returns (rows that load, rows rejected, keys they load)."""
    facts = expected.source_facts(p.sconn, table)
    parents = _parents(p.cur, table)
    loaded, rejected, keys = 0, 0, set()
    for start in range(0, len(rowids), ROWS):
        chunk = rowids[start : start + ROWS].tolist()
        raw = expected.read_rowids(p.sconn, table, chunk)
        exp = expected.expect(table, raw, facts, {c.name: parents[t.name] for c, t in table.parent_refs})
        got = target_read.read_rows(p.cur, table, exp.loaded[expected.KEY].tolist())
        compare.loaded(table, exp.loaded, got, tally)
        rejects = compare.Rejects(table, [target_read.rejects_of(p.cur, table, chunk)], tally)
        rejects.upto(chunk[-1], exp.rejected)
        rejects.finish()
        loaded, rejected = loaded + len(exp.loaded), rejected + len(exp.rejected)
        keys.update(exp.loaded[expected.KEY].tolist())
        if table.name in run.PARENTS:
            p.touched[table.name].update(_int_keys(exp.rejected["source_key"]) | _int_keys(exp.loaded[expected.KEY]))
    return loaded, rejected, keys


def _counts_hold(p: Proof, table: Table, rowids: np.ndarray, loaded: int, rejected: int) -> bool:
    """Loaded and rejected rows now = the ledger's, less the re-proven rows' outcomes then, plus now."""
    old = np.union1d(rowids, p.changes.source[table.name][1])
    was_rejected = pg_ledger.rejects_among(p.cur, table.source, old.tolist())
    was_loaded = row_diff.present(p.sconn, table, old) - was_rejected
    want_loaded = p.record.counts[table.name] - was_loaded + loaded
    want_rejected = pg_ledger.rejects_of_table(p.cur, table.source) - was_rejected + rejected
    have = (p.changes.target[table.name].rows, p.changes.rejects.rows.get(table.source, 0))
    return have == (want_loaded, want_rejected)


def _full(p: Proof, table: Table, why: str) -> Tally:
    p.full.append(f"{table.name} ({why})")
    p.proven += p.counts[table.name]
    if table.name in run.PARENTS:
        p.touched[table.name] = None  # any parent key may have changed: its children get a full pass too
    parents = _parents(p.cur, table)
    return run.full_table(p.snapshot, p.sconn, p.conn, p.cur, table, parents, p.chunk_rows)


def prove_table(p: Proof, table: Table) -> Tally:
    """One source table: its changed rows in full, the rest by the ledger (or a full pass: see above)."""
    changed = p.changes.target[table.name]
    if p.changes.rejects.unkeyed:
        return _full(p, table, "a changed reject has no source rowid")
    if any(p.touched.get(parent.name, ()) is None for _, parent in table.parent_refs):
        return _full(p, table, "a parent table had a full pass")
    if table.name in run.PARENTS:
        p.touched[table.name] = _int_keys([*changed.now, *changed.gone])
    keys = target_read.canonical_keys(p.cur, table, changed.now)
    keys += target_read.keys_naming_users(p.cur, table, p.changes.target[USERS.name].gone)
    rowids = _to_prove(p, table, keys)
    if len(rowids) > FULL_SHARE * max(p.counts[table.name], 1):
        return _full(p, table, f"{len(rowids):,} rows changed")
    tally = Tally(table.name)
    loaded, rejected, loads = _prove_rows(p, table, rowids, tally)
    for key in keys:  # a target row changed since the ledger that no source row loads now
        if key not in loads:
            tally.extra += 1
            tally.note(Difference(table.name, compare.key_label(table, key), "extra", target="no source row loads it"))
    if tally.extra == 0 and not _counts_hold(p, table, rowids, loaded, rejected):
        return _full(p, table, "its row counts differ from the ledger's account")
    p.proven += len(rowids)
    return tally


def prove(source, target, log: Callable[[str], None]) -> run.Report:
    """Every row proven: in full where changed since the ledger, else by it; no ledger: the full validate."""
    started = time.monotonic()
    with target_read.read_only(target) as conn, conn.cursor() as cur:
        snapshot, published_by = run.baseline_snapshot(cur)
        found = ledger.usable(cur)
        if isinstance(found, str):
            log(f"cutover: {found}, so every row is validated in full. {SHORTER}")
        else:
            return _prove_since(source, conn, cur, snapshot, published_by, found, log, started)
    return run.validate(source, target, log=log)


def _prove_since(source, conn, cur, snapshot, published_by, found: ledger.Usable, log, started) -> run.Report:
    record = found.record
    with source.connect(snapshot) as sconn, source.connect(record.snapshot) as old:
        row_diff.attach(sconn, record.snapshot)
        changes, source_s, target_s = find_changes(sconn, str(Path(snapshot).resolve()), cur, found.kind)
        p = Proof(sconn, old, conn, cur, snapshot, record, changes, source.rows_per_chunk)
        p.counts.update({t.name: row_diff.count(sconn, t) for t in SOURCE_TABLES})
        began = time.monotonic()
        tallies = [prove_table(p, table) for table in SOURCE_TABLES]
        tallies += [derived.users(sconn, cur, changes.usernames), derived.listings(cur, derived.listed_by_target(conn))]
        tallies += [derived.battles(conn), derived.stray_rejects(cur)]
        total = sum(p.counts.values())
    proof_s = time.monotonic() - began
    by = f"validate run {record.run_id[:8]} (at {record.validated_at:%Y-%m-%d %H:%M:%S} UTC)"
    note = (
        f"{changes.rows():,} rows changed since {by}: {p.proven:,} source rows proven in full; "
        f"{total - p.proven:,} unchanged, proven by its ledger; users, listings, battles proven whole"
        + (f"; full passes: {', '.join(p.full)}" if p.full else "")
        + f" (source compared and its usernames read in {source_s:.1f} s, target digests in {target_s:.1f} s, ∥; "
        f"proof {proof_s:.1f} s)"
    )
    log(f"cutover: {note}")
    reports = tuple(run.TableReport.of(t) for t in tallies)
    mode = f"changes since {by}"
    return run.Report(snapshot, published_by, mode, (note,), reports, time.monotonic() - started)
