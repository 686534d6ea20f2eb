"""Change-only re-syncs: which source rows a run must redo, found by comparing snapshots inside SQLite.

A published run records its source snapshot (the baseline): the target then holds exactly what the
pipeline makes of that snapshot. The next run compares its own snapshot with the baseline in SQLite (a
join on rowid, in C; only changed rows reach Python) and redoes just the rows whose outcome can change:

- rows inserted or changed since the baseline;
- every row sharing a key with such a row or with a deleted one (duplicate keys: the first row wins);
- every row naming a parent (an agent) whose row changed (it may now load, or stop loading);
- every row whose key or parent reference is not stored as the rule keeps it (e.g. an id stored as
  text): such values are few, and comparing them in SQL would need the rule itself.

The target rows with the affected keys are then replaced by the outcome of those rows, the rejects of
the affected rowids likewise; everything else is untouched. The result is the same as a full run (a
property test compares both). A run falls back to a full one when there is no usable baseline: none
published, its file gone, or published by another version of the table specs.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from urllib.parse import quote

import pandas as pd

from agent_migration.core.cleaning import valid_values
from agent_migration.core.contract import USER_CHANGES
from agent_migration.core.rules import Username
from agent_migration.core.tables import SOURCE_TABLES, Table
from agent_migration.source import pages
from agent_migration.source.files import same_file, sqlite_ident

_IN_ROWIDS = "rowid IN (SELECT value FROM json_each(?))"
def affinity(declared: str) -> str:
    """SQLite's column affinity for a declared type (https://sqlite.org/datatype3.html, 3.1)."""
    t = (declared or "").upper()
    if "INT" in t:
        return "INTEGER"
    if any(s in t for s in ("CHAR", "CLOB", "TEXT")):
        return "TEXT"
    if not t or "BLOB" in t:
        return "BLOB"
    if any(s in t for s in ("REAL", "FLOA", "DOUB")):
        return "REAL"
    return "NUMERIC"


def same_row(conn: sqlite3.Connection, table: Table) -> str:
    """SQL: row o (baseline) holds exactly what row n (new) holds, in every migrated source column.

    `IS` is NULL-safe; BINARY collation compares text byte for byte whatever the column declares. Only
    a column without affinity can hold both 1 and 1.0 (equal to `IS`), so only there is typeof compared.
    """
    declared = {
        row[1]: row[2] for row in conn.execute(f"PRAGMA main.table_info({sqlite_ident(table.source)})")
    }
    parts = []
    for name in table.source_columns:
        c = sqlite_ident(name)
        parts.append(f"o.{c} IS n.{c} COLLATE BINARY")
        if affinity(declared.get(name, "")) == "BLOB":
            parts.append(f"typeof(o.{c}) = typeof(n.{c})")
    return " AND ".join(parts)


def clean_keys(rule, values: list) -> set:
    """The values `rule` makes of raw `values`, the rejected ones left out."""
    if not values:
        return set()
    valid = valid_values(rule, pd.Series(values, dtype=object), "delta")
    return {v.item() if hasattr(v, "item") else v for v in valid}


def _plain_keys(values: list) -> set:
    """The raw values SQL can match as they are (integers and text)."""
    return {v for v in values if isinstance(v, int | str)}


def _column(conn, query: str, *params) -> list:
    return [row[0] for row in conn.execute(query, params)]


def _ordered(values) -> list:
    """Keys of mixed types (integers, text) in a stable order."""
    return sorted(values, key=lambda v: (str(type(v)), v))


def _json(values) -> str:
    return json.dumps(_ordered(values))


def _distinct(conn, schema: str, table: Table, column: str, where: str, param: str) -> list:
    """The distinct values of `column` in rows matching `where` (1 and 1.0 apart, text byte for byte)."""
    c = sqlite_ident(column)
    return _column(
        conn,
        f"SELECT DISTINCT {c} COLLATE BINARY, typeof({c}) FROM {schema}.{sqlite_ident(table.source)} "
        f"WHERE {where.format(c=c)}",
        param,
    )


