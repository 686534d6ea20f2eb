"""Plain rows, vectorized: the canonical target row of a source row whose every value is plain, without
running the rules' pandas machinery row by row.

A value is plain when its rule keeps it as it is, obviously: an integer stored as an integer within the
rule's range, text stored as text without NUL within its length, a username that is not blank, a
boolean stored as 0 or 1, a timestamp in SQLite's own `YYYY-MM-DD HH:MM:SS`, a REAL amount within a
millionth of a whole cent. For those the canonical value is computed here with the same formulas as the
exact rules (`core/rules.py`); every other value, and every row that shares a key, names a parent that
does not load or holds one value that is not plain, is left to the exact rules. This is written apart
from the load path's fast path (`transform/fastpath.py`), from scratch, so that a bug there still shows.
A property test holds this module to the exact rules' result.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from agent_migration.core.cleaning import SOURCE_ROWID, KeyFacts
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
from agent_migration.core.values import SURROGATES

KEY = "_key"  # the canonical key column of a comparison frame


class _JsonNull:
    """JSON's `null` as a column value: apart from SQL NULL (None), so that neither passes for the other."""

    def __repr__(self) -> str:
        return "JSON null"

    def __reduce__(self) -> str:
        return "JSON_NULL"


JSON_NULL = _JsonNull()


def json_value(text: str | None) -> object:
    """A JSON column's canonical value: SQL NULL is None, the JSON text `null` is `JSON_NULL`."""
    if text is None:
        return None
    value = json.loads(text)
    return JSON_NULL if value is None else value

_SQLITE_TIME = "%Y-%m-%d %H:%M:%S"


def _array(values: list) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def _integers(rule: Integer, raw: list) -> tuple[np.ndarray, np.ndarray]:
    lo = max(INT32_MIN, rule.lo) if rule.lo is not None else INT32_MIN
    hi = min(INT32_MAX, rule.hi) if rule.hi is not None else INT32_MAX
    ok = np.fromiter(
        ((type(v) is int and lo <= v <= hi) or (v is None and not rule.required) for v in raw), bool, len(raw)
    )
    return ok, _array(raw)


def _texts(rule: Text, raw: list, utf8: bool) -> tuple[np.ndarray, np.ndarray]:
    limit = rule.max_len if rule.max_len is not None else float("inf")
    choices = set(rule.choices) if isinstance(rule, OneOf) else None
    ok = np.fromiter(
        (
            (type(v) is str and "\x00" not in v and len(v) <= limit and (choices is None or v in choices))
            or (v is None and not rule.required)
            for v in raw
        ),
        bool,
        len(raw),
    )
    if not utf8:  # some text of the chunk is not UTF-8 (kept as surrogates): the rules reject it
        ok &= np.fromiter((not (type(v) is str and SURROGATES.search(v)) for v in raw), bool, len(raw))
    return ok, _array(raw)


def _usernames(rule: Username, raw: list, utf8: bool) -> tuple[np.ndarray, np.ndarray]:
    ok, _ = _texts(rule, raw, utf8)
    # NULL, empty or blank means no user; a row keyed by its user is then not plain (the rules reject it).
    names = [v if type(v) is str and v.strip() else None for v in raw]
    if rule.required:
        ok &= np.fromiter((n is not None for n in names), bool, len(names))
    return ok, _array(names)


def _booleans(raw: list) -> tuple[np.ndarray, np.ndarray]:
    ok = np.fromiter((v is None or (type(v) is int and v in (0, 1)) for v in raw), bool, len(raw))
    return ok, _array([None if v is None or not ok[i] else v == 1 for i, v in enumerate(raw)])


def _timestamps(raw: list) -> tuple[np.ndarray, np.ndarray]:
    text = pd.Series([v if type(v) is str and len(v) == 19 else None for v in raw], dtype=object)
    stamps = pd.to_datetime(text, format=_SQLITE_TIME, errors="coerce").astype("datetime64[us]")
    parsed = stamps.notna().to_numpy()
    ok = parsed | np.fromiter((v is None for v in raw), bool, len(raw))
    micros = stamps.to_numpy().astype("int64").astype(object)
    micros[~parsed] = None
    return ok, micros


