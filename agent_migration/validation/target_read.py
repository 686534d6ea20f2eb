"""The target side of `validate`: PostgreSQL read back, in the canonical form of `expected.py`.

Everything is read inside one REPEATABLE READ READ ONLY transaction (one consistent view, nothing
written), in bounded pieces: the rows of a chunk of source keys by primary key lookups, and the key and
reject streams through server-side cursors, `chunk_rows` at a time. The SQL is rendered from the table
specs: a username column comes back as the user's name (joined through `users`), a timestamp as
microseconds since the epoch, DECIMAL as integer cents, JSONB as its text (parsed here), booleans as is.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pandas as pd
from psycopg2 import sql
from psycopg2.extensions import ISOLATION_LEVEL_REPEATABLE_READ

from agent_migration.core.rules import Money, Username
from agent_migration.core.tables import BATTLES, MARKETPLACE_LISTINGS, USERS, Col, Table
from agent_migration.postgres.connection import TargetDatabase
from agent_migration.postgres.merge import target as qualified
from agent_migration.validation.expected import KEY
from agent_migration.validation.plain import json_value

STREAM_ROWS = 50_000  # keys fetched at a time
REJECT_ROWS = 10_000  # rejects (with their payloads) fetched at a time


@contextmanager
def read_only(target: TargetDatabase) -> Iterator:
    """A connection in one REPEATABLE READ READ ONLY transaction: one view of the target, no write."""
    with target.connect() as conn:
        conn.set_session(isolation_level=ISOLATION_LEVEL_REPEATABLE_READ, readonly=True)
        try:
            yield conn
        finally:
            conn.rollback()


def _expression(col: Col, ref: sql.Composable) -> sql.Composable:
    """`ref` in the canonical form (see `expected.canonical`)."""
    t = col.pg_type
    if t == "TIMESTAMP":  # a TIMESTAMP holds UTC wall-clock time: its epoch is the instant's
        return sql.SQL("(extract(epoch FROM {}) * 1000000)::bigint").format(ref)
    if isinstance(col.rule, Money):
        return sql.SQL("({} * {})::bigint").format(ref, sql.Literal(10**col.rule.scale))
    if t == "JSONB":
        return sql.SQL("{}::text").format(ref)
    return ref


def canonical_columns(table: Table) -> tuple[list[sql.Composable], list[sql.Composable], sql.Composable]:
    """(canonical expressions of the migrated columns, joins of users, the key's canonical expression)."""
    exprs, joins, key = [], [], None
    for i, col in enumerate(table.migrated):
        ref = sql.SQL("t.{}").format(sql.Identifier(col.name))
        if isinstance(col.rule, Username):  # compared through users: the name, not the id
            alias = sql.Identifier(f"u{i}")
            joins.append(
                sql.SQL("LEFT JOIN {u} {a} ON {a}.id = {r}").format(u=qualified(USERS), a=alias, r=ref)
            )
            ref = sql.SQL("{}.username").format(alias)
        if col.name == table.key:
            key = ref
        exprs.append(_expression(col, ref))
    return exprs, joins, key


def read_rows(cur, table: Table, keys: list) -> pd.DataFrame:
    """The target rows whose canonical key is one of `keys` (KEY plus each migrated column, canonical);
    for dense integer keys (a chunk of rowids), every row in their range: one index range scan instead
    of a lookup per key (rows of other keys are the caller's to ignore)."""
    if not keys:
        return _frame(table, [])
    exprs, joins, key = canonical_columns(table)
    where, params = sql.SQL("{} = ANY(%s)").format(key), (keys,)
    if table.key_col.pg_type == "INTEGER" and not isinstance(table.key_col.rule, Username):
        lo, hi = min(keys), max(keys)
        if hi - lo < 2 * len(keys):
            where, params = sql.SQL("{} BETWEEN %s AND %s").format(key), (lo, hi)
    cur.execute(
        sql.SQL("SELECT {k}, {e} FROM {t} t {j} WHERE {w}").format(
            k=key, e=sql.SQL(", ").join(exprs), t=qualified(table), j=sql.SQL(" ").join(joins), w=where
        ),
        params,
    )
    return _frame(table, cur.fetchall())


def _frame(table: Table, rows: list[tuple]) -> pd.DataFrame:
    """Fetched rows as object columns, each value as the driver gave it (NULL stays None, never NaN)."""
    names = [KEY, *(c.name for c in table.migrated)]
    block = np.empty((len(rows), len(names)), dtype=object)
    if rows:
        block[:] = rows
    frame = pd.DataFrame({n: pd.Series(block[:, i], dtype=object) for i, n in enumerate(names)})
    for col in table.migrated:
        if col.pg_type == "JSONB":
            frame[col.name] = pd.Series(
                [json_value(v) for v in frame[col.name]], dtype=object
            )
    return frame


def stream_keys(conn, table: Table) -> Iterator[list]:
    """Every canonical key the target table holds, in key order, `STREAM_ROWS` at a time."""
    _, joins, key = canonical_columns(table)
    query = sql.SQL("SELECT {k} FROM {t} t {j} ORDER BY t.{pk}").format(
        k=key, t=qualified(table), j=sql.SQL(" ").join(joins), pk=sql.Identifier(table.key)
    )
    for rows in _stream(conn, f"keys_{table.name}", query):
        yield [r[0] for r in rows]


REJECTS = sql.SQL(
    "SELECT source_rowid, source_key, payload::text, reason FROM migration.rejected_rows WHERE source_table = %s"
)


def stream_rejects(conn, table: Table) -> Iterator[list[tuple]]:
    """The table's rejects (source rowid, source key, payload text, reason) in source rowid order (NULL last)."""
    query = sql.SQL("{} ORDER BY source_rowid NULLS LAST, source_key").format(REJECTS)
    yield from _stream(conn, f"rejects_{table.name}", query, (table.source,), REJECT_ROWS)


def rejects_of(cur, table: Table, rowids: list[int]) -> list[tuple]:
    """The table's rejects of these source rowids (a sample's rows, loaded or not), in rowid order."""
    cur.execute(sql.SQL("{} AND source_rowid = ANY(%s) ORDER BY 1").format(REJECTS), (table.source, rowids))
    return cur.fetchall()


def keys_of(cur, table: Table) -> list[int]:
    """Every key of a table (an integer-keyed parent: a sample's chat messages check against it)."""
    cur.execute(sql.SQL("SELECT {} FROM {}").format(sql.Identifier(table.key), qualified(table)))
    return [r[0] for r in cur.fetchall()]


def usernames(cur) -> list[str]:
    cur.execute(sql.SQL("SELECT username FROM {}").format(qualified(USERS)))
    return [r[0] for r in cur.fetchall()]


def _stream(
    conn, name: str, query: sql.Composable, params=None, rows: int = STREAM_ROWS
) -> Iterator[list[tuple]]:
    """A server-side cursor's rows, `rows` at a time (memory stays flat)."""
    with conn.cursor(name=f"validate_{name}") as cur:
        cur.itersize = rows
        cur.execute(query, params)
        while batch := cur.fetchmany(rows):
            yield batch


def stray_rejects(cur, source_tables: list[str]) -> list[tuple]:
    """Rejects naming no source table of the plan (source table, source key, source rowid)."""
    cur.execute(
        "SELECT source_table, source_key, source_rowid FROM migration.rejected_rows "
        "WHERE NOT (source_table = ANY(%s)) ORDER BY 1, 3, 2",
        (source_tables,),
    )
    return cur.fetchall()


def battle_ids(conn) -> Iterator[list[int]]:
    """Every battle's id, in id order, `STREAM_ROWS` at a time."""
    query = sql.SQL("SELECT id FROM {} ORDER BY id").format(qualified(BATTLES))
    for rows in _stream(conn, "battles", query):
        yield [r[0] for r in rows]


def listings(cur) -> pd.DataFrame:
    """Every listing: id, agent_id, seller (the seller's username), price, status."""
    cur.execute(
        sql.SQL(
            "SELECT l.id, l.agent_id, u.username, l.price, l.status FROM {l} l "
            "LEFT JOIN {u} u ON u.id = l.seller_id ORDER BY l.id"
        ).format(l=qualified(MARKETPLACE_LISTINGS), u=qualified(USERS))
    )
    return pd.DataFrame(cur.fetchall(), columns=["id", "agent_id", "seller_id", "price", "status"], dtype=object)


def _pk(table: Table) -> sql.Identifier:
    return sql.Identifier(next(c.name for c in table.columns if c.primary_key))


def canonical_keys(cur, table: Table, pks: list) -> list:
    """The canonical keys (a user's name for a username key) of the rows with these primary keys."""
    if not pks:
        return []
    _, joins, key = canonical_columns(table)
    cur.execute(
        sql.SQL("SELECT {k} FROM {t} t {j} WHERE t.{pk} = ANY(%s)").format(
            k=key, t=qualified(table), j=sql.SQL(" ").join(joins), pk=_pk(table)
        ),
        (pks,),
    )
    return [r[0] for r in cur.fetchall()]


def keys_naming_users(cur, table: Table, user_ids: list[int]) -> list:
    """The canonical keys of the rows whose username columns hold one of these user ids."""
    refs = [c for c in table.migrated if isinstance(c.rule, Username)]
    if not refs or not user_ids:
        return []
    _, joins, key = canonical_columns(table)
    where = sql.SQL(" OR ").join(sql.SQL("t.{} = ANY(%(ids)s)").format(sql.Identifier(c.name)) for c in refs)
    cur.execute(
        sql.SQL("SELECT {k} FROM {t} t {j} WHERE {w}").format(
            k=key, t=qualified(table), j=sql.SQL(" ").join(joins), w=where
        ),
        {"ids": user_ids},
    )
    return [r[0] for r in cur.fetchall()]


def rows_of(conn, table: Table, names: list[str]) -> Iterator[pd.DataFrame]:
    """Every row of the table, canonical (KEY and the migrated columns `names`), `STREAM_ROWS` at a time."""
    exprs, joins, key = canonical_columns(table)
    picked = [(c.name, e) for c, e in zip(table.migrated, exprs, strict=True) if c.name in names]
    query = sql.SQL("SELECT {k}, {e} FROM {t} t {j}").format(
        k=key,
        e=sql.SQL(", ").join(e for _, e in picked),
        t=qualified(table),
        j=sql.SQL(" ").join(joins),
    )
    for rows in _stream(conn, f"rows_{table.name}", query):
        yield pd.DataFrame(rows, columns=[KEY, *(n for n, _ in picked)], dtype=object)