def _rowid_alias(conn: sqlite3.Connection, table: Table) -> bool:
    """Whether the key column is the table's rowid (INTEGER PRIMARY KEY): always an integer then. Such a
    key has no index of its own (one that does, e.g. declared DESC, is an ordinary column)."""
    name = sqlite_ident(table.source)
    keys = [row for row in conn.execute(f"PRAGMA main.table_info({name})") if row[5]]
    if len(keys) != 1 or keys[0][1] != table.key_col.source or keys[0][2].upper() != "INTEGER":
        return False
    return not any(row[3] == "pk" for row in conn.execute(f"PRAGMA main.index_list({name})"))


def _in_ranges(alias: str, schema: str, table: Table) -> str:
    """FROM clause: the rows of `schema`.table within the rowid ranges given as JSON in :ranges (each a
    rowid lookup: the ranges drive the join)."""
    return (
        f"json_each(:ranges) AS r CROSS JOIN {schema}.{sqlite_ident(table.source)} AS {alias} "
        f"ON {alias}.rowid BETWEEN json_extract(r.value, '$[0]') AND json_extract(r.value, '$[1]')"
    )


def _scan(conn, table: Table, static: list[str], params: dict, ranges) -> list[tuple]:
    """(rowid, key, changed) of the rows new or changed since the baseline, and of the rows matching
    `static` (redone whatever their keys). With `ranges` (`pages.Suspects`), only rows in the ranges
    where the pages differ are compared with the baseline."""
    name, key_col = sqlite_ident(table.source), sqlite_ident(table.key_col.source)
    differs = f"NOT EXISTS (SELECT 1 FROM base.{name} AS o WHERE o.rowid = n.rowid AND {same_row(conn, table)})"
    if ranges is None:
        where = " OR ".join([differs, *static])
        return conn.execute(
            f"SELECT n.rowid, n.{key_col}, {differs} AS changed FROM main.{name} AS n WHERE {where}", params
        ).fetchall()
    found = {
        r: (r, k, 1)
        for r, k in conn.execute(
            f"SELECT n.rowid, n.{key_col} FROM {_in_ranges('n', 'main', table)} WHERE {differs}",
            {"ranges": json.dumps(ranges.new[table.source])},
        )
    }
    if static:
        query = f"SELECT n.rowid, n.{key_col}, 0 FROM main.{name} AS n WHERE {' OR '.join(static)}"
        found = {r: (r, k, 0) for r, k, _ in conn.execute(query, params)} | found
    return list(found.values())


def _gone(conn, table: Table, ranges) -> list[int]:
    """Baseline rowids the new snapshot no longer has (with `ranges`: looked for where pages differ)."""
    name = sqlite_ident(table.source)
    missing = f"NOT EXISTS (SELECT 1 FROM main.{name} AS n WHERE n.rowid = o.rowid)"
    if ranges is None:
        return _column(conn, f"SELECT o.rowid FROM base.{name} AS o WHERE {missing}")
    query = f"SELECT o.rowid FROM {_in_ranges('o', 'base', table)} WHERE {missing}"
    return [r for (r,) in conn.execute(query, {"ranges": json.dumps(ranges.base[table.source])})]


