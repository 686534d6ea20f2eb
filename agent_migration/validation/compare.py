"""Comparing the two sides: expected rows (`expected.py`) against the target's (`target_read.py`).

Loaded rows are joined on their canonical key and compared column by column, vectorized (numpy over
object arrays; JSON values by `json_equal`). Rejects are merge-joined on the source rowid, both sides in
rowid order: the source key and the payload, value by value with its storage class and bytes. Each
table's `Tally` counts rows and keeps the first differences for the log.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from agent_migration.core.rules import Username
from agent_migration.core.tables import Table
from agent_migration.core.values import from_json_safe, show
from agent_migration.validation.expected import KEY

SHOWN = 20  # differences kept per table for the log (every one is counted)


@dataclass(frozen=True)
class Difference:
    """One difference: a column of a row (`column`), or a whole row missing or extra (`column` None)."""

    table: str
    key: str  # "id=5", "user_id='alice'", "rejected source_key='x'"
    kind: str  # "differs" | "missing" | "extra"
    column: str | None = None
    source: Any = None
    target: Any = None

    def line(self) -> str:
        if self.kind == "missing":
            return f"{self.table} {self.key}: missing in PostgreSQL ({self.source})"
        if self.kind == "extra":
            return f"{self.table} {self.key}: extra in PostgreSQL ({self.target})"
        return (
            f"{self.table} {self.key} {self.column}: source {_show(self.source)}, target {_show(self.target)}"
        )


def _show(value: Any) -> str:
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)[:120]
    return show(value, 80)


@dataclass
class Tally:
    """A table's running counts (source rows compared; of them matched, differing, missing; target rows
    with no source row: extra) and its first `SHOWN` differences."""

    table: str
    compared: int = 0
    matched: int = 0
    differing: int = 0
    missing: int = 0
    extra: int = 0
    shown: list[Difference] = field(default_factory=list)

    def note(self, diff: Difference) -> None:
        if len(self.shown) < SHOWN:
            self.shown.append(diff)


def key_label(table: Table, key: Any) -> str:
    return f"{table.key}={show(key, 60) if isinstance(key, str) else key}"


def json_equal(a: Any, b: Any) -> bool:
    """Equal as JSON values: key order aside, numbers by value (1E2 = 100, as JSONB keeps it), true is no 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(v, b[k]) for k, v in a.items())
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def _equal(a: np.ndarray, b: np.ndarray, is_json: bool) -> np.ndarray:
    if is_json:
        return np.fromiter((json_equal(x, y) for x, y in zip(a, b, strict=True)), dtype=bool, count=len(a))
    same = a == b  # elementwise over objects: None == None, 3 == 3, 'x' == 'x'
    return np.asarray(same, dtype=bool)


def loaded(table: Table, expected: pd.DataFrame, got: pd.DataFrame, tally: Tally) -> None:
    """Expected loaded rows against the target rows read for their keys (`got` holds no other key)."""
    tally.compared += len(expected)
    merged = expected.merge(got, on=KEY, how="left", suffixes=("", "@target"), indicator=True)
    absent = (merged["_merge"] == "left_only").to_numpy()
    for key in merged.loc[absent, KEY]:
        tally.missing += 1
        tally.note(Difference(table.name, key_label(table, key), "missing", source="the source row loads"))
    both = merged[~absent]
    differs = np.zeros(len(both), dtype=bool)
    for col in table.migrated:
        a = both[col.name].to_numpy(dtype=object)
        b = both[f"{col.name}@target"].to_numpy(dtype=object)
        bad = ~_equal(a, b, col.pg_type == "JSONB")
        differs |= bad
        for key, x, y in zip(both[KEY].to_numpy()[bad], a[bad], b[bad], strict=True):
            tally.note(Difference(table.name, key_label(table, key), "differs", col.name, x, y))
    tally.differing += int(differs.sum())
    tally.matched += int((~differs).sum())


def same_raw(raw: Any, stored: Any) -> bool:
    """A payload value (`stored`, from JSONB) is the raw SQLite value: same storage class, same bytes."""
    value, text_bytes = from_json_safe(stored)
    if isinstance(raw, bytes):
        return isinstance(value, bytes) and not text_bytes and value == raw
    if isinstance(raw, str):
        if isinstance(value, bytes):
            return text_bytes and value == raw.encode("utf-8", "surrogateescape")
        return isinstance(value, str) and value == raw
    if isinstance(raw, float):
        return type(value) is float and repr(value) == repr(raw)
    return type(value) is type(raw) and value == raw


