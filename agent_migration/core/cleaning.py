"""Table-level cleaning, exactly: a table's column rules applied to whole rows, duplicate keys, rejects
with their source key and payload, usernames remapped to users.id, rows naming a rejected agent.

This is the exact path, value by value as SQLite stored it. The streaming pipeline (`transform/streaming.py`)
sends here only the rows its vectorized fast path cannot accept as they are, and the global facts a
chunk cannot see on its own (`KeyFacts`: duplicate keys across chunks) come from SQLite.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd

from agent_migration.core.rules import Rule, Username
from agent_migration.core.tables import Table
from agent_migration.core.values import json_safe, key_text

REJECT, PAYLOAD, SOURCE_KEY = "_reject", "_payload", "_source_key"
AMBIGUOUS = "_ambiguous"  # the row's source key needs its rowid to name it (see `key_masks`)
SOURCE_ROWID = "_rowid"  # the row's SQLite rowid: names it in rejected_rows for change-only re-syncs


@dataclass(frozen=True)
class KeyFacts:
    """What one chunk cannot see about its keys, found over the whole table (`sqlite_read.key_facts`):
    `duplicates`, the rowids of rows whose clean key an earlier row holds (the first row wins), and
    `ambiguous`, the rowids whose raw key another row holds too, by value or as text (1, 1.0, '1')."""

    duplicates: frozenset[int] = field(default_factory=frozenset)
    ambiguous: frozenset[int] = field(default_factory=frozenset)

    @cached_property
    def rowids(self) -> np.ndarray:
        """Every rowid these facts name, sorted: rows the exact path decides, whatever their values."""
        return np.array(sorted(self.duplicates | self.ambiguous), dtype=np.int64)


def key_masks(table: Table, raw: pd.DataFrame, clean_key: pd.Series, facts: KeyFacts | None):
    """(duplicate, ambiguous) per row of `raw`: from `facts`, or found within the frame (rowid order)."""
    keys = raw[table.key_col.source]
    if facts is not None:
        rowids = raw[SOURCE_ROWID]
        return clean_key.notna() & rowids.isin(facts.duplicates), keys.isna() | rowids.isin(facts.ambiguous)
    duplicate = clean_key.notna() & clean_key.duplicated(keep="first")
    ambiguous = keys.isna() | keys.duplicated(keep=False) | keys.map(key_text).duplicated(keep=False)
    return duplicate, ambiguous


def key_facts_of(table: Table, raw: pd.DataFrame) -> KeyFacts:
    """The facts of a frame holding every row that can share a key with another (see `key_masks`)."""
    raw = raw.sort_values(SOURCE_ROWID, ignore_index=True)
    rule = table.key_col.rule
    clean = rule.apply(raw[table.key_col.source], f"{table.source}.{table.key_col.source}", table.key).values
    duplicate, ambiguous = key_masks(table, raw, clean, None)
    rowids = raw[SOURCE_ROWID].astype("int64")
    return KeyFacts(
        frozenset(int(r) for r in rowids[duplicate]), frozenset(int(r) for r in rowids[ambiguous])
    )


def source_key(table: Table, raw: pd.DataFrame, rows: pd.Index, ambiguous: pd.Series) -> pd.Series:
    """The source primary key as text, for `rows`; with the rowid where the key is NULL or not unique
    (`ambiguous`), so that each text names one row."""
    text = raw.loc[rows, table.key_col.source].map(key_text).astype(object)
    ambiguous = ambiguous.loc[rows]
    if SOURCE_ROWID in raw and ambiguous.any():
        rowids = raw.loc[ambiguous[ambiguous].index, SOURCE_ROWID].astype(str)
        text[ambiguous] = text[ambiguous].fillna("NULL") + " (rowid " + rowids + ")"
    return text


def reason_kind(reason: str) -> str:
    """A reason without the values it names ("agents.energy: breaks CHECK (...)"), so that reasons group."""
    parts = (re.sub(r" \(got .*\)$", "", part) for part in reason.split("; "))
    return "; ".join(re.sub(r"agent -?\d+, which", "agent N, which", part) for part in parts)


def payload(raw: pd.DataFrame, columns: list[str]) -> pd.Series:
    """Each row as JSON text keyed by its source column names, nothing dropped (see `json_safe`)."""
    rows = raw[columns].to_dict("records")
    texts = [json.dumps({k: json_safe(v) for k, v in row.items()}, ensure_ascii=False) for row in rows]
    return pd.Series(texts, index=raw.index, dtype=object)


def combine_reasons(parts: list[pd.Series], index: pd.Index) -> pd.Series:
    """One reason per row: every rule's reason for it, joined; None where all rules accepted it."""
    if not parts:
        return pd.Series(None, index=index, dtype=object)
    frame = pd.concat(parts, axis=1)
    bad = frame.notna().any(axis=1)
    out = pd.Series(None, index=index, dtype=object)
    out[bad] = ["; ".join(x for x in row if isinstance(x, str)) for row in frame[bad].itertuples(index=False)]
    return out


