"""The column rules on typed Arrow columns, for the rows SQLite stored as their rules expect.

A typed column (`sqlite_read.read_typed`) holds one storage class: int64, float64 or text. Each rule here
does in Arrow compute or numpy what its exact counterpart in `rules.py` does to such values, and says per
row one of three things: the target value; a reason (the few rejections whose text is plain: an integer
out of range); or "exact", for any value it does not judge itself (a bad timestamp, a long name, invalid
JSON...), which then takes the exact path, value by value. So the fast path never decides differently
from the exact rules: it only decides less (a property test holds them to the same result).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from agent_migration.core import rules as r
from agent_migration.core.values import json_problem, no_constants
from agent_migration.transform.payloads import concat

_FORMAT = "%Y-%m-%d %H:%M:%S"
_SQLITE_TIME = r"^[1-9]\d{3}-\d\d-\d\d \d\d:\d\d:\d\d$"  # year 1000 on: every such date fits the target


@dataclass(frozen=True)
class FastColumn:
    """What a rule made of a typed column: values (meaningful where `ok`), whether each row must take the
    exact path, and the reason for a rejection decided here (null where none)."""

    values: pa.Array
    exact: np.ndarray
    reasons: pa.Array | None = None
    kinds: pa.Array | None = None  # each reason without its value, so that reasons group


def valid_utf8(text: pa.Array) -> np.ndarray:
    """Per value: holds valid UTF-8 (ADBC hands SQLite text over unvalidated)."""
    try:
        text.validate(full=True)
        return np.ones(len(text), dtype=bool)
    except pa.ArrowInvalid:
        raw = as_bytes(text).to_pylist()
        return np.array([v is None or _decodes(v) for v in raw], dtype=bool)


def as_bytes(text: pa.Array) -> pa.Array:
    """The same buffers seen as binary: each value's bytes, whether valid UTF-8 or not."""
    return text.view(pa.large_binary() if pa.types.is_large_string(text.type) else pa.binary())


def _decodes(value: bytes) -> bool:
    try:
        value.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def _np(mask: pa.Array) -> np.ndarray:
    return pc.fill_null(mask, False).to_numpy(zero_copy_only=False)


def integers(rule: r.Integer, column: pa.Array, label: str, name: str) -> FastColumn:
    null = _np(pc.is_null(column))
    lo = rule.lo if rule.lo is not None else r.INT32_MIN
    hi = rule.hi if rule.hi is not None else r.INT32_MAX
    over = _np(pc.or_(pc.less(column, r.INT32_MIN), pc.greater(column, r.INT32_MAX)))
    outside = _np(pc.or_(pc.less(column, lo), pc.greater(column, hi))) & ~over
    if over.any() or outside.any():
        why = np.where(over, "overflows a PostgreSQL INTEGER", f"breaks CHECK ({rule.check_sql(name)})")
        got = pc.cast(column, pa.large_string())
        kind = concat(f"{label}: ", pa.array(why))
        text = concat(kind, " (got ", got, ")")
        bad, none = pa.array(over | outside), pa.scalar(None, pa.large_string())
        return FastColumn(
            pc.if_else(bad, pa.scalar(None, pa.int64()), column).cast(pa.int32()),
            null & rule.required,
            pc.if_else(bad, text, none),
            pc.if_else(bad, kind, none),
        )
    return FastColumn(column.cast(pa.int32()), null & rule.required)


def booleans(column: pa.Array) -> FastColumn:
    known = _np(pc.is_in(column, pa.array([0, 1])))
    exact = ~known & ~_np(pc.is_null(column))
    return FastColumn(pc.equal(column, 1), exact)


def _by_distinct(rule: r.Rule, column: pa.Array, label: str, name: str) -> tuple[pa.Array, np.ndarray, list]:
    """The exact rule applied once per distinct value (names, roles: they repeat), then spread: (indices
    into the distinct values, exact per row, the rule's value per distinct value)."""
    encoded = column.dictionary_encode()
    valid = valid_utf8(encoded.dictionary)
    texts = as_bytes(encoded.dictionary).to_pylist()
    distinct = pd.Series(
        [t.decode() if ok else None for t, ok in zip(texts, valid, strict=True)], dtype=object
    )
    checked = rule.apply(distinct, label, name)
    bad = checked.reasons.notna().to_numpy() | ~valid
    values = [None if pd.isna(v) else v for v in checked.values]
    exact = _np(pc.take(pa.array(bad), encoded.indices))
    if rule.required:  # NULL in a NOT NULL column: the exact rules give the reason
        exact |= _np(pc.is_null(column))
    return encoded.indices, exact, values


@dataclass(frozen=True)
class UserMap:
    """The derived users as Arrow arrays, for hash lookups in C (`pc.index_in`)."""

    names: pa.Array
    ids: pa.Array

    @classmethod
    def of(cls, users) -> UserMap:
        names = pa.array(users["username"].tolist(), pa.string())
        return cls(names, pa.array(users["id"].to_numpy(), pa.int32()))


