"""Pure column rules: a raw column in, target values and a reason per refused value out; no I/O.

SQLite is dynamically typed, so a raw column is an object Series holding whatever each row stored:
None, int, float, str (undecodable bytes arrive as lone surrogates) or bytes (a BLOB), or Arrow text
when a batch holds only valid text. Each rule turns such a Series into target values plus a reason for
every value it refuses. Nothing is clamped, truncated or guessed: a value is converted exactly or the
row is rejected. Table-level cleaning (whole rows, keys, rejects) is in `cleaning.py`; the same rules
on typed Arrow columns, for the rows SQLite stored as expected, in `transform/fastpath.py`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal

import numpy as np
import pandas as pd

from agent_migration.core.values import (
    DECIMAL,
    FACTORIZE_MIN_ROWS,
    is_arrow_text,
    json_problem,
    kinds_of,
    repetitive,
    show,
    text_flags,
)

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
_WHOLE = re.compile(r"^[+-]?\d+(?:\.0*)?$")
_TIMESTAMP = re.compile(
    r"^(?P<date>\d{4}-\d{2}-\d{2})[ T]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?(?P<tz>Z|[+-]\d{2}(?::?\d{2})?)?$"
)
_BOOLS = {"1": True, "0": False, "true": True, "false": False, "t": True, "f": False}
EPOCH_MS_ABOVE = 10**11  # an epoch above this many seconds would be after year 5138: it is milliseconds
_TS_MIN, _TS_MAX = pd.Timestamp("0001-01-01"), pd.Timestamp("9999-12-31 23:59:59.999999")

@dataclass(frozen=True)
class Checked:
    """What a rule made of a column: target values, and a reason (None when fine) per row."""

    values: pd.Series
    reasons: pd.Series


class Rule:
    """A column rule. `required`: NULL rejects the row (the target column is NOT NULL)."""

    required: bool = False
    expects = "a value"
    null_rejects = True  # False where a missing value has a reason of its own (usernames)
    # The SQLite storage class (typeof) whose values this rule keeps as they are or rejects: a re-sync
    # matches keys and references of that class in SQL; values of any other class are always redone.
    keeps: str | None = None
    arrow_text = False  # the extraction may hand this rule Arrow text (see `is_arrow_text`)
    # The storage class the fast path reads for this rule as typed Arrow (`sqlite_read.read_typed`); a
    # value of any other class takes the exact path.
    stored: str | None = None
    repeats = False  # values repeat by nature (names, choices): always checked once per distinct value

    def apply(self, raw: pd.Series, label: str, column: str | None = None) -> Checked:
        """`label` names the source column in reasons ("agents.energy"); `column` the target one in CHECKs."""
        column = column or label.rsplit(".", 1)[-1]
        kinds = kinds_of(raw)
        if (
            len(raw) >= FACTORIZE_MIN_ROWS
            and kinds.attrs.get("single")
            and (self.repeats or repetitive(raw))
        ):
            # Few distinct values (roles, usernames, agent ids): check each once, then broadcast.
            codes, uniques = pd.factorize(raw, use_na_sentinel=True)
            if 2 * len(uniques) < len(raw):
                distinct = pd.Series([*uniques, None], dtype=object)
                sub = self.apply(distinct, label, column)
                at = np.where(codes < 0, len(uniques), codes)
                return Checked(
                    pd.Series(sub.values.array.take(at), index=raw.index),
                    pd.Series(sub.reasons.to_numpy().take(at), index=raw.index, dtype=object),
                )
        reasons = pd.Series(None, index=raw.index, dtype=object)
        is_str = kinds.eq(str)
        if is_str.any():
            nul, bad = text_flags(raw if is_arrow_text(raw) else raw[is_str])
            reasons[nul] = "contains a NUL character"
            reasons[bad] = "is not valid UTF-8 text"
        blob = kinds.eq(bytes)
        reasons[blob] = f"is a BLOB, not {self.expects}"
        null = raw.isna()
        if self.required and self.null_rejects:
            reasons[null] = "is NULL but the target column is NOT NULL"
        todo = reasons.isna() & ~null
        every = bool(todo.all())  # no copy of a large column when every value goes on
        values, why = self.convert(raw if every else raw[todo], kinds if every else kinds[todo], column)
        reasons[why.index] = why
        out = values if values.index.equals(raw.index) else values.reindex(raw.index)
        if len(why):
            out[why.index] = None
        has = reasons.notna()
        if has.any():
            reasons[has] = [
                f"{label}: {w} (got {show(v)})" for v, w in zip(raw[has], reasons[has], strict=True)
            ]
        return Checked(out, reasons)

    def convert(self, raw: pd.Series, kinds: pd.Series, column: str) -> tuple[pd.Series, pd.Series]:
        """Non-null, non-BLOB, clean-text values -> (converted values, reasons indexed like the refused rows)."""
        raise NotImplementedError

    def check_sql(self, column: str) -> str | None:
        """The CHECK this rule enforces, in the plan's SQL, or None."""
        return None


