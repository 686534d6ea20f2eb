"""Writing the rollback file: the source's own schema, rows, restored rejects, sequences, published
under its name only when complete.

Rejects are restored through an untyped staging table, so each value keeps the storage class and the
bytes the payload carries; inserting them into the app table then applies the same column affinity that
the app's own insert once did (idempotent on a stored value), so the file holds what the source held.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
from collections.abc import Iterable
from pathlib import Path

from agent_migration.core.errors import MigrationError
from agent_migration.core.tables import Table
from agent_migration.core.values import from_json_safe, sum_units
from agent_migration.source.files import sqlite_ident

CONFLICTS = "rollback_conflicts"
_STAGE = "temp.restore_stage"
_META = ("__source_key", "__reason", "__payload")
_SQLITE_TYPE = {"SERIAL": "INTEGER", "INTEGER": "INTEGER", "BOOLEAN": "BOOLEAN", "TIMESTAMP": "DATETIME"}


def temporary_path(path: Path) -> Path:
    """Where the file is written until complete: beside `path`, so the final rename is atomic."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def open_file(tmp: Path) -> sqlite3.Connection:
    tmp.unlink(missing_ok=True)
    conn = sqlite3.connect(tmp, isolation_level=None)
    for pragma in ("journal_mode=OFF", "synchronous=OFF", "cache_size=-65536", "temp_store=MEMORY"):
        conn.execute(f"PRAGMA {pragma}")
    conn.execute("BEGIN")
    return conn


def publish_file(tmp: Path, path: Path) -> None:
    """Give the complete file its name, never replacing a file that appeared there meanwhile."""
    try:
        os.link(tmp, path)  # fails if `path` exists, unlike a rename
    except FileExistsError:
        raise MigrationError(
            f"EXPORT_SQLITE_PATH {str(path)!r} appeared while the export ran: it was left as it is, and "
            "the export was not written. Choose a new path."
        ) from None
    finally:
        tmp.unlink(missing_ok=True)


def create_tables(conn, recorded: list[tuple], reserved: Iterable[str]) -> list[str]:
    """The source's tables, from its recorded statements; -> their names."""
    names = [name for kind, name, _, _ in recorded if kind == "table"]
    if clash := sorted(set(names) & set(reserved)):
        raise MigrationError(
            f"the recorded source schema has tables named {', '.join(clash)}, which the rollback file keeps "
            "for PostgreSQL's own tables; rename them in a copy of the source and migrate again."
        )
    for kind, _, _, statement in recorded:
        if kind == "table":
            conn.execute(statement)
    return names


def create_after_data(conn, recorded: list[tuple]) -> None:
    """Indexes, views and triggers, once the rows are in (so no trigger fires on the restore)."""
    for kind, _, _, statement in recorded:
        if kind in ("index", "view", "trigger"):
            conn.execute(statement)


def create_plain_table(conn, table: Table) -> None:
    """A PostgreSQL-only table, with PostgreSQL's column names (DECIMAL as REAL, JSONB as TEXT)."""
    cols = []
    for col in table.columns:
        t = col.pg_type
        kind = "REAL" if t.startswith("DECIMAL") else _SQLITE_TYPE.get(t, "TEXT")
        cols.append(f"{sqlite_ident(col.name)} {kind}" + (" PRIMARY KEY" if col.primary_key else ""))
    conn.execute(f"CREATE TABLE {sqlite_ident(table.name)} ({', '.join(cols)})")


def create_conflicts(conn) -> None:
    conn.execute(
        f"CREATE TABLE {CONFLICTS} (source_table TEXT NOT NULL, source_key TEXT, reason TEXT, payload TEXT)"
    )


def insert_rows(conn, table_name: str, columns: list[str], rows: list[tuple]) -> None:
    names = ", ".join(map(sqlite_ident, columns))
    marks = ", ".join("?" * len(columns))
    conn.executemany(f"INSERT INTO {sqlite_ident(table_name)} ({names}) VALUES ({marks})", rows)


