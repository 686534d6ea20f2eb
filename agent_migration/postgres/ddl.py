"""The target schema, rendered from `core/tables.py`: the app tables exactly as the plan has them, plus the
`migration` schema that holds rejected rows and bookkeeping. Creating it is idempotent."""

from __future__ import annotations

from psycopg2 import sql

from agent_migration.core.tables import TARGET_TABLES, Col, Index, Table

SCHEMA = "public"
BOOKKEEPING = "migration"

# The plan's SQL type -> what PostgreSQL's format_type() reports for it (to compare an existing table).
_REPORTED = {
    "SERIAL": "integer",
    "INTEGER": "integer",
    "TEXT": "text",
    "JSONB": "jsonb",
    "BOOLEAN": "boolean",
    "TIMESTAMP": "timestamp without time zone",
}


def reported_type(col: Col) -> str:
    t = col.sql_type
    if t.startswith("VARCHAR("):
        return "character varying" + t[len("VARCHAR") :]
    if t.startswith("DECIMAL("):
        return "numeric" + t[len("DECIMAL") :].replace(" ", "")
    return _REPORTED[t]


def references_sql(col: Col) -> sql.Composable:
    table, column = col.references.rstrip(")").split("(")
    on_delete = f" ON DELETE {col.on_delete}" if col.on_delete else ""
    return sql.SQL("REFERENCES {}({}){}").format(sql.Identifier(table), sql.Identifier(column), sql.SQL(on_delete))


def column_sql(col: Col, references: bool = True, keys: bool = True) -> sql.Composable:
    parts = [sql.Identifier(col.name), sql.SQL(col.sql_type)]
    if col.primary_key and keys:
        parts.append(sql.SQL("PRIMARY KEY"))
    if col.references and references:
        parts.append(references_sql(col))
    if col.unique and keys:
        parts.append(sql.SQL("UNIQUE"))
    if col.not_null:
        parts.append(sql.SQL("NOT NULL"))
    if col.default is not None:
        parts.append(sql.SQL("DEFAULT " + col.default))
    if col.check_sql:
        parts.append(sql.SQL("CHECK ({})").format(sql.SQL(col.check_sql)))
    return sql.SQL(" ").join(parts)


def create_table(table: Table, schema: str = SCHEMA, references: bool = True, keys: bool = True) -> sql.Composable:
    """The table as the plan has it; without `references` no foreign keys (see `foreign_keys`), without
    `keys` no primary key and unique constraints (see `key_constraints`): a table built in steps."""
    return sql.SQL("CREATE TABLE IF NOT EXISTS {}.{} (\n  {}\n)").format(
        sql.Identifier(schema),
        sql.Identifier(table.name),
        sql.SQL(",\n  ").join(column_sql(c, references, keys) for c in table.columns),
    )


def _alter(table: Table, schema: str) -> sql.Composable:
    return sql.SQL("ALTER TABLE {}.{}").format(sql.Identifier(schema), sql.Identifier(table.name))


# Constraints added after a bulk load are named as PostgreSQL names them inline (`<table>_pkey`,
# `<table>_<column>_key`, `<table>_<column>_fkey`): a table built in steps has the catalog of one created whole.
def key_constraints(table: Table, schema: str = SCHEMA) -> list[sql.Composable]:
    """The primary key and unique constraints as ALTER TABLE statements."""
    found = []
    for c in table.columns:
        if c.primary_key or c.unique:
            name, kind = (f"{table.name}_pkey", "PRIMARY KEY") if c.primary_key else (f"{table.name}_{c.name}_key", "UNIQUE")
            found.append(
                sql.SQL("{} ADD CONSTRAINT {} {} ({})").format(
                    _alter(table, schema), sql.Identifier(name), sql.SQL(kind), sql.Identifier(c.name)
                )
            )
    return found


def foreign_keys(table: Table, schema: str = SCHEMA) -> list[tuple[Col, sql.Composable, sql.Composable]]:
    """Per foreign key: its column, the statement adding it NOT VALID (instant), and the one validating it
    (which locks the tables less than adding it valid: index builds on the table go on meanwhile). The
    referenced table is found on the search_path, as in `create_table`."""
    found = []
    for c in table.columns:
        if c.references:
            name = sql.Identifier(f"{table.name}_{c.name}_fkey")
            add = sql.SQL("{} ADD CONSTRAINT {} FOREIGN KEY ({}) {} NOT VALID").format(
                _alter(table, schema), name, sql.Identifier(c.name), references_sql(c)
            )
            found.append((c, add, sql.SQL("{} VALIDATE CONSTRAINT {}").format(_alter(table, schema), name)))
    return found


def create_index(table: Table, index: Index, schema: str = SCHEMA) -> sql.Composable:
    return sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {}.{}{} ({})").format(
        sql.Identifier(index.name),
        sql.Identifier(schema),
        sql.Identifier(table.name),
        sql.SQL(f" USING {index.using}" if index.using else ""),
        sql.SQL(", ").join(map(sql.Identifier, index.columns)),
    )


