"""Cleaning a source table chunk by chunk, into Arrow files of loadable rows and of rejects.

Each chunk (a rowid range of the snapshot, or a list of rowids to redo) is read twice over, by SQLite's
own sorting: the rows stored as their rules expect come typed through ADBC and are judged in Arrow
(`fastpath.py`); the others, and every row the fast path does not judge itself, are read as stored and
judged by the exact rules (`cleaning.py`), gathered over chunks into batches of `EXACT_ROWS`. Memory
holds one chunk, the username -> id map and, for a parent table, the set of its loaded keys; the result
goes to disk as it is made.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from agent_migration.core.artifacts import CleanTable, SourceTable
from agent_migration.core.cleaning import (
    PAYLOAD,
    REJECT,
    SOURCE_KEY,
    SOURCE_ROWID,
    KeyFacts,
    clean_table,
    reason_kind,
    reject_missing_parents,
    remap_users,
)
from agent_migration.core.contract import (
    REJECT_SCHEMA,
    Chunk,
    arrow_schema,
    loaded_path,
    reason_kinds,
    rejects_path,
)
from agent_migration.core.tables import Table
from agent_migration.transform.fastpath import UserMap, fast_column
from agent_migration.transform.payloads import concat, typed_payloads


@dataclass(frozen=True)
class CleaningInputs:
    """What cleaning one table needs beyond its own rows: small maps only."""

    users: pd.DataFrame  # id, username
    parents: dict[str, np.ndarray] = field(default_factory=dict)  # column -> loaded parent keys, sorted
    facts: KeyFacts = field(default_factory=KeyFacts)


@dataclass(frozen=True)
class Outcome:
    """One chunk's result: loadable rows (target schema), rejects (`REJECT_SCHEMA`), and how many of
    its rows the fast path decided."""

    loaded: pa.Table
    rejects: pa.Table
    fast_rows: int


@dataclass(frozen=True)
class Judged:
    """One chunk's typed rows judged: loadable rows, and the rejects decided there, built when called
    (their JSON payloads cost most of a reject, so a thread of their own builds them)."""

    loaded: pa.Table
    rejects: Callable[[], pa.Table]
    fast_rows: int


def fast_chunk(
    table: Table, typed: pa.Table, ctx: CleaningInputs, ids: UserMap
) -> tuple[pa.Table, Callable[[], pa.Table], np.ndarray]:
    """Judge typed rows: (loaded, rejects decided here (see `Judged`), rowids for the exact path)."""
    rowids = typed.column(SOURCE_ROWID).to_numpy()
    exact = np.isin(rowids, ctx.facts.rowids)
    values, reasons, kinds = {}, [], []
    for col in table.migrated:
        got = fast_column(
            col.rule, typed.column(col.source).combine_chunks(), f"{table.source}.{col.source}", col.name, ids
        )
        values[col.name] = got.values
        exact |= got.exact
        if got.reasons is not None:
            reasons.append(got.reasons)
            kinds.append(got.kinds)
    why, kind = _joined(reasons, len(rowids)), _joined(kinds, len(rowids))
    for col, _ in table.parent_refs:  # a row naming a missing or rejected parent, when nothing else is wrong
        named = values[col.name]
        orphan = pc.and_(pc.is_valid(named), pa.array(~_among(named, ctx.parents[col.name])))
        label = f"{table.source}.{col.source}"
        text = concat(f"{label}: names agent ", named, ", which is missing or rejected (got ", named, ")")
        first = pc.and_(orphan, pc.is_null(why))
        why = pc.if_else(first, text, why)
        kind = pc.if_else(
            first, pa.scalar(f"{label}: names agent N, which is missing or rejected", pa.large_string()), kind
        )
    rejected = pc.fill_null(pc.is_valid(why), False).to_numpy(zero_copy_only=False) & ~exact
    keep = ~exact & ~rejected
    loaded = pa.table({c.name: values[c.name] for c in table.migrated}).cast(arrow_schema(table.migrated))
    if not keep.all():  # (a filter copies every column, the chat text included)
        loaded = loaded.filter(pa.array(keep))
    return loaded, partial(_rejects, table, typed, pa.array(rejected), why, kind), rowids[exact]


def _rejects(table: Table, typed: pa.Table, picked: pa.Array, why: pa.Array, kind: pa.Array) -> pa.Table:
    """The picked rows as rejects (`REJECT_SCHEMA`): key, reason, payload, rowid, the reason's kind."""
    rows = typed.filter(picked)
    key = rows.column(table.key_col.source).cast(pa.large_string())
    payloads = typed_payloads(rows, table.source_columns)
    return pa.table(
        [key, why.filter(picked), payloads, rows.column(SOURCE_ROWID), kind.filter(picked)],
        schema=REJECT_SCHEMA,
    )


