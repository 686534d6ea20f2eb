"""Re-sync plans read from pages: what the page comparison leaves out never changes the plan.

`pages.suspects` narrows the rows a re-sync compares with its baseline to the leaves whose bytes differ.
The property: for random edits of a source spanning many pages (long rows with overflow pages among
them), the plan made with the page ranges equals the plan made by comparing every row in SQL.
"""

import sqlite3
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent_migration.core.tables import SOURCE_TABLES
from agent_migration.sample import write_sample
from agent_migration.source import delta, pages

TABLES = [t.source for t in SOURCE_TABLES]
VALUE = {"agents": "name", "user_balance": "coins", "payments": "status", "chat_messages": "role"}
KEY = {t.source: t.key_col.source for t in SOURCE_TABLES}
REST = {t.source: ", ".join(c for c in t.source_columns if c != t.key_col.source) for t in SOURCE_TABLES}
LONG = 50  # every 50th chat message is long
ROW = "(1 + ?1 % (SELECT max(rowid) FROM {t}))"  # a row anywhere in the table
EDITS = {
    "update": "UPDATE {t} SET {value} = 'changed' WHERE rowid = " + ROW,  # in place
    "rekey": "UPDATE {t} SET {key} = CASE typeof({key}) WHEN 'integer' THEN {key} + 100000 "
    "ELSE {key} || 'k' END WHERE rowid = " + ROW,  # the row moves to another key
    # The end of a long row, its length kept: SQLite rewrites the overflow page in place, the leaf stays.
    "long": "UPDATE chat_messages SET message = substr(message, 1, length(message) - 1) || 'y' "
    f"WHERE rowid = ?1 / {LONG} * {LONG}",
    "delete": "DELETE FROM {t} WHERE rowid BETWEEN " + ROW + " AND " + ROW + " + 3",
    "insert": "INSERT INTO {t} ({rest}) SELECT {rest} FROM {t} WHERE rowid = " + ROW,
}


def _backup(src: Path, dst: Path) -> Path:
    with sqlite3.connect(src) as a, sqlite3.connect(dst) as b:
        a.backup(b)
    a.close()
    b.close()
    return dst


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """A clean sample over many pages, some chat messages long enough to spill onto overflow pages."""
    path = tmp_path_factory.mktemp("pages") / "db.sqlite"
    write_sample(path, agents=600, balances=150, payments=400, messages=4000, messy=False)
    with sqlite3.connect(path) as conn:
        conn.execute(f"UPDATE chat_messages SET message = printf('%.*c', 9000, 'x') || id WHERE id % {LONG} = 0")
    conn.close()
    return path


def _plans(new: Path, base: Path, monkeypatch) -> tuple[dict, dict]:
    with sqlite3.connect(new) as conn:
        by_pages = delta.plan(conn, str(base), new)
        with monkeypatch.context() as m:
            m.setattr(pages, "suspects", lambda *a, **k: None)
            by_rows = delta.plan(conn, str(base), new)
    conn.close()
    return by_pages, by_rows


edit = st.tuples(
    st.sampled_from(["update", "rekey", "long", "delete", "insert"]),
    st.sampled_from(TABLES),
    st.integers(1, 4000),
)


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(edits=st.lists(edit, min_size=1, max_size=12))
def test_a_plan_from_pages_is_the_plan_from_every_row(edits, source, tmp_path_factory, monkeypatch):
    tmp = tmp_path_factory.mktemp("edits")
    base = _backup(source, tmp / "base.sqlite")
    live = _backup(source, tmp / "live.sqlite")
    with sqlite3.connect(live) as conn:
        for kind, table, n in edits:
            conn.execute(EDITS[kind].format(t=table, key=KEY[table], value=VALUE[table], rest=REST[table]), (n,))
    conn.close()
    new = _backup(live, tmp / "new.sqlite")
    by_pages, by_rows = _plans(new, base, monkeypatch)
    assert by_pages == by_rows


def test_a_small_change_is_compared_on_few_pages_and_found(source, tmp_path, monkeypatch):
    base = _backup(source, tmp_path / "base.sqlite")
    live = _backup(source, tmp_path / "live.sqlite")
    with sqlite3.connect(live) as conn:
        conn.execute("UPDATE chat_messages SET role = 'changed' WHERE rowid = 2001")
    conn.close()
    new = _backup(live, tmp_path / "new.sqlite")
    found = pages.suspects(new, base, TABLES)
    assert found is not None
    chat = found.new["chat_messages"]
    assert any(lo <= 2001 <= hi for lo, hi in chat)
    assert sum(hi - lo + 1 for lo, hi in chat) < 200  # a leaf or two of 4,000 rows
    assert all(found.new[t] == () for t in TABLES if t != "chat_messages")
    by_pages, by_rows = _plans(new, base, monkeypatch)
    assert by_pages == by_rows
    assert by_pages["chat_messages"]["rowids"] == [2001]


def test_pages_prove_nothing_for_a_baseline_of_another_page_size(source, tmp_path):
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as conn:
        conn.execute("PRAGMA page_size = 8192")
        conn.execute("VACUUM")
        conn.execute("CREATE TABLE chat_messages (id INTEGER PRIMARY KEY)")
    conn.close()
    assert pages.suspects(source, other, TABLES) is None


def test_varints_decode_every_length():
    def encode(value: int) -> bytes:
        value &= (1 << 64) - 1
        if value >= 1 << 56:  # nine bytes: eight of seven bits, the last of eight
            high = [(value >> (8 + 7 * i)) & 0x7F for i in reversed(range(8))]
            return bytes(b | 0x80 for b in high) + bytes([value & 0xFF])
        groups = [(value >> (7 * i)) & 0x7F for i in reversed(range(max(1, (value.bit_length() + 6) // 7)))]
        return bytes(b | 0x80 for b in groups[:-1]) + bytes(groups[-1:])

    import numpy as np

    values = [0, 1, 127, 128, 16383, 16384, 2**31, 2**56 - 1, 2**56, 2**63 - 1, -1, -(2**63), 123456789012]
    raw = np.array([list((encode(v) + bytes(9))[:9]) for v in values], np.uint8)
    assert pages.varints(raw).tolist() == values