def create_rejects_table(name: sql.Composable) -> sql.Composable:
    """A table of the shape of `migration.rejected_rows` (as `BOOKKEEPING_DDL` makes it, columns in its
    order), for a first load's stage: made without reading the real one, which may not exist yet."""
    return sql.SQL(
        "CREATE TABLE {} (source_table TEXT NOT NULL, source_key TEXT, reason TEXT NOT NULL, payload JSON NOT NULL, "
        "run_id TEXT, rejected_at TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'), source_rowid BIGINT, "
        "reason_kind TEXT)"
    ).format(name)


BOOKKEEPING_DDL = """
CREATE SCHEMA IF NOT EXISTS migration;
CREATE TABLE IF NOT EXISTS migration.rejected_rows (
  source_table TEXT NOT NULL,
  source_key TEXT,
  reason TEXT NOT NULL,
  payload JSON NOT NULL,
  run_id TEXT,
  rejected_at TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
  source_rowid BIGINT
);
ALTER TABLE migration.rejected_rows ADD COLUMN IF NOT EXISTS source_rowid BIGINT;
ALTER TABLE migration.rejected_rows ADD COLUMN IF NOT EXISTS reason_kind TEXT;
-- json, not jsonb: kept as written and only validated; parsing millions of payloads into jsonb was the
-- server's largest cost in a reject-heavy load. A table from an older version is converted once.
DO $$ BEGIN
  IF (SELECT atttypid = 'jsonb'::regtype FROM pg_attribute
      WHERE attrelid = 'migration.rejected_rows'::regclass AND attname = 'payload') THEN
    ALTER TABLE migration.rejected_rows ALTER COLUMN payload TYPE json USING payload::json;
  END IF;
END $$;
-- By table and source row: the checks, a sample's rejects and a re-sync's deletes find rows without a scan.
DROP INDEX IF EXISTS migration.rejected_rows_table;
CREATE INDEX IF NOT EXISTS rejected_rows_row ON migration.rejected_rows (source_table, source_rowid);
CREATE TABLE IF NOT EXISTS migration.source_stats (
  source_table TEXT PRIMARY KEY,
  source_rows BIGINT NOT NULL,
  sums JSONB NOT NULL DEFAULT '{}',
  snapshot TEXT,
  run_id TEXT,
  taken_at TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'UTC')
);
DO $$ BEGIN  -- only when missing: ALTER TABLE would lock the table even with IF NOT EXISTS
  IF NOT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = 'migration'
                 AND table_name = 'source_stats' AND column_name = 'max_id') THEN
    ALTER TABLE migration.source_stats ADD COLUMN max_id BIGINT;
  END IF;
END $$;
CREATE TABLE IF NOT EXISTS migration.source_schema (
  position INTEGER PRIMARY KEY,
  type TEXT NOT NULL,
  name TEXT NOT NULL,
  tbl_name TEXT NOT NULL,
  sql TEXT NOT NULL,
  run_id TEXT
);
CREATE TABLE IF NOT EXISTS migration.runs (
  run_id TEXT PRIMARY KEY,
  locked_at TIMESTAMP NOT NULL,
  finished_at TIMESTAMP NOT NULL DEFAULT (clock_timestamp() AT TIME ZONE 'UTC'),
  snapshot TEXT,
  changes JSONB NOT NULL,
  spec TEXT
);
ALTER TABLE migration.runs ADD COLUMN IF NOT EXISTS spec TEXT;
CREATE TABLE IF NOT EXISTS migration.cutover (
  cut_at TIMESTAMP NOT NULL DEFAULT (clock_timestamp() AT TIME ZONE 'UTC'),
  run_id TEXT NOT NULL,
  source_backup TEXT,
  row_counts JSONB NOT NULL
);
"""


def existing_shape(cur) -> dict[str, dict[str, str]]:
    """The app tables already in the target: table -> column -> format_type()."""
    cur.execute(
        """
        SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod)
        FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = %s AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped AND c.relname = ANY(%s)
        """,
        (SCHEMA, [t.name for t in TARGET_TABLES]),
    )
    shape: dict[str, dict[str, str]] = {}
    for table, column, type_ in cur.fetchall():
        shape.setdefault(table, {})[column] = type_
    return shape


def shape_differences(shape: dict[str, dict[str, str]]) -> list[str]:
    """What differs between existing app tables and the plan (missing columns, wrong types)."""
    problems = []
    for table in TARGET_TABLES:
        have = shape.get(table.name)
        if have is None:
            continue
        for col in table.columns:
            if col.name not in have:
                problems.append(f"{table.name}.{col.name} is missing (expected {reported_type(col)})")
            elif have[col.name] != reported_type(col):
                problems.append(f"{table.name}.{col.name} is {have[col.name]}, expected {reported_type(col)}")
    return problems


def ensure_schema(cur) -> list[str]:
    """Create what is missing; return the names of the app tables that were created by this call.

    Refuses (ValueError listing the differences) when app tables exist with another shape: a user's
    table is never dropped or altered.
    """
    shape = existing_shape(cur)
    problems = shape_differences(shape)
    if problems:
        raise ValueError("; ".join(problems))
    created = [t.name for t in TARGET_TABLES if t.name not in shape]
    for table in TARGET_TABLES:
        cur.execute(create_table(table))
        for index in table.indexes:
            cur.execute(create_index(table, index))
    cur.execute(BOOKKEEPING_DDL)
    return created
