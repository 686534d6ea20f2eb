"""`source/chunk_size.py`: a chunk holds about `CHUNK_BYTES` of source values, so memory does not grow with
the texts' length."""

from __future__ import annotations

import sqlite3

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent_migration.core.tables import CHAT_MESSAGES
from agent_migration.sample import SCHEMA
from agent_migration.source import sqlite_read
from agent_migration.source.chunk_size import CHUNK_BYTES, MIN_ROWS, row_bytes, rows_per_chunk


def chats(messages: list[str | None], start: int = 1) -> sqlite3.Connection:
    """An in-memory source whose chat_messages hold `messages` (every other column NULL)."""
    conn = sqlite3.connect(":memory:")
    conn.executescript(SCHEMA)
    conn.executemany(
        "INSERT INTO chat_messages (id, message) VALUES (?, ?)", enumerate(messages, start=start)
    )
    return conn


def stored_bytes(conn) -> float:
    """The true average width, every row read: what the estimate stands for."""
    (avg,) = conn.execute(
        "SELECT avg(length(CAST(id AS BLOB)) + coalesce(length(CAST(message AS BLOB)), 0)) FROM chat_messages"
    ).fetchone()
    return avg + 8 * len(CHAT_MESSAGES.migrated)


@settings(max_examples=40, deadline=None)
@given(length=st.integers(0, 5_000), rows=st.integers(1, 3_000), start=st.integers(-(2**40), 2**40))
def test_a_chunk_of_equal_rows_holds_the_byte_budget(length, rows, start):
    conn = chats(["é" * length] * rows, start)  # "é": two bytes each, as SQLite stores it
    width = row_bytes(conn, CHAT_MESSAGES)
    assert width == pytest.approx(stored_bytes(conn), rel=0.05)  # rowids' digits vary a little
    got = rows_per_chunk(conn, CHAT_MESSAGES, 50_000)
    assert MIN_ROWS <= got <= 50_000
    assert got == 50_000 or got == MIN_ROWS or got * width == pytest.approx(CHUNK_BYTES, rel=0.001)


def test_long_texts_take_fewer_rows_per_chunk_and_short_ones_the_setting():
    short, long = chats(["hi"] * 2_000), chats(["a line\n" * 300] * 10_000)
    assert rows_per_chunk(short, CHAT_MESSAGES, 50_000) == 50_000
    wide = rows_per_chunk(long, CHAT_MESSAGES, 50_000)
    assert wide < 5_000  # 2,100 bytes a message: 6 MiB is about 3,000 of them
    chunks = list(sqlite_read.range_chunks(long, CHAT_MESSAGES, wide))
    assert sum(c.rows for c in chunks) == 10_000 and max(c.rows for c in chunks) == wide


def test_the_estimate_sees_long_texts_anywhere_in_the_table():
    """Rows probed over the whole rowid range: long texts in the second half only still count."""
    conn = chats(["x"] * 5_000 + ["y" * 4_000] * 5_000)
    assert row_bytes(conn, CHAT_MESSAGES) == pytest.approx(stored_bytes(conn), rel=0.15)


def test_bounds_an_empty_table_a_small_setting_and_huge_rows():
    assert row_bytes(chats([]), CHAT_MESSAGES) is None
    assert rows_per_chunk(chats([]), CHAT_MESSAGES, 50_000) == 50_000
    assert rows_per_chunk(chats(["y" * 4_000] * 10), CHAT_MESSAGES, 17) == 17  # the tests' tiny chunks stay
    assert rows_per_chunk(chats(["y" * 1_000_000] * 3), CHAT_MESSAGES, 50_000) == MIN_ROWS