def _money(rule: Money, raw: list) -> tuple[np.ndarray, np.ndarray]:
    is_num = np.fromiter((type(v) in (float, int) for v in raw), bool, len(raw))
    nums = np.array([float(v) if n else 0.0 for v, n in zip(raw, is_num, strict=True)], dtype=float)
    unit = 10**rule.scale
    with np.errstate(invalid="ignore", over="ignore"):
        units = np.round(nums * unit)  # the exact rule's formula, so the same float decides
        ok = (
            is_num
            & np.isfinite(nums)
            & (nums >= 0)
            & (np.abs(nums) < 10 ** (rule.precision - rule.scale))
            & (np.abs(nums - units / unit) <= rule.tolerance)
        )
    cents = _array([int(u) if good else None for u, good in zip(units, ok, strict=True)])
    return ok, cents


def plain_column(col: Col, raw: list, utf8: bool = True) -> tuple[np.ndarray, np.ndarray] | None:
    """(plain per value, canonical value where plain), or None: the rule has no plain form here.
    `utf8`: the text was decoded as UTF-8 throughout (else each text is looked at for surrogates)."""
    rule = col.rule
    if isinstance(rule, Username):
        return _usernames(rule, raw, utf8)
    if isinstance(rule, Text):
        return _texts(rule, raw, utf8)
    if isinstance(rule, Integer):
        return _integers(rule, raw)
    if isinstance(rule, Boolean):
        return _booleans(raw)
    if isinstance(rule, Timestamp):
        return _timestamps(raw)
    if isinstance(rule, Money):
        return _money(rule, raw)
    if isinstance(rule, Json):  # its own rule decides (bad JSON, NUL escapes JSONB refuses), column-wide
        checked = rule.apply(pd.Series(raw, dtype=object), col.source, col.name)
        ok = checked.reasons.isna().to_numpy()
        return ok, _array(
            [
                json_value(v) if good and isinstance(v, str) else None
                for v, good in zip(checked.values, ok, strict=True)
            ]
        )
    return None


def _among(ids: np.ndarray, loaded: np.ndarray) -> np.ndarray:
    """Per id (None: no reference): None, or one of the sorted `loaded` keys."""
    none = np.fromiter((v is None for v in ids), bool, len(ids))
    is_int = np.fromiter((type(v) is int for v in ids), bool, len(ids))  # other values are not plain anyway
    wanted = np.array([v if i else 0 for v, i in zip(ids, is_int, strict=True)], dtype=np.int64)
    at = np.searchsorted(loaded, wanted).clip(0, max(len(loaded) - 1, 0))
    found = (loaded[at] == wanted) & is_int if len(loaded) else np.zeros(len(ids), dtype=bool)
    return none | found


def split(
    table: Table, raw: pd.DataFrame, facts: KeyFacts, parents: dict[str, np.ndarray], utf8: bool
) -> tuple[pd.DataFrame, np.ndarray]:
    """(the canonical rows of the plain rows, keyed; a mask of the rows left to the exact rules).

    `utf8`: the chunk's text decoded as UTF-8 throughout (else text is searched for surrogates)."""
    n = len(raw)
    if any(plain_column(c, []) is None for c in table.migrated):
        return pd.DataFrame(), np.ones(n, dtype=bool)
    ok = ~np.isin(raw[SOURCE_ROWID].to_numpy(dtype=np.int64), facts.rowids)
    values = {}
    for col in table.migrated:
        good, canonical = plain_column(col, raw[col.source].tolist(), utf8)
        ok &= good
        values[col.name] = canonical
    for col, _ in table.parent_refs:  # a plain reference names a parent that loads
        ok &= _among(values[col.name], parents[col.name])
    # dtype object throughout: pandas would make text columns `str`, whose missing value is NaN, not None.
    columns = {KEY: values[table.key][ok], **{c.name: values[c.name][ok] for c in table.migrated}}
    plain = pd.DataFrame({name: pd.Series(v, dtype=object) for name, v in columns.items()})
    return plain, ~ok