def _among(values: pa.Array, sorted_keys: np.ndarray) -> np.ndarray:
    """Per value: is it one of `sorted_keys` (a binary search each; nulls are not)."""
    v = pc.fill_null(values, 0).to_numpy(zero_copy_only=False).astype(np.int64)
    at = np.searchsorted(sorted_keys, v).clip(0, max(len(sorted_keys) - 1, 0))
    return (sorted_keys[at] == v) if len(sorted_keys) else np.zeros(len(v), dtype=bool)


def _joined(reasons: list[pa.Array], n: int) -> pa.Array:
    """Every column's reason for a row, joined with "; " in column order (null: no reason)."""
    if not reasons:
        return pa.nulls(n, pa.large_string())
    joined = reasons[0].cast(pa.large_string())
    for more in reasons[1:]:  # (binary_join_element_wise's "skip" drops all-null rows in pyarrow 26)
        both = concat(joined, "; ", more)
        joined = pc.coalesce(both, joined, more.cast(pa.large_string()))
    return joined


def exact_chunk(table: Table, raw: pd.DataFrame, ctx: CleaningInputs) -> tuple[pa.Table, pa.Table]:
    """The exact rules over rows as SQLite stored them: (loaded, rejects)."""
    frame = remap_users(table, clean_table(table, raw, ctx.facts), ctx.users)
    for col, _ in table.parent_refs:
        frame = reject_missing_parents(frame, col.name, pd.Series(ctx.parents[col.name]), table, raw)
    ok = frame[REJECT].isna()
    loaded = pa.Table.from_pandas(
        frame.loc[ok, [c.name for c in table.migrated]],
        schema=arrow_schema(table.migrated),
        preserve_index=False,
    )
    bad = frame[~ok]
    rejects = pa.table(
        {
            "source_key": pa.array(bad[SOURCE_KEY].tolist(), pa.large_string()),
            "reason": pa.array(bad[REJECT].tolist(), pa.large_string()),
            "payload": pa.array(bad[PAYLOAD].tolist(), pa.large_string()),
            "source_rowid": pa.array(bad[SOURCE_ROWID].astype("int64").to_numpy(), pa.int64()),
            "reason_kind": pa.array([reason_kind(r) for r in bad[REJECT]], pa.large_string()),
        },
        schema=REJECT_SCHEMA,
    )
    return loaded, rejects


EXACT_ROWS = 5_000  # rows for the exact rules, gathered over chunks: a call costs ~40 ms of pandas however few


def clean_chunk(
    reader, table: Table, chunk: Chunk, typed: pa.Table, ctx: CleaningInputs, ids: UserMap, profile=None
) -> tuple[Judged, list[int]]:
    """One chunk's typed rows through the fast path: (judged, the rowids of the chunk's rows for the
    exact rules: those the fast path leaves, and those not typical). `profile` (preflight's
    `profiling.TableProfile`) sees the typed rows and the odd rows as stored."""
    loaded, rejects, exact = fast_chunk(table, typed, ctx, ids)
    odd: list[int] = []
    if typed.num_rows < chunk.rows:  # some rows were not typical: the others of the chunk
        odd = reader.odd_rowids(chunk, typed.column(SOURCE_ROWID).to_numpy())
    if profile is not None:
        profile.chunk(typed, reader.rows(odd) if odd else None, odd)
    return Judged(loaded, rejects, typed.num_rows - len(exact)), sorted(set(exact.tolist()) | set(odd))


def exact_outcome(reader, table: Table, rowids: list[int], ctx: CleaningInputs) -> Outcome:
    """The exact rules over the given rows (of one chunk or of several), read as stored."""
    loaded, rejects = exact_chunk(table, reader.rows(rowids), ctx)
    return Outcome(loaded, rejects, 0)


