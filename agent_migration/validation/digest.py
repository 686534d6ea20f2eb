"""Digests of canonical rows: one per chunk, computed by PostgreSQL over the stored rows and here over
the expected ones, so that a full `validate` moves a digest, not every row, wherever the two agree.

The canonical text of a row is its migrated columns' tokens (`ordered`: the spec's order, JSON columns
last), each self-delimiting:
- NULL: `N;`
- an integer, a timestamp (microseconds since the epoch, UTC), money (integer cents), a boolean (1/0):
  `i<digits>;`
- text, usernames (the user's name) and JSON (JSONB's text of it): `s<UTF-8 byte length>:<text>`

so NULL is apart from '', 'a|b' from 'a','b', a timestamp's last microsecond and a cent show. A chunk's
digest is the MD5 of its rows' texts joined by a newline in key order (byte order for text keys), with
the row count beside it.

The expected side computes the text of a plain row in SQLite itself (`source_select`: the checks that
make a value plain, stricter than `plain.py`'s, and the token, in SQL over the stored value; a JSON
value is parsed and printed here, `json_token`), and of any other row from what the exact rules made of
it (`render`). PostgreSQL renders the target's stored values (`Target`). A property test holds the
SQL-plain rows to the exact rules, another PostgreSQL's texts to ours; any chunk whose digests differ is
compared value by value, which names the column.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from decimal import Decimal

import numpy as np
import pandas as pd
from psycopg2 import sql

from agent_migration.core.rules import (
    INT32_MAX,
    INT32_MIN,
    Boolean,
    Integer,
    Json,
    Money,
    OneOf,
    Text,
    Timestamp,
    Username,
)
from agent_migration.core.tables import Col, Table
from agent_migration.core.values import no_constants, strings_in
from agent_migration.postgres.merge import target as qualified
from agent_migration.source.files import sqlite_ident
from agent_migration.validation import target_read
from agent_migration.validation.plain import JSON_NULL

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
    if isinstance(rule, Json):  # the token is rendered from the parsed text (`json_token`)
        return f"(typeof({c}) = 'text' AND instr({c}, char(0)) = 0) OR {c} IS NULL", None
    if isinstance(rule, Money):
        unit = 10**rule.scale
        cond = (
            f"typeof({c}) IN ('integer', 'real') AND {c} >= 0 AND abs({c}) < {10 ** (rule.precision - rule.scale)} "
            f"AND abs({c} - round({c} * {unit}) / {unit}.0) <= {rule.tolerance!r}"
        )
        return _nullable(col, cond, c), f"coalesce('i' || CAST(round({c} * {unit}) AS INTEGER) || ';', '{NULL}')"
    return None


def eligible(table: Table) -> bool:
    """Every migrated column has a plain form."""
    return all(_source_column(c) is not None for c in table.migrated)


def json_columns(table: Table) -> list[Col]:
    return [c for c in table.migrated if isinstance(c.rule, Json)]


def ordered(table: Table) -> list[Col]:
    """The columns in the order of their tokens: JSON columns last (SQLite makes the others' text)."""
    return [c for c in table.migrated if not isinstance(c.rule, Json)] + json_columns(table)


def _number(value: float) -> str:
    """A JSON number as JSONB prints it (numeric: positional, no exponent, no negative zero), for the
    number Python parsed; another spelling of it ('1.50') shows as a difference and is compared by value."""
    text = format(Decimal(repr(value)), "f") if isinstance(value, float) else str(value)
    return text[1:] if text.startswith("-") and value == 0 else text


def json_text(value) -> str:
    """A parsed JSON value as JSONB's text: keys shortest first then byte order, `, ` and `: `, strings
    escaped as JSON does (control characters as \\u00xx, the rest as is)."""
    if value is None or value is JSON_NULL:
        return "null"
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, int | float):
        return _number(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(json_text(v) for v in value) + "]"
    items = sorted(value.items(), key=lambda kv: (len(kv[0].encode("utf-8")), kv[0].encode("utf-8")))
    return "{" + ", ".join(f"{json.dumps(k, ensure_ascii=False)}: {json_text(v)}" for k, v in items) + "}"


def _text_token(text: str) -> str:
    return f"s{len(text.encode('utf-8', 'surrogatepass'))}:{text}"


def json_token(rule: Json, stored: bytes | None) -> str | None:
    """The token of a stored JSON value whose text is plain to SQLite, or None: the rules may reject it
    (not UTF-8, not JSON, a string JSONB cannot hold); `rule.empty` stands for NULL and ''."""
    if not stored:
        return NULL if rule.empty is None else _text_token(json_text(json.loads(rule.empty)))
    try:
        value = json.loads(stored.decode("utf-8"), parse_constant=no_constants)
    except (ValueError, RecursionError):
        return None
    return None if strings_in(value) else _text_token(json_text(value))


def source_select(table: Table, bounded: bool) -> str:
    """SQLite: per row in rowid order from rowid `?` on (`bounded`: below rowid `?`): rowid, the key,
    each parent reference and each JSON column as stored, and the canonical text of the row's other
    columns where every value is plain (else NULL)."""
    conds, tokens = zip(*(_source_column(c) for c in ordered(table)), strict=True)
    refs = [sqlite_ident(c.source) for c, _ in table.parent_refs]
    jsons = [sqlite_ident(c.source) for c in json_columns(table)]
    picked = ", ".join([sqlite_ident(table.key_col.source), *refs, *jsons])
    text = " || ".join(t for t in tokens if t is not None) or "''"
    return (
        f"SELECT rowid, {picked}, CASE WHEN {' AND '.join(f'({c})' for c in conds)} "
        f"THEN {text} END FROM {sqlite_ident(table.source)} "
        f"WHERE rowid >= ?{' AND rowid < ?' if bounded else ''} ORDER BY rowid"
    )


def _token(value, text: bool) -> str:
    if value is None or value is pd.NA:
        return NULL
    if text:
        return _text_token(value)
    if isinstance(value, bool | np.bool_):
        return "i1;" if value else "i0;"
    return f"i{int(value)};"


def render(table: Table, loaded: pd.DataFrame) -> list[bytes]:
    """The canonical text (UTF-8) of expected rows, from their canonical values (`expected.canonical`)."""
    columns = [(loaded[c.name].tolist(), is_text(c)) for c in ordered(table)]
    jsons = [loaded[c.name].tolist() for c in json_columns(table)]
    if jsons:  # a JSON column's canonical value is the parsed value: its token is of its JSONB text
        columns = columns[: len(columns) - len(jsons)] + [
            ([None if v is None else json_text(v) for v in values], True) for values in jsons
        ]
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
    if isinstance(col.rule, Json):  # `expr` is already its text (target_read: `::text`)
        return sql.SQL("coalesce('s' || octet_length({e})::text || ':' || {e}, {n})").format(
            e=expr, n=sql.Literal(NULL)
        )
    if is_text(col):
        return sql.SQL("coalesce('s' || octet_length({e})::text || ':' || {e}, {n})").format(
            e=expr, n=sql.Literal(NULL)
        )
    if isinstance(col.rule, Boolean):
        return sql.SQL("CASE WHEN {e} THEN 'i1;' WHEN NOT {e} THEN 'i0;' ELSE {n} END").format(
            e=expr, n=sql.Literal(NULL)
        )
    return sql.SQL("coalesce('i' || ({e})::text || ';', {n})").format(e=expr, n=sql.Literal(NULL))


WHERE = {  # which target rows a chunk's digest covers: by their canonical key
    "range": "{k} BETWEEN %(lo)s AND %(hi)s",  # every key between (integer keys without a gap)
    "gaps": "{k} BETWEEN %(lo)s AND %(hi)s AND {k} <> ALL(%(gaps)s)",  # less a few
    "any": "{k} = ANY(%(keys)s)",  # the keys given (text keys; integer keys far apart)
}


def target_row(table: Table) -> tuple[sql.Composable, list[sql.Composable], sql.Composable]:
    """PostgreSQL: (a stored row's canonical text, the joins it needs, its canonical key)."""
    exprs, joins, key = target_read.canonical_columns(table)
    by_name = {c.name: (c, e) for c, e in zip(table.migrated, exprs, strict=True)}
    return sql.SQL(" || ").join(_target_token(*by_name[c.name]) for c in ordered(table)), joins, key


def target_query(table: Table, form: str) -> sql.Composable:
    """PostgreSQL: (rows, digest) of the target rows a chunk's keys name (`WHERE[form]`)."""
    row, joins, key = target_row(table)
    order = sql.SQL('{} COLLATE "C"').format(key) if is_text(table.key_col) else key
    where = sql.SQL(WHERE[form]).format(k=key)
    return sql.SQL("SELECT count(*), md5(string_agg({r}, E'\\n' ORDER BY {o})) FROM {t} t {j} WHERE {w}").format(
        r=row, o=order, t=qualified(table), j=sql.SQL(" ").join(joins), w=where
    )


def key_filter(keys: list, text_key: bool) -> tuple[str, dict]:
    """(the form of WHERE, its parameters) naming exactly these keys: an integer range where they leave
    no gap or a few (a rejected row's), else the keys themselves. Parsing a list of 50,000 keys costs
    the server more than digesting their rows."""
    if text_key or not keys:
        return "any", {"keys": keys}
    values = np.asarray(keys, dtype=np.int64)
    lo, hi = int(values.min()), int(values.max())
    missing = hi - lo + 1 - len(values)
    if missing == 0:
        return "range", {"lo": lo, "hi": hi}
    if missing <= len(values) // 4:
        gaps = np.setdiff1d(np.arange(lo, hi + 1, dtype=np.int64), values, assume_unique=True)
        return "gaps", {"lo": lo, "hi": hi, "gaps": gaps.tolist()}
    return "any", {"keys": keys}


class Target:
    """The target side's digests of one table: its three queries, rendered once."""

    def __init__(self, table: Table):
        self.table = table
        self.queries = {form: target_query(table, form) for form in WHERE}

    def digest(self, cur, keys: list) -> tuple[int, str | None]:
        """(rows, digest) of the target rows with these canonical keys."""
        if not keys:
            return 0, None
        form, params = key_filter(keys, is_text(self.table.key_col))
        cur.execute(self.queries[form], params)
        count, found = cur.fetchone()
        return count, found


def usable(cur, sconn) -> bool:
    """Both ends encode text as UTF-8 (the digests hash UTF-8 bytes, and SQLite's lengths are of them)."""
    cur.execute("SHOW server_encoding")
    (server,) = cur.fetchone()
    (source,) = sconn.execute("PRAGMA encoding").fetchone()
    return server.upper() in ("UTF8", "UTF-8") and source.upper() == "UTF-8"

