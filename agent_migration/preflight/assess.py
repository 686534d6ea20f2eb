"""Preflight: what migrate would do, with nothing written to the target.

One snapshot of the source (kept apart from migrate's backups, in `.migration/preflight/`, so it never
pushes out a re-sync's baseline); every row rule applied with migrate's own code path and chunking
(`streaming.clean_source`, full run) while `profiling` looks at each column; a read-only look at the
target (`postgres/readiness.py`, in a read-only session); and the verdict: what would make migrate fail
(the reject budget, the target), said in the run's last lines.
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import pandas as pd
import psycopg2

from agent_migration.core import text
from agent_migration.core.artifacts import (
    PreflightSource,
    Snapshot,
    SourceTable,
    TableAssessment,
    TargetAssessment,
)
from agent_migration.core.cleaning import derive_users, usernames
from agent_migration.core.errors import MigrationError
from agent_migration.core.tables import SOURCE_TABLES, Table
from agent_migration.postgres import readiness
from agent_migration.postgres.budget import TOP_REASONS, Budget, Share, describe, over_budget, refusal
from agent_migration.postgres.connection import TargetDatabase, redact
from agent_migration.postgres.users import read_existing_users
from agent_migration.preflight.profiling import TableProfile
from agent_migration.source import chunk_size, sqlite_read
from agent_migration.source.database import SourceDatabase
from agent_migration.source.files import check_source_shape, describe_source
from agent_migration.source.usernames import referenced
from agent_migration.transform.streaming import CleaningInputs, clean_source

KEEP = 2  # preflight snapshots kept (the latest run's, for re-running one of its assets)


def home(source: SourceDatabase) -> Path:
    return source.backup_folder.parent / "preflight"


def snapshot(source: SourceDatabase, target: TargetDatabase, run_id: str, log) -> PreflightSource:
    """Copy the source (online backup API, as migrate), check its shape, count it, derive its users."""
    folder = home(source)
    copy = source.model_copy(update={"backup_dir": str(folder), "keep_backups": KEEP}).snapshot(run_id)
    with source.connect(copy) as conn:
        extra = check_source_shape(describe_source(conn), source.sqlite_path)
        stats = {t.source: sqlite_read.table_stats(conn, t) for t in SOURCE_TABLES}
        references = [usernames(t, referenced(conn, t)) for t in SOURCE_TABLES]
    try:  # the ids users already have in the target (they never change); none when it cannot be read
        existing, sequence = read_existing_users(target)
    except (MigrationError, psycopg2.Error):
        existing, sequence = (
            pd.DataFrame({"id": pd.Series(dtype="int64"), "username": pd.Series(dtype=object)}),
            0,
        )
    runs = folder / "runs"
    for old in runs.glob("*") if runs.is_dir() else ():
        shutil.rmtree(old, ignore_errors=True)
    work = runs / run_id
    work.mkdir(parents=True, exist_ok=True)
    log(f"source {source.sqlite_path} copied to {copy}")
    snap = Snapshot(path=str(copy), run_dir=str(work), stats=stats, extra=extra)
    return PreflightSource(snap, derive_users(references, existing, sequence))


def assess_target(target: TargetDatabase) -> TargetAssessment:
    """The target, read only: reachable, and what would make migrate fail there (never raises for it)."""
    where = "the target"
    try:
        where = target.describe()
        with target.connect() as conn, conn.cursor() as cur:
            conn.set_session(readonly=True)
            facts = readiness.assess(cur)
    except MigrationError as exc:
        return TargetAssessment(where, False, {}, (str(exc),))
    except psycopg2.Error as exc:
        return TargetAssessment(where, False, {}, (f"PostgreSQL at {where}: {redact(str(exc).strip())}",))
    return TargetAssessment(where, True, facts, tuple(facts.pop("problems")))


def assess_table(
    source: SourceDatabase, pre: PreflightSource, table: Table, parents: dict[str, TableAssessment], log
) -> TableAssessment:
    """One table through migrate's cleaning (every chunk, both paths), profiled; its files then removed."""
    started, snap = time.monotonic(), pre.snapshot
    with source.connect(snap.path) as conn:
        facts = sqlite_read.key_facts(conn, table)
        per_chunk = chunk_size.rows_per_chunk(conn, table, source.rows_per_chunk)
        chunks = tuple(sqlite_read.range_chunks(conn, table, per_chunk))
    planned = SourceTable(table.source, snap.path, snap.stats[table.source]["rows"], chunks, facts)
    keys = {col.name: parents[parent.name].loaded_keys for col, parent in table.parent_refs}
    is_parent = any(p is table for t in SOURCE_TABLES for _, p in t.parent_refs)
    profile = TableProfile(table)
    with sqlite_read.chunk_reader(source, snap.path, table) as reader:
        done = clean_source(
            reader, planned, table, CleaningInputs(pre.users, keys, facts), snap.run_dir, is_parent, log, profile
        )
    for path in (done.loaded_path, done.rejects_path):  # nothing of it is published
        Path(path).unlink(missing_ok=True)
    return TableAssessment(
        name=table.name,
        source=table.source,
        rows=done.rows,
        loaded=done.loaded,
        rejected=done.rejected,
        reasons=dict(profile.reasons.most_common()),
        below=dict(profile.below),
        samples=profile.samples,
        columns=profile.result(),
        seconds=round(time.monotonic() - started, 3),
        loaded_keys=done.loaded_keys,
    )


