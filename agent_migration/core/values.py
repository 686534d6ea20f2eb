"""Raw SQLite values as people and JSON see them: reasons, payloads, source keys, exact sums.

A raw value is what SQLite stored: None, int, float, str (undecodable bytes as lone surrogates) or bytes.
"""

from __future__ import annotations

import json
import math
import re
from decimal import MAX_EMAX, MIN_EMIN, ROUND_HALF_UP, Context, Decimal, localcontext

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

SURROGATES = re.compile("[\ud800-\udfff]")
DECIMAL = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)$")
EXACT = Context(prec=100_000, Emax=MAX_EMAX, Emin=MIN_EMIN)  # sums of any SQLite number, exactly


def show(value: object, limit: int = 60) -> str:
    """A short, printable rendering of a raw value for a rejection reason."""
    if value is pd.NA:  # NULL in Arrow text
        value = None
    if isinstance(value, bytes):
        return f"BLOB x'{value[:24].hex()}{'…' if len(value) > 24 else ''}'"
    if isinstance(value, str):
        text = value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        text = text.replace("\x00", "\\x00")
        return repr(text if len(text) <= limit else text[:limit] + "…")
    return repr(value)


def json_safe(value: object) -> object:
    """A raw SQLite value as something JSONB can hold, losslessly.

    Text with NUL characters or undecodable bytes and BLOBs become {"$type", "hex", "text"}: the exact
    bytes in hex plus a readable escaped rendering. A REAL that JSONB's numeric would not give back as
    a REAL (infinities, -0.0, exponent forms such as 1e+300, which read back as an integer) becomes
    {"$type": "real", "text": repr}. So a rollback restores every value with its storage class and bytes.
    """
    if isinstance(value, bytes):
        text = value.decode("utf-8", "backslashreplace").replace("\x00", "\\x00")
        return {"$type": "blob", "hex": value.hex(), "text": text}
    if isinstance(value, str) and ("\x00" in value or SURROGATES.search(value)):
        raw = value.encode("utf-8", "surrogateescape")
        text = raw.decode("utf-8", "backslashreplace").replace("\x00", "\\x00")
        return {"$type": "text", "hex": raw.hex(), "text": text}
    if isinstance(value, float) and (
        not math.isfinite(value) or "e" in repr(value) or (value == 0 and math.copysign(1.0, value) < 0)
    ):
        return {"$type": "real", "text": repr(value)}
    return value


def from_json_safe(value: object) -> tuple[object, bool]:
    """The raw SQLite value `json_safe` wrote, and whether it is TEXT to be stored from bytes."""
    if isinstance(value, dict) and value.get("$type") in ("blob", "text", "real"):
        kind = value["$type"]
        if kind == "real":
            return float(value["text"]), False
        return bytes.fromhex(value["hex"]), kind == "text"
    return value, False

def key_text(value: object) -> str | None:
    """A source key as readable text: undecodable bytes as \\xNN, NUL as \\x00, a BLOB as x'hex'."""
    if value is None or value is pd.NA:  # pd.NA: NULL in Arrow text
        return None
    if isinstance(value, bytes):
        return f"x'{value.hex()}'"
    if isinstance(value, str):
        return (
            value.encode("utf-8", "surrogateescape")
            .decode("utf-8", "backslashreplace")
            .replace("\x00", "\\x00")
        )
    return str(value)

def numeric(value: object) -> Decimal | None:
    """A raw cell's numeric value, exactly, as reconciliation counts it (None: not a number)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value)) if math.isfinite(value) else None
    if isinstance(value, str) and DECIMAL.match(value):
        return Decimal(value)
    return None


def sum_units(rule, values) -> Decimal:
    """The total of `values` in the column's unit: cents for money (half up, like PostgreSQL's round)."""
    total = Decimal(0)
    scale = getattr(rule, "scale", 0)  # money counts in cents
    with localcontext(EXACT):
        for v in values:
            n = numeric(v)
            if n is not None:
                total += n.scaleb(scale).quantize(Decimal(1), rounding=ROUND_HALF_UP) if scale else n
    return total


# ---------------------------------------------------------------- raw columns

FACTORIZE_MIN_ROWS = 4096
_SINGLE = {"string": str, "integer": int, "floating": float, "bytes": bytes}


def is_arrow_text(raw: pd.Series) -> bool:
    """An Arrow text column: every value is text or NULL (how the extraction hands text to `arrow_text` rules)."""
    dtype = raw.dtype
    return isinstance(dtype, pd.ArrowDtype) and (
        pa.types.is_string(dtype.pyarrow_dtype) or pa.types.is_large_string(dtype.pyarrow_dtype)
    )


def kinds_of(raw: pd.Series) -> pd.Series:
    """The Python type of each raw value (NoneType for NULL); C-speed when the column holds one type
    (then categorical, so that the rules' many `kinds.eq(t)` compare small integers, not objects)."""
    single = str if is_arrow_text(raw) else _SINGLE.get(pd.api.types.infer_dtype(raw, skipna=True))
    if single is None:
        return raw.map(type)
    codes = raw.notna().to_numpy().astype(np.int8)
    kinds = pd.Series(
        pd.Categorical.from_codes(codes, categories=pd.Index([type(None), single], dtype=object)),
        index=raw.index,
    )
    kinds.attrs["single"] = True
    return kinds


def repetitive(raw: pd.Series) -> bool:
    """Whether a column repeats its values enough to check distinct values only (judged on a sample)."""
    positions = np.arange(0, len(raw), max(1, len(raw) // 2000))
    sample = pd.Series(raw.array.take(positions)) if is_arrow_text(raw) else raw.iloc[positions]
    return sample.nunique(dropna=True) * 4 < len(sample)


def text_flags(text: pd.Series) -> tuple[pd.Index, pd.Index]:
    """Index labels of the strings holding a NUL, and of those holding undecodable bytes (surrogates).

    Arrow converts clean text in C and refuses surrogates; only then are strings looked at one by one.
    Arrow text is checked as it is (it cannot hold surrogates; NULLs are neither).
    """
    if is_arrow_text(text):
        nul = pc.fill_null(pc.match_substring(pa.array(text.array), "\x00"), False)
        return text.index[nul.to_numpy(zero_copy_only=False)], text.index[:0]
    values = text.to_numpy(dtype=object)
    try:
        arrow = pa.array(values, type=pa.string())
        bad = np.zeros(len(values), dtype=bool)
    except (UnicodeEncodeError, pa.ArrowException):
        bad = np.fromiter((bool(SURROGATES.search(v)) for v in values), dtype=bool, count=len(values))
        arrow = pa.array(np.where(bad, "", values), type=pa.string())
    nul = pc.match_substring(arrow, "\x00").to_numpy(zero_copy_only=False)
    return text.index[nul], text.index[bad]


def strings_in(obj: object) -> bool:
    """True when a parsed JSON value holds a string (key or value) that PostgreSQL JSONB cannot store."""
    if isinstance(obj, str):
        return "\x00" in obj or bool(SURROGATES.search(obj))
    if isinstance(obj, dict):
        return any(strings_in(k) or strings_in(v) for k, v in obj.items())
    if isinstance(obj, list):
        return any(strings_in(v) for v in obj)
    return False


def no_constants(name: str):
    raise ValueError(f"{name} is not JSON")


def json_problem(text: str) -> str | None:
    try:
        parsed = json.loads(text, parse_constant=no_constants)
    except (ValueError, RecursionError) as exc:
        return f"is not valid JSON ({str(exc)[:80]})"
    if strings_in(parsed):
        return "is JSON holding a NUL or unpaired surrogate, which JSONB cannot store"
    return None
