"""Rejected rows' payloads built from typed Arrow columns: each row as JSON text, vectorized.

The rows the fast path rejects hold only integers, finite... and valid text without NUL (see
`sqlite_read.typical`), so their JSON is their values as SQLite stored them: integers as digits, text
quoted and escaped exactly as `json.dumps(..., ensure_ascii=False)` escapes it (`"`, `\\` and the
control characters; emoji and other non-ASCII text as they are). When many values need escaping,
quotes, backslashes and the control characters with a short escape (a multi-line message: `\n`, `\r`,
`\t`, `\b`, `\f`) are escaped in Arrow, a pass for each that the column's bytes hold; the values with
another control character, and all of them when few values need escaping, by `str.translate` with
`json`'s own escapes. A row holding a NUL or a REAL is written by `json` itself, like the exact path's
payloads (`cleaning.payload`).
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from agent_migration.core.values import json_safe

_SPECIAL = r'["\\\x00-\x1f]'  # what JSON escapes in a string
_OTHER_CONTROL = r"[\x00-\x07\x0b\x0e-\x1f]"  # a control character without a short escape
_SHORT = (("\\", "\\\\"), ('"', '\\"'), ("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t"), ("\b", "\\b"), ("\f", "\\f"))


def concat(*parts) -> pa.Array:
    """Element-wise concatenation of text arrays and plain strings (null if any part is null)."""
    as_text = [
        pa.scalar(p, pa.large_string()) if isinstance(p, str) else p.cast(pa.large_string()) for p in parts
    ]
    return pc.binary_join_element_wise(*as_text, pa.scalar("", pa.large_string()))


# `json.dumps(text, ensure_ascii=False)`'s escapes (json.encoder.ESCAPE_DCT): the short forms, else \u00XX.
_ESCAPES = str.maketrans(
    {chr(i): f"\\u{i:04x}" for i in range(0x20)}
    | {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f", '"': '\\"', "\\": "\\\\"}
)


def json_text(text: str) -> str:
    """`text` as a JSON string, byte for byte as `json.dumps(text, ensure_ascii=False)` writes it."""
    return '"' + text.translate(_ESCAPES) + '"'


def _bytes_present(column: pa.Array) -> tuple[bool, set[int]]:
    """(a quote or backslash may appear, the control characters that may appear), from the column's
    UTF-8 bytes in a few numpy passes (a sliced array's whole buffer: a superset, never less)."""
    data = column.buffers()[2]
    if data is None or data.size == 0:
        return False, set()
    raw = np.frombuffer(data, np.uint8)
    quotes = bool((raw == 0x22).any() or (raw == 0x5C).any())
    return quotes, set(np.unique(raw[raw < 0x20]).tolist())


def _json_value(column: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """(JSON text per value, rows that need `json` itself: a NUL, which `json_safe` writes apart)."""
    n = len(column)
    if pa.types.is_integer(column.type):
        return pc.fill_null(column.cast(pa.large_string()), "null"), np.zeros(n, dtype=bool)
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        return pa.nulls(n, pa.large_string()), np.ones(n, dtype=bool)
    quotes, controls = _bytes_present(column)
    none = np.zeros(n, dtype=bool)
    if not quotes and not controls:  # (most columns: no scan for what is not there)
        return pc.fill_null(concat('"', column, '"'), "null"), none
    # One scan finds the values that need escaping; escaping every value costs seven times more.
    special = pc.fill_null(pc.match_substring_regex(column, _SPECIAL), False).to_numpy(zero_copy_only=False)
    nul = none if 0 not in controls else _mask(pc.match_substring(column, "\x00"))
    if special.sum() * 5 < n:  # few: each by `str.translate`
        quoted, by_translate = concat('"', column, '"'), special
    else:  # many (multi-line messages): the short escapes in Arrow, backslashes first, those present only
        escaped = column
        for char, escape in _SHORT:
            if (char in '"\\' and quotes) or ord(char) in controls:
                escaped = pc.replace_substring(escaped, char, escape)
        quoted = concat('"', escaped, '"')
        others = controls - {ord(c) for c, _ in _SHORT}
        by_translate = _mask(pc.match_substring_regex(column, _OTHER_CONTROL)) if others else none
    todo = by_translate & ~nul
    if todo.any():
        texts = pc.take(column, pa.array(np.flatnonzero(todo))).to_pylist()
        fixed = pa.array([json_text(v) for v in texts], pa.large_string())
        quoted = pc.replace_with_mask(quoted, pa.array(todo), fixed)
    return pc.fill_null(quoted, "null"), nul


def _mask(matches: pa.Array) -> np.ndarray:
    return pc.fill_null(matches, False).to_numpy(zero_copy_only=False)


def typed_payloads(rows: pa.Table, columns: list[str]) -> pa.Array:
    """Each row of `rows` as a JSON object keyed by the source column names."""
    if rows.num_rows == 0:
        return pa.array([], pa.large_string())
    parts: list = ["{"]
    slow = np.zeros(rows.num_rows, dtype=bool)
    for i, name in enumerate(columns):
        text, needs = _json_value(rows.column(name).combine_chunks())
        parts += [(", " if i else "") + json.dumps(name, ensure_ascii=False) + ": ", text]
        slow |= needs
    out = concat(*parts, "}")
    if slow.any():  # rare: the standard library writes those rows
        where = np.flatnonzero(slow)
        picked = rows.select(columns).take(pa.array(where)).to_pylist()
        texts = out.to_pylist()
        for i, row in zip(where, picked, strict=True):
            texts[i] = json.dumps({k: json_safe(v) for k, v in row.items()}, ensure_ascii=False)
        out = pa.array(texts, pa.large_string())
    return out