def outcomes(reader, table: Table, chunks: Iterator[Chunk], ctx: CleaningInputs, profile=None) -> Iterator[Outcome]:
    """Every chunk's fast-path outcome, one chunk behind (its rejects are built on a thread while the
    next chunk is judged), and the exact rules' outcomes over `EXACT_ROWS` rows at a time (the last ones
    after the last chunk): together, every row of the chunks once."""
    ids, pending, ahead = UserMap.of(ctx.users), [], None
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="rejects") as builder:
        for chunk, typed in reader.typed(chunks):
            judged, exact = clean_chunk(reader, table, chunk, typed, ctx, ids, profile)
            building = (judged, builder.submit(judged.rejects))
            if ahead is not None:
                yield _outcome(*ahead)
            ahead = building
            pending += exact
            if len(pending) >= EXACT_ROWS:
                yield exact_outcome(reader, table, pending, ctx)
                pending = []
        if ahead is not None:
            yield _outcome(*ahead)
    if pending:
        yield exact_outcome(reader, table, pending, ctx)


def _outcome(judged: Judged, rejects: Future) -> Outcome:
    return Outcome(judged.loaded, rejects.result(), judged.fast_rows)


def clean_stream(
    reader,
    table: Table,
    chunks: Iterator[Chunk],
    ctx: CleaningInputs,
    out: tuple[Path, Path],
    keep_keys: bool,
    log: Callable[[int], None] | None = None,
    profile=None,
    sink: Callable[[pa.Table, pa.Table], None] | None = None,
) -> CleanTable:
    """Clean every chunk, writing loadable rows to `out[0]` and rejects to `out[1]` (Arrow IPC streams);
    `sink` also gets each chunk's loadable rows and rejects (a first load's early copy, see
    `postgres/staging.py`)."""
    counts, reasons, preview, keys = Counter(), Counter(), [], []
    with (
        pa.OSFile(str(out[0]), "wb") as f0,
        pa.OSFile(str(out[1]), "wb") as f1,
        pa.ipc.new_stream(f0, arrow_schema(table.migrated)) as w0,
        pa.ipc.new_stream(f1, REJECT_SCHEMA) as w1,
    ):
        for got in outcomes(reader, table, chunks, ctx, profile):
            if profile is not None:
                profile.rejects(got.rejects)
            w0.write_table(got.loaded)
            w1.write_table(got.rejects)
            if sink is not None:
                sink(got.loaded, got.rejects)
            counts.update(loaded=got.loaded.num_rows, rejected=got.rejects.num_rows, fast=got.fast_rows)
            reasons.update(reason_kinds(got.rejects.column("reason_kind").combine_chunks()))
            if len(preview) < 10 and got.rejects.num_rows:
                preview += (
                    got.rejects.select(["source_key", "reason"]).slice(0, 10 - len(preview)).to_pylist()
                )
            if keep_keys:
                keys.append(got.loaded.column(table.key).to_numpy(zero_copy_only=False))
            if log:
                log(counts["loaded"] + counts["rejected"])
    loaded_keys = (
        np.sort(np.concatenate(keys))
        if keep_keys and keys
        else (np.empty(0, np.int32) if keep_keys else None)
    )
    return CleanTable(
        name=table.name,
        loaded_path=str(out[0]),
        rejects_path=str(out[1]),
        rows=counts["loaded"] + counts["rejected"],
        loaded=counts["loaded"],
        rejected=counts["rejected"],
        fast_rows=counts["fast"],
        reasons=dict(reasons.most_common(10)),
        preview=preview,
        loaded_keys=loaded_keys,
    )


def clean_source(
    reader,
    planned: SourceTable,
    table: Table,
    ctx: CleaningInputs,
    run_dir: str,
    keep_keys: bool,
    log,
    profile=None,
    sink: Callable[[pa.Table, pa.Table], None] | None = None,
) -> CleanTable:
    """Clean every chunk of a planned source table into the run's folder. `reader` reads the snapshot's
    chunks (`sqlite_read.ChunkReader`: typed rows, odd rowids, rows as stored); `profile`: see
    `clean_chunk`; `sink`: see `clean_stream`."""
    out = (Path(loaded_path(run_dir, table)), Path(rejects_path(run_dir, table)))
    log_rows = progress(table, planned.rows, log)
    done = clean_stream(reader, table, iter(planned.chunks), ctx, out, keep_keys, log_rows, profile, sink)
    return replace(done, rowids=planned.rowids, delta=planned.delta, snapshot=planned.snapshot)


def progress(table: Table, total: int, log) -> Callable[[int], None]:
    """Logs rows cleaned of total in quarters, for large tables (each log line is a stored event)."""
    reported = [0]

    def report(done: int) -> None:
        if total > 100_000 and 4 * done // total > reported[0]:
            reported[0] = 4 * done // total
            log(f"{table.source}: {done:,} of {total:,} rows cleaned")

    return report
