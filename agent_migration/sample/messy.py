"""Messy rows: the catalogue planted after the clean rows, and the scatter of bad values over clean rows."""

from __future__ import annotations

import sqlite3

from agent_migration.sample.catalogue import (
    AGENTS,
    BALANCES,
    CASES,
    CHATS,
    COLUMNS,
    COUNT_OF,
    KEYS,
    LOAD,
    REJECT,
    SCATTER,
    AgentRef,
    BadText,
    MessyCase,
)
from agent_migration.sample.world import _World


def _slot(value: object) -> str:
    return "CAST(? AS TEXT)" if type(value) is BadText else "?"


def _param(value: object) -> object:
    return bytes(value) if type(value) is BadText else value


def _show(value: object) -> str:
    if type(value) is BadText:
        return f"text x'{value.hex()}'"
    if isinstance(value, bytes):
        return f"BLOB x'{value.hex()}'"
    if isinstance(value, str) and len(value) > 40:
        return f"{value[:12]!r}... ({len(value)} characters)"
    return "NULL" if value is None else repr(value)


def plant_cases(conn: sqlite3.Connection, world: _World) -> list[MessyCase]:
    """Append one row per catalogue case after the clean rows; returns the catalogue, in `CASES` order."""
    next_id = {t: world.counts[COUNT_OF[t]] + 1 for t in COLUMNS}
    keys = []
    for p in CASES:
        if p.table != BALANCES:
            keys.append(next_id[p.table])
        elif p.column == "user_id":  # the key is the planted value (as the migration reads it)
            keys.append(p.value.decode("utf-8", "surrogateescape") if type(p.value) is BadText else p.value)
        else:  # a username no clean row uses
            keys.append(f"messy_balance_{next_id[p.table]:03d}")
        next_id[p.table] += 1
    agent_of = {
        o: next(k for p, k in zip(CASES, keys, strict=True) if p.table == AGENTS and p.outcome == o)
        for o in (LOAD, REJECT)
    }
    found = []
    for p, key in zip(CASES, keys, strict=True):
        cols = COLUMNS[p.table]
        row = world.fresh_row(p.table, key)
        if p.table == CHATS:
            row[cols.index("agent_id")] = agent_of[LOAD]
        at = cols.index(p.column)
        row[at] = agent_of[p.value.outcome] if type(p.value) is AgentRef else p.value
        slots = ["?"] * len(cols)
        slots[at] = _slot(row[at])
        conn.execute(f"INSERT INTO {p.table} VALUES ({', '.join(slots)})", [_param(v) for v in row])
        text = f"{p.table}.{p.column} {_show(p.value)} {p.why}"
        if type(p.value) is AgentRef:
            text = f"{p.table}.agent_id {agent_of[REJECT]} (a planted agent that is rejected) {p.why}"
        found.append(MessyCase(p.table, key, p.column, text, p.outcome, p.expected))
    return found


def scatter(conn: sqlite3.Connection, world: _World, clean_keys: dict[str, list], share: float) -> int:
    """Give `share` of each table's clean rows one bad value from `SCATTER`; returns how many rows."""
    updates: dict[str, list] = {}
    for table, keys in clean_keys.items():
        kinds = [p for p in SCATTER if p.table == table]
        for key in world.rng.sample(keys, round(len(keys) * share)):
            p = world.rng.choice(kinds)
            sql = f'UPDATE {table} SET "{p.column}" = {_slot(p.value)} WHERE {KEYS[table]} = ?'
            updates.setdefault(sql, []).append((_param(p.value), key))
    for sql, params in updates.items():
        conn.executemany(sql, params)
    return sum(map(len, updates.values()))
