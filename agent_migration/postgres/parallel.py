"""A first load on several connections, published atomically by a swap.

One transaction cannot span connections, so a first load (every app table empty) is built apart: in the
schema `migration_stage`, over `connections` committing connections, each table is copied (binary COPY),
then its secondary indexes and foreign keys are built and it is analyzed, each statement as soon as what
it needs is there, so the server's cores build one table's indexes while another table is still copied.
The caller's transaction, which holds the advisory lock and the cutover gate, then swaps the built tables
in for the empty ones (`swap`) and records the run: until it commits, a user sees the previous state. A
run killed before that leaves only `migration_stage`, which the next run drops first.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from psycopg2 import sql

from agent_migration.core.tables import MARKETPLACE_LISTINGS, TARGET_TABLES, Table
from agent_migration.postgres import ddl, faults, merge, staging
from agent_migration.postgres.copy import Rows, copy_batches
from agent_migration.postgres.staging import STAGE
from agent_migration.postgres.staging import in_stage as _in_stage
from agent_migration.postgres.workers import Task, run_tasks

REJECTS = "rejected_rows"


def _staged_rejects(keep: set[str]) -> list[str]:
    """The source tables whose rejects the cleaning copied into the stage (markers `rejected_rows:<t>`)."""
    return [name.split(":", 1)[1] for name in keep if name.startswith(f"{REJECTS}:")]


def prepare(cur, keep: set[str]) -> None:
    """The stage schema for this build: the tables (and rejects) copied while cleaning (`keep`) stay,
    whatever else is there (a failed or killed run's leftovers) goes. The markers go too: a table being
    built is no longer as its copy left it, so a retried publish copies every table again."""
    staging.create_markers(cur)
    cur.execute(sql.SQL("DELETE FROM {}").format(_in_stage(staging.MARKERS)))
    rejects_kept = _staged_rejects(keep)
    cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s", (STAGE,))
    for (name,) in cur.fetchall():
        if name not in keep | {staging.MARKERS} | ({REJECTS} if rejects_kept else set()):
            cur.execute(sql.SQL("DROP TABLE {} CASCADE").format(_in_stage(name)))
    for table in TARGET_TABLES:  # without foreign keys and secondary indexes: built after the copy
        if table.name not in keep:
            cur.execute(ddl.create_table(table, STAGE, references=False, keys=False))
    if rejects_kept:  # the rejects of the tables not kept are a failed run's: gone
        where = sql.SQL("DELETE FROM {} WHERE NOT (source_table = ANY(%s))").format(_in_stage(REJECTS))
        cur.execute(where, (rejects_kept,))
    else:
        cur.execute(ddl.create_rejects_table(_in_stage(REJECTS)))


def _may_fail(_rows: int) -> None:
    faults.here("copy")


def _copy(name: str, parts: list[Rows], types: dict[str, str]) -> Callable:
    """The COPYs filling one stage table, frozen: after a TRUNCATE in the same transaction (FREEZE needs
    it), the index builds and the first checks read the rows without setting each one's hint bits."""

    def run(cur) -> None:
        cur.execute(sql.SQL("TRUNCATE {}").format(_in_stage(name)))
        for rows in parts:
            copy_batches(cur, _in_stage(name), rows.full_schema, rows.batches(), types, _may_fail, freeze=True)

    return run


def _statements(statements: list[sql.Composable], point: str) -> Callable:
    def run(cur) -> None:
        faults.here(point)
        for statement in statements:
            cur.execute(statement)

    return run


def _fill_listings(filled: dict[str, int]) -> Callable:
    """The marketplace listings made from the staged agents, as `merge.sync_listings` makes them."""

    def run(cur) -> None:
        filled.update(merge.sync_listings(cur))

    return run


def _first_task(table: Table, frames: dict[str, Rows], staged: set[str] | frozenset[str], types: dict, filled: dict) -> Task | None:
    """What fills a stage table: the copy of its rows; for the listings, their making from the agents
    (once copied); none for a table the cleaning staged or one that stays empty."""
    copied = set(frames) - staged
    if table.name in copied:
        return Task(f"copy {table.name}", _copy(table.name, [frames[table.name]], types), phase="copy")
    if table is MARKETPLACE_LISTINGS:
        after = ("copy agents",) if "agents" in copied else ()
        return Task(f"fill {table.name}", _fill_listings(filled), after, phase="copy")
    return None


def _table_tasks(table: Table, first: Task | None) -> list[Task]:
    """Fill (`_first_task`); then the keys (one statement: ALTER TABLE locks the table whole); then each
    secondary index and each foreign key's validation, which lock the table lightly enough to run side by
    side (a foreign key also waits for the referenced table's keys); then ANALYZE."""
    name = table.name
    tasks = [first] if first is not None else []
    keys = f"keys {name}"
    tasks.append(Task(keys, _statements([*ddl.key_constraints(table, STAGE)], "index"), tuple(t.name for t in tasks), "indexes"))
    for index in table.indexes:
        tasks.append(Task(f"index {index.name}", _statements([ddl.create_index(table, index, STAGE)], "index"), (keys,), "indexes"))
    for col, add, validate in ddl.foreign_keys(table, STAGE):
        parent = col.references.split("(")[0]
        needs = (keys,) if parent == name else (keys, f"keys {parent}")
        tasks.append(Task(f"foreign key {name}.{col.name}", _statements([add, validate], "index"), needs, "indexes"))
    analyze = _statements([sql.SQL("ANALYZE {}").format(_in_stage(name))], "index")
    tasks.append(Task(f"analyze {name}", analyze, tuple(t.name for t in tasks if t is not first), "indexes"))
    return tasks


def _copy_rejects(parts: list[Rows], types: dict[str, str], truncate: bool) -> Callable:
    """The COPYs of the rejects the cleaning did not stage; after a TRUNCATE (frozen) unless some are."""
    if truncate:
        return _copy(REJECTS, parts, types)

    def run(cur) -> None:
        for rows in parts:
            copy_batches(cur, _in_stage(REJECTS), rows.full_schema, rows.batches(), types, _may_fail)

    return run


def _source_table(rows: Rows) -> str:
    return dict(rows.constants)["source_table"]


def _reject_tasks(rejects: list[Rows], types: dict[str, str], staged: set[str] | frozenset[str]) -> list[Task]:
    kept = set(_staged_rejects(set(staged)))
    parts = [rows for rows in rejects if rows.count and _source_table(rows) not in kept]
    copies = [Task("copy rejects", _copy_rejects(parts, types, not kept), phase="copy")] if parts else []
    after = tuple(t.name for t in copies)
    index = sql.SQL("CREATE INDEX rejected_rows_row ON {} (source_table, source_rowid)").format(_in_stage(REJECTS))
    analyze = sql.SQL("ANALYZE {}").format(_in_stage(REJECTS))
    return copies + [
        Task("index rejected_rows_row", _statements([index], "index"), after, "indexes"),
        Task("analyze rejected_rows", _statements([analyze], "index"), (*after, "index rejected_rows_row"), "indexes"),
    ]


def tasks_for(
    frames: dict[str, Rows],
    columns: dict[str, dict[str, str]],
    rejects: list[Rows],
    reject_types: dict[str, str],
    staged: set[str] | frozenset[str] = frozenset(),
    filled: dict[str, int] | None = None,
) -> list[Task]:
    """Copies largest first (the longest starts at once); a table's builds are listed before the copies
    still waiting, so a worker builds a copied table while another copies the next one. A table the
    cleaning `staged` is not copied again; `filled` gets the listings made (`_fill_listings`)."""
    filled = {} if filled is None else filled
    by_size = sorted(TARGET_TABLES, key=lambda t: -(frames[t.name].count if t.name in frames else 0))
    tasks = [
        task
        for table in by_size
        for task in _table_tasks(table, _first_task(table, frames, staged, columns.get(table.name, {}), filled))
    ]
    tasks += _reject_tasks(rejects, reject_types, staged)
    return [t for t in tasks if t.phase != "copy"] + [t for t in tasks if t.phase == "copy"]


@dataclass(frozen=True)
class Built:
    seconds: dict[str, float]  # per phase
    staged: set[str]  # the tables the cleaning had copied into the stage
    listings: dict[str, int]  # the marketplace listings made (`merge.sync_listings`'s counts)
    tasks: dict[str, float]  # seconds per task (copy, keys, index, foreign key, analyze)

    def longest(self, n: int = 4) -> str:
        return ", ".join(f"{name} {s:.1f} s" for name, s in sorted(self.tasks.items(), key=lambda kv: -kv[1])[:n])


def build(connect, frames, columns, rejects, types, workers: int) -> Built:
    """Build every table in the stage schema over `workers` connections; a table the cleaning already
    copied there (`staging`) is not copied again."""
    started = time.perf_counter()
    with connect() as conn, conn.cursor() as cur:
        mirrored = {name: (rows.path, rows.count) for name, rows in frames.items() if rows.path}
        mirrored |= {staging.rejects_marker(_source_table(r)): (r.path, r.count) for r in rejects if r.path}
        keep = staging.staged(cur, mirrored)
        prepare(cur, keep)
        conn.commit()
    seconds = {"stage": time.perf_counter() - started}
    filled: dict[str, int] = {}
    tasks = tasks_for(frames, columns, rejects, types, keep, filled)
    started = time.perf_counter()
    timings = run_tasks(tasks, connect, workers, setup=lambda cur: cur.execute(f"SET search_path TO {STAGE}"))
    seconds["parallel"] = time.perf_counter() - started
    for task in tasks:
        seconds[task.phase] = seconds.get(task.phase, 0.0) + timings.get(task.name, 0.0)
    return Built(seconds, keep, filled, timings)


def swap(cur) -> None:
    """In the caller's transaction: the built tables replace the empty app tables and rejected_rows."""
    faults.here("swap")
    names = sql.SQL(", ").join(
        sql.SQL("{}.{}").format(sql.Identifier(ddl.SCHEMA), sql.Identifier(t.name)) for t in TARGET_TABLES
    )
    cur.execute(sql.SQL("DROP TABLE {}").format(names))
    cur.execute("DROP TABLE migration.rejected_rows")
    for table in TARGET_TABLES:
        cur.execute(sql.SQL("ALTER TABLE {} SET SCHEMA {}").format(_in_stage(table.name), sql.Identifier(ddl.SCHEMA)))
    cur.execute(sql.SQL("ALTER TABLE {} SET SCHEMA migration").format(_in_stage(REJECTS)))
    cur.execute(sql.SQL("DROP TABLE {}").format(_in_stage(staging.MARKERS)))
    cur.execute(sql.SQL("DROP SCHEMA {}").format(sql.Identifier(STAGE)))
    faults.here("swapped")