def reject(table: Table, expected: dict, got: tuple, tally: Tally) -> None:
    """One expected reject (rowid, source_key, reason, payload) against the target's reject of the same
    rowid (rowid, source_key, payload text, reason)."""
    _, key, payload_text, reason = got
    payload = json.loads(payload_text)
    label = f"rejected source_key={show(expected['source_key'])}"
    diffs = []
    if key != expected["source_key"]:
        diffs.append(Difference(table.name, label, "differs", "source_key", expected["source_key"], key))
    if reason != expected["reason"]:
        diffs.append(Difference(table.name, label, "differs", "reason", expected["reason"], reason))
    for column in table.source_columns:
        raw, stored = expected["payload"].get(column), payload.get(column, KeyError)
        if stored is KeyError or not same_raw(raw, stored):
            shown = "(absent)" if stored is KeyError else stored
            diffs.append(Difference(table.name, label, "differs", f"payload.{column}", raw, shown))
    if extra_keys := set(payload) - set(table.source_columns):
        diffs.append(Difference(table.name, label, "differs", "payload", None, sorted(extra_keys)))
    tally.compared += 1
    if diffs:
        tally.differing += 1
        for d in diffs:
            tally.note(d)
    else:
        tally.matched += 1


class Rejects:
    """The merge of expected rejects (chunk by chunk, rowid order) with the target's stream of rejects
    (rowid order): a rowid on one side only is a missing or an extra reject."""

    def __init__(self, table: Table, stream, tally: Tally):
        self.table, self.tally = table, tally
        self._rows = (row for chunk in stream for row in chunk)
        self._next = next(self._rows, None)

    def _extra(self, row: tuple) -> None:
        self.tally.extra += 1
        label = f"rejected source_key={show(row[1])} (rowid {row[0]})"
        self.tally.note(Difference(self.table.name, label, "extra", target="no source row is rejected so"))

    def upto(self, last_rowid: int, expected: pd.DataFrame) -> None:
        """Every target reject with rowid <= `last_rowid` against `expected` (this chunk's rejects)."""
        for row in expected.to_dict("records"):
            while self._next is not None and self._next[0] is not None and self._next[0] < row["rowid"]:
                self._extra(self._next)
                self._next = next(self._rows, None)
            if self._next is not None and self._next[0] == row["rowid"]:
                reject(self.table, row, self._next, self.tally)
                self._next = next(self._rows, None)
                while self._next is not None and self._next[0] == row["rowid"]:  # a rowid rejected twice
                    self._extra(self._next)
                    self._next = next(self._rows, None)
            else:
                self.tally.compared += 1
                self.tally.missing += 1
                label = f"rejected source_key={show(row['source_key'])}"
                self.tally.note(
                    Difference(self.table.name, label, "missing", source="not in migration.rejected_rows")
                )
        while self._next is not None and self._next[0] is not None and self._next[0] <= last_rowid:
            self._extra(self._next)
            self._next = next(self._rows, None)

    def finish(self) -> None:
        """Target rejects past the last source row (or without a rowid): extra."""
        while self._next is not None:
            self._extra(self._next)
            self._next = next(self._rows, None)


def key_codes(table: Table, keys) -> np.ndarray:
    """Canonical keys as sortable 64-bit codes, so the set of seen keys stays small: integers as they
    are, usernames by a 64-bit hash."""
    if not isinstance(table.key_col.rule, Username):
        return np.asarray(keys, dtype=np.int64).view(np.uint64)
    values = np.asarray(list(keys), dtype=object)
    return pd.util.hash_array(values) if len(values) else np.empty(0, dtype=np.uint64)


def strays(table: Table, seen: np.ndarray, stream, tally: Tally) -> None:
    """Target rows (streamed keys) whose key no source row loads: extra. `seen`: sorted hashes."""
    for keys in stream:
        hashes = key_codes(table, keys)
        at = np.searchsorted(seen, hashes).clip(0, max(len(seen) - 1, 0))
        extra = seen[at] != hashes if len(seen) else np.ones(len(hashes), dtype=bool)
        for key in np.asarray(keys, dtype=object)[extra]:
            tally.extra += 1
            tally.note(
                Difference(table.name, key_label(table, key), "extra", target="no source row loads it")
            )


def sorted_once(parts: list[np.ndarray], dtype) -> np.ndarray:
    """The parts as one sorted array, sorted in place: one copy of the keys in memory, not three."""
    every = np.concatenate(parts) if parts else np.empty(0, dtype)
    parts.clear()
    every.sort()
    return every
