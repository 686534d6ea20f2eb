"""Reading PostgreSQL for a rollback: every table in the app's SQLite conventions, the rejects, the
recorded source schema and the sequences, all inside the caller's one read-only snapshot.

The SQL is rendered from the table specs (`core/tables.py`): a username column comes back as the user's
name, JSONB as compact JSON text, BOOLEAN as 0/1, TIMESTAMP as `YYYY-MM-DD HH:MM:SS[.ffffff]`, DECIMAL
as a double (the app's REAL).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

from psycopg2 import sql

from agent_migration.core.rules import Username
from agent_migration.core.tables import Col, Table
from agent_migration.postgres.merge import next_id, target

_SECONDS = "YYYY-MM-DD HH24:MI:SS"


# A JSON string literal, or whitespace outside one: JSONB's text output has spaces only after ':' and ','.
_SPACE = re.compile(r'("(?:[^"\\]|\\.)*")|\s+')


def _compact(text: str | None) -> str | None:
    """JSONB's text as the compact JSON the app writes, numbers exactly as PostgreSQL holds them."""
    return None if text is None else _SPACE.sub(lambda m: m.group(1) or "", text)


def _expression(col: Col, ref: sql.Composable) -> sql.Composable:
    """`ref` (a PostgreSQL column) as the app stored it in SQLite."""
    t = col.pg_type
    if t == "BOOLEAN":
        return sql.SQL("{}::int").format(ref)
    if t == "TIMESTAMP":  # the fraction only when it is not zero, as the app writes it
        return sql.SQL(
            "CASE WHEN to_char({r}, 'US') = '000000' THEN to_char({r}, {s}) ELSE to_char({r}, {f}) END"
        ).format(r=ref, s=sql.Literal(_SECONDS), f=sql.Literal(_SECONDS + ".US"))
    if t.startswith("DECIMAL"):
        return sql.SQL("{}::float8").format(ref)
    if t == "JSONB":
        return sql.SQL("{}::text").format(ref)
    return ref


def columns_of(table: Table, app: bool) -> list[Col]:
    """The columns a table's rows carry into the file: the migrated ones (app tables), or all of them."""
    return table.migrated if app else list(table.columns)


def select_rows(table: Table, app: bool) -> sql.Composable:
    """SELECT of `table` in the app's conventions, in key order; usernames joined in for app tables."""
    exprs, joins = [], []
    for i, col in enumerate(columns_of(table, app)):
        ref = sql.SQL("t.{}").format(sql.Identifier(col.name))
        if app and isinstance(col.rule, Username):
            alias = sql.Identifier(f"u{i}")
            joins.append(sql.SQL("LEFT JOIN public.users {a} ON {a}.id = {r}").format(a=alias, r=ref))
            ref = sql.SQL("{}.username").format(alias)
        exprs.append(_expression(col, ref))
    return sql.SQL("SELECT {} FROM {} t {} ORDER BY t.{}").format(
        sql.SQL(", ").join(exprs), target(table), sql.SQL(" ").join(joins), sql.Identifier(table.key)
    )


def converters(table: Table, app: bool) -> list[Callable | None]:
    """Per column, what Python still does to a fetched value (compact JSON), or None."""
    return [_compact if col.pg_type == "JSONB" else None for col in columns_of(table, app)]


def stream(conn, name: str, query: sql.Composable, params=None, chunk_rows: int = 50_000) -> Iterator[list]:
    """The rows of `query`, `chunk_rows` at a time, through a server-side cursor (memory stays flat)."""
    with conn.cursor(name=name) as cur:
        cur.itersize = chunk_rows
        cur.execute(query, params)
        while rows := cur.fetchmany(chunk_rows):
            yield rows


def table_rows(conn, table: Table, app: bool, chunk_rows: int) -> Iterator[list[tuple]]:
    """Every row of `table`, converted, in chunks."""
    convert = converters(table, app)
    for rows in stream(conn, f"export_{table.name}", select_rows(table, app), chunk_rows=chunk_rows):
        if any(convert):
            rows = [tuple(f(v) if f else v for f, v in zip(convert, row, strict=True)) for row in rows]
        yield rows


def rejects(conn, source_table: str, chunk_rows: int) -> Iterator[list[tuple]]:
    """(source_key, reason, payload as JSON text) of the table's rejected rows, in source order."""
    query = sql.SQL(
        "SELECT source_key, reason, payload::text FROM migration.rejected_rows WHERE source_table = %s"
        " ORDER BY source_rowid NULLS LAST, source_key"
    )
    yield from stream(conn, f"rejects_{source_table}", query, (source_table,), chunk_rows)


def recorded_schema(cur) -> list[tuple[str, str, str, str]]:
    """The source's sqlite_master statements the last publish recorded: (type, name, tbl_name, sql)."""
    cur.execute("SELECT to_regclass('migration.source_schema')")
    if cur.fetchone()[0] is None:
        return []
    cur.execute("SELECT type, name, tbl_name, sql FROM migration.source_schema ORDER BY position")
    return cur.fetchall()


def totals(cur, table: Table, sums: tuple[str, ...]) -> dict:
    """Rows, rejects and the exact totals (money in cents) of `table` in PostgreSQL."""
    cur.execute(sql.SQL("SELECT count(*) FROM {}").format(target(table)))
    found = {"rows": cur.fetchone()[0], "rejects": 0, "sums": {}}
    if table.source:
        cur.execute("SELECT count(*) FROM migration.rejected_rows WHERE source_table = %s", (table.source,))
        found["rejects"] = cur.fetchone()[0]
    for name in sums:
        scale = getattr(table.col(name).rule, "scale", 0)
        cur.execute(
            sql.SQL("SELECT COALESCE(sum(round({c} * 10::numeric ^ {s})), 0) FROM {t}").format(
                c=sql.Identifier(name), s=sql.Literal(scale), t=target(table)
            )
        )
        found["sums"][name] = int(cur.fetchone()[0])
    return found


def last_id(cur, table: Table) -> int:
    """The largest id the table's sequence has handed out (0: none, or no sequence)."""
    nxt = next_id(cur, table)
    return 0 if nxt is None else nxt - 1
