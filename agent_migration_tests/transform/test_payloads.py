"""`transform/payloads.py`: rejects' payloads built in Arrow are byte for byte the per-row `json` payloads."""

from __future__ import annotations

import json

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from agent_migration.core.values import json_safe
from agent_migration.transform.payloads import _json_value, json_text, typed_payloads

# Control characters (a multi-line message), NUL, quotes, backslashes, emoji and other non-ASCII text.
# (No lone surrogates: an Arrow string holds valid UTF-8 only, and the typed rows are read as such.)
ALPHABET = st.one_of(
    st.sampled_from(['"', "\\", "\n", "\r", "\t", "\b", "\f", "\x00", "\x01", "\x1f", "\x7f", "😀", "é", "\u2028"]),
    st.characters(codec="utf-8"),
)
TEXTS = st.one_of(
    st.none(),
    st.text(ALPHABET, max_size=40),
    st.builds(lambda s, k: s * k, st.text(ALPHABET, min_size=1, max_size=8), st.integers(100, 3000)),
)


def per_row(rows: list[dict]) -> list[str]:
    """The exact path's payloads (`cleaning.payload`): `json` over `json_safe` values."""
    return [json.dumps({k: json_safe(v) for k, v in row.items()}, ensure_ascii=False) for row in rows]


@settings(max_examples=150, deadline=None)
@given(
    texts=st.lists(st.tuples(TEXTS, TEXTS, st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1))), max_size=40)
)
def test_vectorized_payloads_are_byte_equal_to_the_per_row_json(texts):
    table = pa.table(
        {
            "message": pa.array([t[0] for t in texts], pa.string()),
            "role": pa.array([t[1] for t in texts], pa.large_string()),
            "agent_id": pa.array([t[2] for t in texts], pa.int64()),
        }
    )
    columns = ["agent_id", "message", "role"]
    got = typed_payloads(table, columns).to_pylist()
    assert got == per_row(table.select(columns).to_pylist())


def test_multi_line_texts_take_no_per_row_json_and_a_nul_does():
    many = [f'line "{i}"\nsecond\\line\t{i}' for i in range(2000)] + ["plain"] * 10 + ["a\x00b"]
    column = pa.array(many, pa.string())
    _, by_json = _json_value(column)
    assert by_json.tolist() == [False] * 2010 + [True]  # only the NUL: `json_safe` writes it apart
    table = pa.table({"message": column})
    assert typed_payloads(table, ["message"]).to_pylist() == per_row(table.to_pylist())


@given(st.text(ALPHABET, max_size=200))
def test_json_text_is_jsons_own_string(text):
    assert json_text(text) == json.dumps(text, ensure_ascii=False)


@settings(max_examples=100, deadline=None)
@given(texts=st.lists(TEXTS, min_size=1, max_size=30), data=st.data())
def test_a_slice_escapes_as_its_own_values_do(texts, data):
    """The bytes checked for quotes and control characters are the whole buffer's, a slice's too: what
    lies outside the slice may add a pass, never skip one."""
    column = pa.array(texts, pa.large_string())
    start = data.draw(st.integers(0, len(texts) - 1))
    part = texts[start : data.draw(st.integers(start, len(texts)))]
    got, by_json = _json_value(column.slice(start, len(part)))
    assert by_json.tolist() == [t is not None and "\x00" in t for t in part]
    want = ["null" if t is None else json_text(t) for t in part]
    assert [g for g, j in zip(got.to_pylist(), by_json, strict=True) if not j] == [
        w for w, j in zip(want, by_json, strict=True) if not j
    ]