def clean_table(table: Table, raw: pd.DataFrame, facts: KeyFacts | None = None) -> pd.DataFrame:
    """Apply every column rule of `table` to its raw source frame (rows in rowid order).

    Returns one row per source row: the target columns (usernames still as text), `_source_key`,
    `_reject` (the reasons, or None when the row can be loaded) and `_payload` (JSON of the raw row,
    for rejected rows only). `facts` says which rows share keys across the whole table; without it,
    the frame is the whole table.
    """
    out = pd.DataFrame(index=raw.index)
    parts = []
    for col in table.migrated:
        checked = col.rule.apply(raw[col.source], f"{table.source}.{col.source}", col.name)
        out[col.name] = checked.values
        parts.append(checked.reasons)
    reasons = combine_reasons(parts, raw.index)
    dup, ambiguous = key_masks(table, raw, out[table.key], facts)
    if dup.any():
        label = f"{table.source}.{table.key_col.source}"
        why = pd.Series(f"{label}: duplicate source key", index=dup[dup].index)
        reasons = combine_reasons([reasons, why], raw.index)
    out[AMBIGUOUS] = ambiguous
    return with_rejects(out, reasons, raw, table)


def with_rejects(out: pd.DataFrame, reasons: pd.Series, raw: pd.DataFrame, table: Table) -> pd.DataFrame:
    """Set `_reject` (joining any earlier reasons), and `_source_key` and `_payload` for the rejected rows.

    Keys and payloads are built for rejected rows only: loaded rows keep their key in the target.
    """
    if REJECT in out:
        reasons = combine_reasons([out[REJECT], reasons], out.index)
    out[REJECT] = reasons
    if SOURCE_ROWID in raw:
        out[SOURCE_ROWID] = raw[SOURCE_ROWID]
    rejected = reasons.notna()
    out[SOURCE_KEY] = pd.Series(None, index=out.index, dtype=object)
    out[PAYLOAD] = pd.Series(None, index=out.index, dtype=object)
    if rejected.any():
        out.loc[rejected, SOURCE_KEY] = source_key(table, raw, out.index[rejected], out[AMBIGUOUS])
        out.loc[rejected, PAYLOAD] = payload(raw[rejected], table.source_columns)
    return out


def valid_values(rule: Rule, raw: pd.Series, label: str) -> pd.Series:
    """What `rule` makes of the raw values it accepts (rejected and NULL ones left out)."""
    checked = rule.apply(raw, label)
    return checked.values[checked.reasons.isna()].dropna()


def usernames(table: Table, raw: pd.DataFrame | Mapping[str, pd.Series]) -> pd.Series:
    """Every valid username a raw table references (rejected rows included), exact text.

    `raw`: the raw frame, or for each username column its distinct raw values."""
    found = []
    for col in table.migrated:
        if isinstance(col.rule, Username):
            found.append(valid_values(col.rule, raw[col.source], col.source))
    return pd.concat(found) if found else pd.Series([], dtype=object)


def derive_users(references: list[pd.Series], existing: pd.DataFrame, sequence: int = 0) -> pd.DataFrame:
    """The users table: one row per distinct referenced username.

    Existing users (`existing`: id, username, from the target) keep their ids so re-syncs never renumber;
    new usernames get ids after both the largest id and the users sequence (`sequence`, its last value),
    in sorted order, so a fresh migration is deterministic.
    """
    names = pd.Series(pd.concat(references).unique() if references else [], dtype=object)
    known = existing.set_index("username")["id"] if len(existing) else pd.Series(dtype="int64")
    kept = names[names.isin(known.index)]
    new = np.sort(names[~names.isin(known.index)].to_numpy(dtype=object))
    start = max(int(existing["id"].max()) if len(existing) else 0, sequence) + 1
    users = pd.DataFrame(
        {
            "id": np.concatenate([known[kept].to_numpy(dtype="int64"), np.arange(start, start + len(new))]),
            "username": np.concatenate([kept.to_numpy(dtype=object), new]),
        }
    )
    return users.astype({"id": "int64", "username": object}).sort_values("id", ignore_index=True)


def remap_users(table: Table, clean: pd.DataFrame, users: pd.DataFrame) -> pd.DataFrame:
    """Replace every username column of a cleaned table by the matching users.id."""
    ids = users.set_index("username")["id"]
    out = clean.copy()
    for col in table.migrated:
        if isinstance(col.rule, Username):
            out[col.name] = clean[col.name].map(ids).astype("Int64")
    return out


def reject_missing_parents(
    clean: pd.DataFrame, column: str, parents: pd.Series, table: Table, raw: pd.DataFrame
) -> pd.DataFrame:
    """Reject rows whose `column` names a parent id not in `parents` (missing or rejected in the source)."""
    label = f"{table.source}.{table.col(column).source}"
    ids = clean[column]
    orphan = ids.notna() & ~ids.isin(parents) & clean[REJECT].isna()
    reasons = pd.Series(None, index=clean.index, dtype=object)
    reasons[orphan] = [
        f"{label}: names agent {v}, which is missing or rejected (got {v})" for v in ids[orphan]
    ]
    return with_rejects(clean.copy(), reasons, raw, table)