def share(t: TableAssessment) -> Share:
    return Share(t.source, t.rows, t.rejected, t.reasons, t.below)


def blockers(target: TargetAssessment, tables: list[TableAssessment], budget: Budget) -> list[str]:
    """Why migrate would fail, root causes first; empty when it would succeed."""
    every = [share(t) for t in tables]
    over = over_budget(every, budget)
    found = [refusal(over, every, budget)] if over else []
    return found + list(target.problems)


def checks_of(t: TableAssessment, budget: Budget) -> list[int]:
    """[passed, warned, failed] of a table's preflight checks (`within_reject_budget`, `rows_rejected`)."""
    over = share(t).over(budget)
    return [int(not over) + int(not t.rejected), int(bool(t.rejected)), int(over)]


def example(kind: str, samples: list[dict]) -> str:
    """`key 1, got 281474976710757`: the first sample row of a reason kind, with its value."""
    if not samples:
        return ""
    label = kind.partition(": ")[0]
    part = next((p for p in samples[0]["reason"].split("; ") if p.startswith(f"{label}: ")), "")
    got = re.search(r"\(got (.*)\)$", part)
    return f"key {samples[0]['source_key']}" + (f", got {got.group(1)}" if got else "")


def reason_lines(tables: list[TableAssessment]) -> list[str]:
    """Per table with rejects: its top reasons, each with a sample row."""
    lines = []
    for t in tables:
        ranked = sorted(t.reasons.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_REASONS]
        said = [describe(k, n, t.below.get(k, 0), example(k, t.samples.get(k, []))) for k, n in ranked]
        if said:
            lines.append(f"{t.source}: " + "; ".join(said))
    return lines


def misfits(tables: list[TableAssessment]) -> list[str]:
    """The columns whose values do not all fit their target type (integers' range, text's VARCHAR)."""
    found = []
    for t in tables:
        for name, col in t.columns.items():
            if col.get("fits") is False:
                seen = f"min {col['min']}, max {col['max']}" if "min" in col else f"longest {col['longest']}"
                found.append(f"{name} ({col['target']}): {seen}")
    return found


def summary(
    pre: PreflightSource,
    target: TargetAssessment,
    tables: list[TableAssessment],
    budget: Budget,
    why: list[str],
    connect: str,
) -> str:
    """The preflight run's last lines: per table, reasons, misfit columns, the target, the verdict."""
    heads = ["table", "source rows", "would load", "would reject", "share", "checks ok/warn/fail"]
    rows = [
        [
            t.source,
            t.rows,
            t.loaded,
            t.rejected,
            f"{share(t).share:.1%}",
            text.checks_cell(checks_of(t, budget)),
        ]
        for t in tables
    ]
    facts, left, bad = target.facts, text.not_carried(pre.snapshot.extra), misfits(tables)
    state = (
        f"reachable as {facts['user']} (PostgreSQL {facts['server_version']}), next migrate: {facts['next_migrate']}"
        if target.reachable
        else "NOT reachable"
    )
    return "\n".join(
        [
            "preflight: what migrate would do with this source (nothing was written to the target)",
            text.text_table(heads, rows),
            *reason_lines(tables),
            f"columns outside their target type: {'; '.join(bad)}" if bad else "every column fits its type",
            f"reject budget: {budget.share:.0%} of each table's rows ({budget.setting})",
            f"target {target.where}: {state}",
            f"not carried by the plan (left behind): {', '.join(left)}" if left else "not carried: nothing",
            "verdict: the ERROR line that follows" if why else "migrate would succeed",
            "every reason with sample rows, and each column against its type: the preflight group's assets "
            f"in the UI; after migrate, {connect}",
        ]
    )
