"""Digests of canonical rows: one per chunk, computed by PostgreSQL over the stored rows and here over
the expected ones, so that a full `validate` moves a digest, not every row, wherever the two agree.

The canonical text of a row is its migrated columns' tokens, in the spec's order, each self-delimiting:
- NULL: `N;`
- an integer, a timestamp (microseconds since the epoch, UTC), money (integer cents), a boolean (1/0):
  `i<digits>;`
- text and usernames (the user's name): `s<UTF-8 byte length>:<text>`

so NULL is apart from '', 'a|b' from 'a','b', a timestamp's last microsecond and a cent show. A chunk's
digest is the MD5 of its rows' texts joined by a newline in key order (byte order for text keys), with
the row count beside it.

The expected side computes the text of a plain row in SQLite itself (`source_select`: the checks that
make a value plain, stricter than `plain.py`'s, and the token, in SQL over the stored value), and of any
other row from what the exact rules made of it (`render`). PostgreSQL renders the target's stored values
(`target_digest`). A table with a JSON column has no digest (JSONB's text form is the server's own).
A property test holds the SQL-plain rows to the exact rules; any chunk whose digests differ is compared
value by value, which names the column.
"""

from __future__ import annotations

import hashlib
import sqlite3

import numpy as np
import pandas as pd
from psycopg2 import sql

from agent_migration.core.rules import (
    INT32_MAX,
    INT32_MIN,
    Boolean,
    Integer,
    Money,
    OneOf,
    Text,
    Timestamp,
    Username,
)
from agent_migration.core.tables import Col, Table
from agent_migration.postgres.merge import target as qualified
from agent_migration.source.files import sqlite_ident
from agent_migration.validation import target_read

NULL = "N;"
# Seconds since the epoch of a valid SQLite time: unixepoch() where SQLite has it (3.38), else strftime.
_EPOCH = "unixepoch({c})" if sqlite3.sqlite_version_info >= (3, 38) else "CAST(strftime('%s', {c}) AS INTEGER)"


def is_text(col: Col) -> bool:
    return isinstance(col.rule, Text)  # usernames and choices included


def _nullable(col: Col, cond: str, c: str) -> str:
    return cond if col.rule.required else f"(({cond}) OR {c} IS NULL)"


def _text_plain(rule: Text, c: str) -> str:
    parts = [f"typeof({c}) = 'text'", f"instr({c}, char(0)) = 0"]
    if rule.max_len is not None:
        parts.append(f"length({c}) <= {int(rule.max_len)}")
    if isinstance(rule, OneOf):
        choices = ", ".join("'" + v.replace("'", "''") + "'" for v in rule.choices)
        parts.append(f"{c} COLLATE BINARY IN ({choices})")
    if isinstance(rule, Username):  # surely not blank, whatever counts as white space
        parts.append(f"{c} GLOB '*[A-Za-z0-9]*'")
    return " AND ".join(parts)


def _source_column(col: Col) -> tuple[str, str] | None:
    """(SQLite condition: the stored value is plain, SQLite expression: its token), or None."""
    rule, c = col.rule, sqlite_ident(col.source)
    if isinstance(rule, Text):
        token = f"coalesce('s' || length(CAST({c} AS BLOB)) || ':' || {c}, '{NULL}')"
        return _nullable(col, _text_plain(rule, c), c), token
    if isinstance(rule, Integer):
        lo = max(INT32_MIN, rule.lo) if rule.lo is not None else INT32_MIN
        hi = min(INT32_MAX, rule.hi) if rule.hi is not None else INT32_MAX
        cond = f"typeof({c}) = 'integer' AND {c} BETWEEN {lo} AND {hi}"
        return _nullable(col, cond, c), f"coalesce('i' || {c} || ';', '{NULL}')"
    if isinstance(rule, Boolean):
        cond = f"typeof({c}) = 'integer' AND {c} IN (0, 1)"
        return _nullable(col, cond, c), f"CASE {c} WHEN 1 THEN 'i1;' WHEN 0 THEN 'i0;' ELSE '{NULL}' END"
    if isinstance(rule, Timestamp):
        # SQLite's own format that SQLite renders back unchanged once normalized (a modifier makes it
        # recompute the date: Feb 30 becomes Mar 1, 24:00 the next day), years from 1000 on.
        cond = (
            f"typeof({c}) = 'text' AND length({c}) = 19 AND {c} >= '1000' "
            f"AND datetime({c}, '+0 seconds') = {c} COLLATE BINARY"
        )
        token = f"coalesce('i' || ({_EPOCH.format(c=c)} * 1000000) || ';', '{NULL}')"
        return _nullable(col, cond, c), token
    if isinstance(rule, Money):
        unit = 10**rule.scale
        cond = (
            f"typeof({c}) IN ('integer', 'real') AND {c} >= 0 AND abs({c}) < {10 ** (rule.precision - rule.scale)} "
            f"AND abs({c} - round({c} * {unit}) / {unit}.0) <= {rule.tolerance!r}"
        )
        return _nullable(col, cond, c), f"coalesce('i' || CAST(round({c} * {unit}) AS INTEGER) || ';', '{NULL}')"
    return None