def _staged(row: tuple, columns: list[str]) -> list:
    """One reject as staging parameters: per column (is TEXT from bytes, value), then key, reason, payload."""
    key, reason, payload = row
    values = json.loads(payload)
    params: list = []
    for name in columns:
        value, as_text = from_json_safe(values.get(name))
        params += [as_text, value]
    return [*params, key, reason, payload]


class Restorer:
    """Restores one app table's rejects from their payloads; a reject whose primary key PostgreSQL now
    holds goes to `rollback_conflicts` instead (the PostgreSQL row wins)."""

    def __init__(self, conn, table: Table, sums: tuple[str, ...]):
        self.conn, self.table = conn, table
        self.columns = table.source_columns
        self.restored = self.conflicts = 0
        self.sums = {name: 0 for name in sums}  # the restored rows' totals (money in cents)
        quoted = ", ".join(map(sqlite_ident, [*self.columns, *_META]))
        conn.execute(f"CREATE TEMP TABLE restore_stage ({quoted})")  # untyped: values stay as bound
        self.stage_sql = self._numbered()
        key = sqlite_ident(table.key_col.source)
        self.held = f"EXISTS (SELECT 1 FROM main.{sqlite_ident(table.source)} m WHERE m.{key} = s.{key})"

    def add(self, rows: list[tuple]) -> None:
        self.conn.executemany(self.stage_sql, [_staged(r, self.columns) for r in rows])
        self._flush()

    def _numbered(self) -> str:
        """The staging INSERT with each column's (flag, value) pair numbered explicitly."""
        parts, n = [], 1
        for _ in self.columns:
            parts.append(f"CASE WHEN ?{n} THEN CAST(?{n + 1} AS TEXT) ELSE ?{n + 1} END")
            n += 2
        return f"INSERT INTO {_STAGE} VALUES ({', '.join(parts)}, ?{n}, ?{n + 1}, ?{n + 2})"

    def _flush(self) -> None:
        conn, table = self.conn, self.table
        names = ", ".join(map(sqlite_ident, self.columns))
        for col_name in self.sums:  # the restored rows' totals, for the file's reconciliation
            source = sqlite_ident(table.col(col_name).source)
            values = (v for (v,) in conn.execute(f"SELECT {source} FROM {_STAGE} s WHERE NOT {self.held}"))
            self.sums[col_name] += int(sum_units(table.col(col_name).rule, values))
        self.conflicts += conn.execute(
            f"INSERT INTO {CONFLICTS} SELECT ?, {', '.join(_META)} FROM {_STAGE} s WHERE {self.held}",
            (table.source,),
        ).rowcount
        self.restored += conn.execute(
            f"INSERT INTO main.{sqlite_ident(table.source)} ({names}) SELECT {names} FROM {_STAGE} s"
            f" WHERE NOT {self.held}"
        ).rowcount
        conn.execute(f"DELETE FROM {_STAGE}")

    def close(self) -> None:
        self.conn.execute(f"DROP TABLE {_STAGE}")


def autoincrement_tables(recorded: list[tuple]) -> set[str]:
    return {
        name for kind, name, _, s in recorded if kind == "table" and re.search(r"\bAUTOINCREMENT\b", s, re.I)
    }


def advance_sequence(conn, table_name: str, last_id: int) -> None:
    """sqlite_sequence past every id the file holds and every id PostgreSQL handed out."""
    conn.execute(
        "INSERT INTO sqlite_sequence (name, seq) SELECT ?, 0 WHERE NOT EXISTS"
        " (SELECT 1 FROM sqlite_sequence WHERE name = ?)",
        (table_name, table_name),
    )
    conn.execute(
        f"UPDATE sqlite_sequence SET seq = max(seq, ?, (SELECT COALESCE(max(rowid), 0) FROM {sqlite_ident(table_name)}))"
        " WHERE name = ?",
        (last_id, table_name),
    )
