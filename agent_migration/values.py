"""Raw SQLite values as people and JSON see them: reasons, payloads, source keys, exact sums.

A raw value is what SQLite stored: None, int, float, str (undecodable bytes as lone surrogates) or bytes.
"""

from __future__ import annotations

import math
import re
from decimal import MAX_EMAX, MIN_EMIN, ROUND_HALF_UP, Context, Decimal, localcontext

import pandas as pd

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
    bytes in hex plus a readable escaped rendering; NaN and infinities become strings.
    """
    if isinstance(value, bytes):
        text = value.decode("utf-8", "backslashreplace").replace("\x00", "\\x00")
        return {"$type": "blob", "hex": value.hex(), "text": text}
    if isinstance(value, str) and ("\x00" in value or SURROGATES.search(value)):
        raw = value.encode("utf-8", "surrogateescape")
        text = raw.decode("utf-8", "backslashreplace").replace("\x00", "\\x00")
        return {"$type": "text", "hex": raw.hex(), "text": text}
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value

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