def _whole_numbers(raw: pd.Series, kinds: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Whole numbers as Python ints (object Series) and a reason for every other value."""
    reasons = pd.Series(None, index=raw.index, dtype=object)
    values = pd.Series(None, index=raw.index, dtype=object)
    is_int = kinds.eq(int)
    values[is_int] = raw[is_int]
    is_float = kinds.eq(float)
    if is_float.any():
        f = raw[is_float].astype(float)
        whole = np.isfinite(f) & (f == np.floor(f))
        values[f[whole].index] = [int(x) for x in f[whole]]
        reasons[f[~whole].index] = "is not a whole number"
    is_str = kinds.eq(str)
    if is_str.any():
        text = raw[is_str]
        whole = text.str.match(_WHOLE)
        values[text[whole].index] = [int(Decimal(x)) for x in text[whole]]
        reasons[text[~whole].index] = "is not a whole number"
    return values, reasons


@dataclass(frozen=True)
class Integer(Rule):
    lo: int | None = None
    hi: int | None = None
    required: bool = False
    expects = "an integer"
    stored = "integer"
    keeps = "integer"

    def convert(self, raw, kinds, column):
        values, reasons = _whole_numbers(raw, kinds)
        num = values.dropna()
        # Python ints of any size: compare as exact floats only where int64 cannot hold them.
        big = num.map(lambda v: not -(2**62) <= v <= 2**62)
        small = num[~big].astype("int64")
        over = pd.concat([small[(small < INT32_MIN) | (small > INT32_MAX)], num[big]]).index
        reasons[over] = "overflows a PostgreSQL INTEGER"
        if self.lo is not None or self.hi is not None:
            lo = self.lo if self.lo is not None else INT32_MIN
            hi = self.hi if self.hi is not None else INT32_MAX
            out = small[((small < lo) | (small > hi)) & (small >= INT32_MIN) & (small <= INT32_MAX)].index
            reasons[out] = f"breaks CHECK ({self.check_sql(column)})"
        ok = reasons.isna() & values.notna()
        return small[small.index.isin(ok[ok].index)].astype("Int64").reindex(raw.index), reasons.dropna()

    def check_sql(self, column):
        parts = []
        if self.lo is not None:
            parts.append(f"{column} >= {self.lo}")
        if self.hi is not None:
            parts.append(f"{column} <= {self.hi}")
        return " AND ".join(parts) or None


@dataclass(frozen=True)
class Text(Rule):
    max_len: int | None = None
    required: bool = False
    expects = "text"
    stored = "text"
    keeps = "text"
    arrow_text = True

    def convert(self, raw, kinds, column):
        reasons = pd.Series(None, index=raw.index, dtype=object)
        values = raw.copy()  # Arrow text is immutable: this copies no text
        arrow = is_arrow_text(values)
        # An INTEGER stored in a text column is text to SQLite too (CAST gives the same digits).
        is_int = kinds.eq(int)
        if is_int.any():
            values[is_int] = raw[is_int].map(str)
        reasons[kinds.eq(float)] = f"is a REAL, not {self.expects}"
        if self.max_len is not None:
            lengths = values.str.len()[reasons.isna()] if arrow else values[reasons.isna()].str.len()
            long = lengths[lengths > self.max_len]
            reasons[long.index] = [f"{int(n)} characters, longer than VARCHAR({self.max_len})" for n in long]
        ok = reasons.isna()
        if arrow:  # stays Arrow text (NULL where refused) all the way to the COPY
            return (values if ok.all() else values.where(ok)), reasons.dropna()
        return values.where(ok).astype(object), reasons.dropna()


@dataclass(frozen=True)
class OneOf(Text):
    repeats = True
    choices: tuple[str, ...] = ()
    max_len: int | None = None

    def __init__(self, choices: tuple[str, ...], max_len: int | None = None, required: bool = True):
        object.__setattr__(self, "choices", tuple(choices))
        object.__setattr__(self, "max_len", max_len)
        object.__setattr__(self, "required", required)

    def convert(self, raw, kinds, column):
        values, reasons = super().convert(raw, kinds, column)
        bad = ~values.isin(self.choices) & ~values.index.isin(reasons.index)
        reasons = pd.concat(
            [reasons, pd.Series(f"is not one of {list(self.choices)}", index=values[bad].index)]
        )
        return values.where(~bad), reasons

    def check_sql(self, column):
        return f"{column} IN ({', '.join(repr(c) for c in self.choices)})"


@dataclass(frozen=True)
class Username(Text):
    """A username reference: exact text (case and spaces kept); NULL/empty/blank means no user."""

    repeats = True

    max_len: int | None = 255
    required: bool = False
    expects = "a username"
    null_rejects = False

    def apply(self, raw, label, column=None):
        checked = super().apply(raw, label, column)
        if self.required:
            missing = checked.values.isna() & checked.reasons.isna()
            checked.reasons[missing] = [
                f"{label}: names no user, but the row is keyed by its user (got {show(v)})"
                for v in raw[missing]
            ]
        return checked

    def convert(self, raw, kinds, column):
        blank = raw.map(lambda v: isinstance(v, str) and not v.strip())
        kinds = kinds.copy()
        kinds[blank] = type(None)
        values, reasons = super().convert(raw.where(~blank), kinds, column)
        return values.where(~blank), reasons


@dataclass(frozen=True)
class Json(Rule):
    """JSON text -> JSONB. `empty` is what '' becomes ('{}' or None); NULL becomes `empty` too."""

    empty: str | None = None
    expects = "JSON text"
    stored = "text"

    def apply(self, raw, label, column=None):
        checked = super().apply(raw, label, column)
        if self.empty is not None:
            checked.values[raw.isna()] = self.empty
        return checked

    def convert(self, raw, kinds, column):
        reasons = pd.Series(None, index=raw.index, dtype=object)
        reasons[~kinds.eq(str)] = f"is not {self.expects}"
        text = raw[kinds.eq(str)]
        empty = text.eq("")
        probs = text[~empty].map(json_problem).dropna()
        reasons[probs.index] = probs
        values = raw.where(reasons.isna()).astype(object)
        values[empty[empty].index] = self.empty
        return values, reasons.dropna()


@dataclass(frozen=True)
class Boolean(Rule):
    expects = "a boolean"
    stored = "integer"

    def convert(self, raw, kinds, column):
        def as_bool(v):
            if isinstance(v, str):
                return _BOOLS.get(v.lower())
            return {0: False, 1: True}.get(v) if v in (0, 1) else None

        values = raw.map(as_bool)
        bad = values.isna()
        reasons = pd.Series("is not a boolean (0/1, true/false, t/f)", index=raw.index[bad], dtype=object)
        return values.astype("boolean"), reasons


@dataclass(frozen=True)
class Timestamp(Rule):
    """Text timestamps (SQLite's or ISO 8601, offsets converted to UTC) and Unix epochs -> UTC wall clock."""

    expects = "a timestamp"
    stored = "text"
    arrow_text = True

    def convert(self, raw, kinds, column):
        reasons = pd.Series(None, index=raw.index, dtype=object)
        values = pd.Series(pd.NaT, index=raw.index, dtype="datetime64[us]")
        is_text = kinds.eq(str)
        text = raw[is_text]
        digits = text.str.match(r"^[+-]?\d+$")
        numbers = pd.concat([raw[kinds.eq(int)], text[digits].map(int)])
        reasons[kinds.eq(float)] = "is a REAL, not a timestamp (epochs must be whole seconds or ms)"
        if len(numbers):
            ms = numbers.map(lambda v: v * 1000 if abs(v) <= EPOCH_MS_ABOVE else v)
            fits = ms.map(lambda v: -62_135_596_800_000 <= v <= 253_402_300_799_999)
            reasons[fits[~fits].index] = "is an epoch out of range"
            ok = ms[fits]
            values[ok.index] = pd.to_datetime(ok.astype("int64"), unit="ms").astype("datetime64[us]")
        text = text[~digits]
        # Fast path for SQLite's own format (exactly 19 characters, so zero-padded); the rest is matched below.
        plain = text[text.str.len() == 19]
        parsed = pd.to_datetime(plain, format="%Y-%m-%d %H:%M:%S", errors="coerce").dropna()
        values[parsed.index] = parsed.astype("datetime64[us]")
        text = text.drop(parsed.index)
        shaped = text.str.match(_TIMESTAMP)
        reasons[text[~shaped].index] = "is not a timestamp (YYYY-MM-DD HH:MM:SS[.ffffff], ISO 8601 or epoch)"
        good = text[shaped]
        if len(good):
            parsed = pd.to_datetime(good, format="ISO8601", utc=True, errors="coerce")
            bad = parsed.isna()
            reasons[good[bad].index] = "is not a valid date and time"
            parsed = parsed[~bad].dt.tz_convert("UTC").dt.tz_localize(None)
            within = (parsed >= _TS_MIN) & (parsed <= _TS_MAX)
            reasons[parsed[~within].index] = "is out of range"
            values[parsed[within].index] = parsed[within].astype("datetime64[us]")
        return values.where(reasons.isna()), reasons.dropna()


@dataclass(frozen=True)
class Money(Rule):
    """REAL -> DECIMAL(precision, scale): float noise within 1e-6 of a whole cent rounds; anything else rejects."""

    precision: int = 10
    scale: int = 2
    required: bool = True
    tolerance: float = 1e-6
    expects = "an amount"
    stored = "real"

    def convert(self, raw, kinds, column):
        reasons = pd.Series(None, index=raw.index, dtype=object)
        numeric = kinds.isin([int, float])
        text = raw[kinds.eq(str)]
        shaped = text.str.match(DECIMAL)
        reasons[text[~shaped].index] = "is not a number"
        nums = pd.concat([raw[numeric].astype(float), text[shaped].astype(float)])
        unit = 10**self.scale
        finite = np.isfinite(nums)
        reasons[nums[~finite].index] = "is not a finite number"
        nums = nums[finite]
        units = np.round(nums * unit)
        limit = 10 ** (self.precision - self.scale)
        checks = [
            (nums < 0, f"breaks CHECK ({self.check_sql(column)})"),
            (nums.abs() >= limit, f"does not fit DECIMAL({self.precision},{self.scale})"),
            (
                (nums - units / unit).abs() > self.tolerance,
                f"has precision below 1/{unit} (not a whole cent)",
            ),
        ]
        for bad, why in checks:
            reasons[bad[bad & reasons[bad.index].isna()].index] = why
        ok = units[reasons[units.index].isna()]
        q = Decimal(1).scaleb(-self.scale)
        values = pd.Series(None, index=raw.index, dtype=object)
        values[ok.index] = [(Decimal(int(u)) / unit).quantize(q) for u in ok]
        return values, reasons.dropna()

    def check_sql(self, column):
        return f"{column} >= 0"