def plan_table(conn: sqlite3.Connection, table: Table, changed_parents: dict[str, set], ranges=None) -> dict:
    """The rows of one table to redo (rowids in the new snapshot), the baseline rowids whose rejects go,
    and the affected keys (clean, before the username remap) whose target rows are replaced."""
    name = sqlite_ident(table.source)
    key_col, key_rule = sqlite_ident(table.key_col.source), table.key_col.rule
    # Rows new or changed since the baseline, and rows whose outcome may change whatever their keys:
    # a value the rule may rewrite, or a changed parent.
    static = [f"typeof(n.{key_col}) <> '{key_rule.keeps}'"]
    if key_rule.keeps == "integer" and _rowid_alias(conn, table):
        static = []
    params: dict = {}
    for i, (col, parent) in enumerate(table.parent_refs):
        ref = sqlite_ident(col.source)
        static.append(f"typeof(n.{ref}) NOT IN ('{col.rule.keeps}', 'null')")
        static.append(f"n.{ref} IN (SELECT value FROM json_each(:p{i}))")
        params[f"p{i}"] = _json(changed_parents[parent.name])
    scanned = _scan(conn, table, static, params, ranges)
    changed = [(r, k) for r, k, c in scanned if c]
    gone = _gone(conn, table, ranges)
    changed_ids = [r for r, _ in changed]
    old_keys = _column(
        conn,
        f"SELECT o.{key_col} FROM base.{name} AS o WHERE o.rowid IN (SELECT value FROM json_each(?))",
        json.dumps(gone + changed_ids),
    )
    redo = {r: k for r, k, _ in scanned}
    # Every row sharing a key with a changed, gone or redone row (duplicates: the first row wins); raw
    # values too, as two rows whose key the rule rejects still name each other in their source keys.
    # A key index (the rowid, or the primary key's) makes each round a few lookups; one round is the rule.
    keys = clean_keys(key_rule, old_keys + list(redo.values()))
    lookup = keys | _plain_keys(old_keys + list(redo.values()))
    searched: set = set()
    while batch := lookup - searched:
        searched |= batch
        peers = conn.execute(
            f"SELECT rowid, {key_col} FROM main.{name} WHERE {key_col} IN (SELECT value FROM json_each(?))",
            (_json(batch),),
        ).fetchall()
        fresh = {r: k for r, k in peers if r not in redo}
        redo |= fresh
        found = clean_keys(key_rule, list(fresh.values()))
        keys |= found
        lookup |= found | _plain_keys(list(fresh.values()))
    names = {"old": [], "new": []}
    for col in table.migrated:
        if isinstance(col.rule, Username):  # what the users may lose and gain by these rows
            for side, schema, ids_ in (("old", "base", gone + changed_ids), ("new", "main", changed_ids)):
                found = _distinct(conn, schema, table, col.source, _IN_ROWIDS, json.dumps(ids_))
                names[side] += clean_keys(col.rule, found)
    return {
        "rowids": sorted(redo),
        "gone_rowids": sorted(set(gone) | set(changed_ids)),
        "names": names,
        "keys": _ordered(keys),
        "changed": len(changed),
        "deleted": len(gone),
    }


NOTHING = {
    "rowids": [],
    "gone_rowids": [],
    "keys": [],
    "changed": 0,
    "deleted": 0,
    "names": {"old": [], "new": []},
}


def user_changes(conn: sqlite3.Connection, tables: dict[str, dict]) -> dict[str, list]:
    """The usernames the changed rows add, and those no row references any more (from the tables' plans).

    A name the changed rows no longer use may still be used by another row: each username column is
    searched for those names (and for values not stored as text, which the rule may turn into them).
    """
    added = {n for t in tables.values() for n in t["names"]["new"]}
    maybe = {n for t in tables.values() for n in t["names"]["old"]} - added
    still: set = set()
    for table in SOURCE_TABLES if maybe else ():
        for col in table.migrated:
            if isinstance(col.rule, Username):
                where = "{c} IN (SELECT value FROM json_each(?)) OR typeof({c}) NOT IN ('text', 'null')"
                found = _distinct(conn, "main", table, col.source, where, _json(maybe))
                still |= clean_keys(col.rule, found)
    return {"added": sorted(added), "removed": sorted(maybe - still)}


def plan(conn: sqlite3.Connection, baseline: str, snapshot: str | Path | None = None) -> dict[str, dict]:
    """Per source table (parents first), what a re-sync against the `baseline` snapshot must redo;
    and under "(users)", the usernames added and removed (see `user_changes`)."""
    if snapshot is not None and same_file(snapshot, baseline):
        # Every outcome is as published.
        return {t.source: dict(NOTHING) for t in SOURCE_TABLES} | {USER_CHANGES: {"added": [], "removed": []}}
    ranges = None if snapshot is None else pages.suspects(snapshot, baseline, [t.source for t in SOURCE_TABLES])
    conn.execute("ATTACH DATABASE ? AS base", (f"file:{quote(str(baseline))}?mode=ro",))
    try:
        out: dict[str, dict] = {}
        changed_parents: dict[str, set] = {}
        for table in SOURCE_TABLES:
            out[table.source] = plan_table(conn, table, changed_parents, ranges)
            changed_parents[table.name] = set(out[table.source]["keys"])
        return out | {USER_CHANGES: user_changes(conn, out)}
    finally:
        conn.execute("DETACH DATABASE base")
