"""Rollback: PostgreSQL's current state written back into a new SQLite file the old app runs on unchanged.

The app tables keep the source's own schema (recorded by every publish in `migration.source_schema`),
their rows come back in the app's conventions (`pg_read`), and every rejected row is restored from its
payload exactly as the source held it (`sqlite_write.Restorer`). PostgreSQL is read in one read-only
REPEATABLE READ snapshot and never written; the file appears under its name only when complete.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from agent_migration.core.artifacts import ExportTable, RollbackExport
from agent_migration.core.errors import MigrationError
from agent_migration.core.tables import BY_SOURCE, SOURCE_TABLES, TARGET_TABLES, Table
from agent_migration.core.values import sum_units
from agent_migration.postgres.connection import TargetDatabase
from agent_migration.rollback import pg_read
from agent_migration.rollback import sqlite_write as w
from agent_migration.source.files import sqlite_ident

PG_ONLY = tuple(t for t in TARGET_TABLES if not t.source)  # users, battles, marketplace_listings
SUMS = {"user_balance": ("coins",), "payments": ("coins", "amount")}  # reconciled in the file


def file_name(table: Table) -> str:
    return table.source or table.name


def _file_column(table: Table, name: str) -> str:
    return table.col(name).source if table.source else name


def read_state(cur) -> tuple[list, dict, dict]:
    """(recorded source schema, PostgreSQL totals per table, last id per sequence), in the snapshot."""
    recorded = pg_read.recorded_schema(cur)
    missing = [
        t.source for t in SOURCE_TABLES if not any(k == "table" and n == t.source for k, n, _, _ in recorded)
    ]
    if missing:
        raise MigrationError(
            "the target holds no recorded source schema for "
            + ", ".join(missing)
            + " (migration.source_schema "
            "is filled by every publish of this version): run migrate once before the cutover, then export."
        )
    totals = {t.name: pg_read.totals(cur, t, SUMS.get(t.name, ())) for t in TARGET_TABLES}
    last = {t.name: pg_read.last_id(cur, t) for t in SOURCE_TABLES}
    return recorded, totals, last


def write_file(pg, conn, recorded: list, last: dict, chunk_rows: int, log) -> dict[str, w.Restorer]:
    """Every table's rows and every reject into the open file (in its one transaction)."""
    w.create_tables(conn, recorded, [t.name for t in PG_ONLY] + [w.CONFLICTS])
    for table in PG_ONLY:
        w.create_plain_table(conn, table)
    w.create_conflicts(conn)
    restorers = {}
    for table in TARGET_TABLES:
        app = table.source is not None
        columns = [_file_column(table, c.name) for c in pg_read.columns_of(table, app)]
        for rows in pg_read.table_rows(pg, table, app, chunk_rows):
            w.insert_rows(conn, file_name(table), columns, rows)
        if app:
            restorer = restorers[table.name] = w.Restorer(conn, table, SUMS.get(table.name, ()))
            for rows in pg_read.rejects(pg, table.source, chunk_rows):
                restorer.add(rows)
            restorer.close()
            log(
                f"{table.source}: rows written, {restorer.restored:,} rejects restored, {restorer.conflicts:,} conflicts"
            )
    for name in w.autoincrement_tables(recorded) & {t.source for t in SOURCE_TABLES}:
        w.advance_sequence(conn, name, last[BY_SOURCE[name].name])
    w.create_after_data(conn, recorded)
    return restorers


def file_totals(path: Path, table: Table) -> dict:
    """Rows and totals read back from the finished file (money in cents)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    conn.text_factory = bytes  # restored text need not be UTF-8
    try:
        name = sqlite_ident(file_name(table))
        found = {"rows": conn.execute(f"SELECT count(*) FROM {name}").fetchone()[0], "sums": {}}
        for col_name in SUMS.get(table.name, ()):
            column = sqlite_ident(_file_column(table, col_name))
            values = (v for (v,) in conn.execute(f"SELECT {column} FROM {name}"))
            found["sums"][col_name] = int(sum_units(table.col(col_name).rule, values))
        return found
    finally:
        conn.close()


def summarize(path: Path, totals: dict, restorers: dict) -> tuple[ExportTable, ...]:
    out = []
    for table in TARGET_TABLES:
        pg, found = totals[table.name], file_totals(path, table)
        r = restorers.get(table.name)
        expected = {k: v + (r.sums[k] if r else 0) for k, v in pg["sums"].items()}
        out.append(
            ExportTable(
                name=file_name(table),
                pg_rows=pg["rows"],
                rejects=pg["rejects"],
                restored=r.restored if r else 0,
                conflicts=r.conflicts if r else 0,
                file_rows=found["rows"],
                sums_expected=expected,
                sums_file=found["sums"],
            )
        )
    return tuple(out)


def export(target: TargetDatabase, path: Path, chunk_rows: int, log) -> RollbackExport:
    """Write PostgreSQL's current state to the new file `path` (which must not exist) and verify it."""
    started = time.monotonic()
    tmp = w.temporary_path(path)
    try:
        with target.connect() as pg:
            pg.set_session(isolation_level="REPEATABLE READ", readonly=True)
            with pg.cursor() as cur:
                recorded, totals, last = read_state(cur)
            conn = w.open_file(tmp)
            try:
                restorers = write_file(pg, conn, recorded, last, chunk_rows, log)
                conn.execute("COMMIT")
            finally:
                conn.close()
            pg.rollback()  # read only: nothing to commit
        w.publish_file(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    tables = summarize(path, totals, restorers)
    return RollbackExport(str(path), tables, round(time.monotonic() - started, 3))