def eligible(table: Table) -> bool:
    """Every migrated column has a plain form in SQL (a JSON column has none)."""
    return all(_source_column(c) is not None for c in table.migrated)


def source_select(table: Table) -> str:
    """SQLite: per row in rowid order from rowid `?` on (at most `?` rows): rowid, the key and each
    parent reference as stored, and the row's canonical text where every value is plain (else NULL)."""
    conds, tokens = zip(*(_source_column(c) for c in table.migrated), strict=True)
    refs = [sqlite_ident(c.source) for c, _ in table.parent_refs]
    picked = ", ".join([sqlite_ident(table.key_col.source), *refs])
    return (
        f"SELECT rowid, {picked}, CASE WHEN {' AND '.join(f'({c})' for c in conds)} "
        f"THEN {' || '.join(tokens)} END FROM {sqlite_ident(table.source)} "
        "WHERE rowid >= ? ORDER BY rowid LIMIT ?"
    )


def _token(value, text: bool) -> str:
    if value is None or value is pd.NA:
        return NULL
    if text:
        return f"s{len(value.encode('utf-8', 'surrogatepass'))}:{value}"
    if isinstance(value, bool | np.bool_):
        return "i1;" if value else "i0;"
    return f"i{int(value)};"


def render(table: Table, loaded: pd.DataFrame) -> list[bytes]:
    """The canonical text (UTF-8) of expected rows, from their canonical values (`expected.canonical`)."""
    columns = [(loaded[c.name].tolist(), is_text(c)) for c in table.migrated]
    return [
        "".join(_token(values[i], text) for values, text in columns).encode("utf-8", "surrogatepass")
        for i in range(len(loaded))
    ]


def key_order(keys: list, text_key: bool) -> list[int] | None:
    """The positions of `keys` in PostgreSQL's order (integers by value, text byte by byte), or None
    when they are in order already (rows in rowid order with the rowid as key)."""
    if text_key:
        return sorted(range(len(keys)), key=lambda i: keys[i].encode("utf-8", "surrogatepass"))
    values = np.asarray(keys, dtype=np.int64)
    if len(values) < 2 or bool(np.all(values[1:] > values[:-1])):
        return None
    return np.argsort(values, kind="stable").tolist()


def of_rows(keys: list, texts: list[bytes], text_key: bool) -> tuple[int, str | None]:
    """(rows, digest) of rows given by key and canonical text: the MD5 of the texts in key order,
    joined by newlines."""
    if not keys:
        return 0, None
    order = key_order(keys, text_key)
    joined = b"\n".join(texts if order is None else [texts[i] for i in order])
    return len(keys), hashlib.md5(joined).hexdigest()


def _target_token(col: Col, expr: sql.Composable) -> sql.Composable:
    if is_text(col):
        return sql.SQL("coalesce('s' || octet_length({e})::text || ':' || {e}, {n})").format(
            e=expr, n=sql.Literal(NULL)
        )
    if isinstance(col.rule, Boolean):
        return sql.SQL("CASE WHEN {e} THEN 'i1;' WHEN NOT {e} THEN 'i0;' ELSE {n} END").format(
            e=expr, n=sql.Literal(NULL)
        )
    return sql.SQL("coalesce('i' || ({e})::text || ';', {n})").format(e=expr, n=sql.Literal(NULL))


def target_query(table: Table) -> sql.Composable:
    """PostgreSQL: (rows, digest) of the target rows whose canonical key is in %(keys)s (integer keys:
    also BETWEEN %(lo)s AND %(hi)s, so the key index drives it)."""
    exprs, joins, key = target_read.canonical_columns(table)
    row = sql.SQL(" || ").join(_target_token(c, e) for c, e in zip(table.migrated, exprs, strict=True))
    text_key = is_text(table.key_col)
    order = sql.SQL('{} COLLATE "C"').format(key) if text_key else key
    where = sql.SQL("{k} = ANY(%(keys)s)").format(k=key)
    if not text_key:
        where = sql.SQL("{k} BETWEEN %(lo)s AND %(hi)s AND {w}").format(k=key, w=where)
    return sql.SQL("SELECT count(*), md5(string_agg({r}, E'\\n' ORDER BY {o})) FROM {t} t {j} WHERE {w}").format(
        r=row, o=order, t=qualified(table), j=sql.SQL(" ").join(joins), w=where
    )


def target_digest(cur, query: sql.Composable, table: Table, keys: list) -> tuple[int, str | None]:
    """(rows, digest) of the target rows with these canonical keys."""
    if not keys:
        return 0, None
    params = {"keys": keys}
    if not is_text(table.key_col):
        params |= {"lo": min(keys), "hi": max(keys)}
    cur.execute(query, params)
    count, digest = cur.fetchone()
    return count, digest


def usable(cur, sconn) -> bool:
    """Both ends encode text as UTF-8 (the digests hash UTF-8 bytes, and SQLite's lengths are of them)."""
    cur.execute("SHOW server_encoding")
    (server,) = cur.fetchone()
    (source,) = sconn.execute("PRAGMA encoding").fetchone()
    return server.upper() in ("UTF8", "UTF-8") and source.upper() == "UTF-8"