def usernames(rule: r.Username, column: pa.Array, users: UserMap) -> FastColumn:
    """The derived users are exactly the valid usernames of the source: a name among them is valid and
    is its own value; any other (blank, too long, not UTF-8...) is the exact rules' to judge."""
    found = pc.index_in(column, value_set=users.names)
    exact = _np(pc.and_(pc.is_null(found), pc.is_valid(column)))
    if rule.required:
        exact |= _np(pc.is_null(column))
    return FastColumn(pc.take(users.ids, found), exact)


def texts(rule: r.Text, column: pa.Array, label: str, name: str) -> FastColumn:
    if isinstance(rule, r.OneOf):
        _, exact, _ = _by_distinct(rule, column, label, name)
        return FastColumn(column, exact)
    exact = ~valid_utf8(column)
    if rule.required:
        exact |= _np(pc.is_null(column))
    if rule.max_len is not None:
        exact |= _np(pc.greater(pc.utf8_length(column), rule.max_len))
    return FastColumn(column, exact)


def json_texts(rule: r.Json, column: pa.Array) -> FastColumn:
    """JSON text, validated once per distinct value by `json` itself. Text that is valid UTF-8 without a
    NUL can hold a NUL or a lone surrogate (which JSONB cannot store) only through a `\\u` escape."""
    encoded = column.dictionary_encode()
    valid = valid_utf8(encoded.dictionary)
    texts = as_bytes(encoded.dictionary).to_pylist()
    bad = np.zeros(len(texts), dtype=bool)
    for i, raw in enumerate(texts):
        if not valid[i]:
            bad[i] = True
            continue
        text = raw.decode()
        if text and (json_problem(text) if "\\u" in text else _not_json(text)):
            bad[i] = True
    exact = _np(pc.take(pa.array(bad), encoded.indices))
    empty = pc.or_kleene(pc.is_null(column), pc.equal(column, ""))
    values = pc.if_else(empty, pa.scalar(rule.empty, column.type), column)
    return FastColumn(values, exact)


def _not_json(text: str) -> bool:
    try:
        json.loads(text, parse_constant=no_constants)
    except (ValueError, RecursionError):
        return True
    return False


def timestamps(column: pa.Array) -> FastColumn:
    shaped = pc.match_substring_regex(column, _SQLITE_TIME)
    candidates = pc.if_else(shaped, column, pa.scalar(None, column.type))
    try:  # Arrow's ISO 8601 cast is strict: no day 31 of a 30-day month, no hour 24, no leap second
        parsed = candidates.cast(pa.timestamp("us"))
    except pa.ArrowInvalid:  # some value is not a real date and time: find which, one by one in C
        parsed = pc.strptime(candidates, format=_FORMAT, unit="us", error_is_null=True)
        same = pc.equal(
            pc.strftime(parsed.cast(pa.timestamp("s")), format=_FORMAT), candidates.cast(pa.string())
        )
        parsed = pc.if_else(same, parsed, pa.scalar(None, parsed.type))
    exact = ~_np(pc.is_valid(parsed)) & ~_np(pc.is_null(column))
    return FastColumn(parsed, exact)


def money(rule: r.Money, column: pa.Array) -> FastColumn:
    nums = column.to_numpy(zero_copy_only=False)
    with np.errstate(invalid="ignore", over="ignore"):
        unit = 10**rule.scale
        units = np.round(nums * unit)
        ok = (
            np.isfinite(nums)
            & (nums >= 0)
            & (np.abs(nums) < 10 ** (rule.precision - rule.scale))
            & (np.abs(nums - units / unit) <= rule.tolerance)
        )
    cents = np.where(ok, units, 0).astype(np.int64)
    words = np.zeros((len(cents), 2), dtype=np.int64)  # Decimal128: little-endian low, high words
    words[:, 0] = cents
    values = pa.Array.from_buffers(
        pa.decimal128(rule.precision, rule.scale), len(cents), [None, pa.py_buffer(words.tobytes())]
    )
    return FastColumn(values, ~ok)


def fast_column(rule: r.Rule, column: pa.Array, label: str, name: str, users: UserMap) -> FastColumn:
    """Dispatch on the rule; each handles its storage class only (see `Rule.stored`)."""
    if isinstance(rule, r.Integer):
        return integers(rule, column, label, name)
    if isinstance(rule, r.Boolean):
        return booleans(column)
    if isinstance(rule, r.Username):
        return usernames(rule, column, users)
    if isinstance(rule, r.Text):
        return texts(rule, column, label, name)
    if isinstance(rule, r.Json):
        return json_texts(rule, column)
    if isinstance(rule, r.Timestamp):
        return timestamps(column)
    if isinstance(rule, r.Money):
        return money(rule, column)
    return FastColumn(column, np.ones(len(column), dtype=bool))  # a rule without a fast path
