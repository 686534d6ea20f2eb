"""The whole graph with a tiny chunk size gives the very target one chunk gives."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import dagster as dg
import pytest

from agent_migration.core.tables import NOW, SOURCE_TABLES, TARGET_TABLES
from agent_migration.resources import PostgresTarget, SqliteSource
from agent_migration.sample import write_sample
from agent_migration_tests.conftest import ASSETS, CHECKS, create_database, query

LAST_USER = "first-seen-in-the-last-chunk"
REJECTED_AGENT = 900_001  # its gene overflows INTEGER: rejected, in the first chunk of agents


def messy_source(path: Path) -> dict[str, int]:
    """The messy tiny sample, its tables without key constraints (so keys can repeat), plus rows that
    only a whole-table view decides right when chunks are small."""
    write_sample(path, scale="tiny", seed=3)
    conn = sqlite3.connect(path)
    for table in SOURCE_TABLES:
        name = table.source
        conn.execute(f'CREATE TABLE "{name}_tmp" AS SELECT * FROM "{name}" ORDER BY rowid')
        conn.execute(f'DROP TABLE "{name}"')
        conn.execute(f'ALTER TABLE "{name}_tmp" RENAME TO "{name}"')
    first_agent, owner = conn.execute("SELECT id, owner FROM agents ORDER BY rowid LIMIT 1").fetchone()
    agent_cols = [r[1] for r in conn.execute("PRAGMA table_info(agents)")]
    # A rejected agent early on: moved to the front by rewriting the table with it first.
    conn.execute("CREATE TABLE agents_new AS SELECT * FROM agents WHERE 0")
    values = {c: None for c in agent_cols} | {
        "id": REJECTED_AGENT,
        "name": "too big",
        "owner": owner,
        "traits": "{}",
        "gene": 2**40,
        "created_at": "2024-01-01 00:00:00",
        "updated_at": "2024-01-01 00:00:00",
    }
    conn.execute(
        f"INSERT INTO agents_new VALUES ({', '.join('?' for _ in agent_cols)})",
        [values[c] for c in agent_cols],
    )
    conn.execute("INSERT INTO agents_new SELECT * FROM agents ORDER BY rowid")
    conn.execute("DROP TABLE agents")
    conn.execute("ALTER TABLE agents_new RENAME TO agents")
    # At the end: the first agent's key again (a duplicate split across chunks), a chat message naming
    # the rejected agent, and a user no earlier row names.
    conn.execute("INSERT INTO agents SELECT * FROM agents WHERE id = ? LIMIT 1", (first_agent,))
    conn.execute(
        "INSERT INTO chat_messages (id, agent_id, user_id, message, role, created_at) VALUES "
        "(800001, ?, ?, 'hello', 'user', '2024-01-01 00:00:00'), "
        "(800002, ?, ?, 'hi', 'assistant', '2024-01-01 00:00:01')",
        (REJECTED_AGENT, owner, first_agent, LAST_USER),
    )
    conn.execute("INSERT INTO user_balance SELECT * FROM user_balance ORDER BY rowid LIMIT 1")
    conn.commit()
    counts = {
        t.source: conn.execute(f'SELECT count(*) FROM "{t.source}"').fetchone()[0] for t in SOURCE_TABLES
    }
    conn.close()
    return counts


def migrate(path: Path, url: str, tmp: Path, chunk_rows: int):
    (tmp / "home").mkdir(parents=True)
    source = SqliteSource(path=str(path), backup_dir=str(tmp / "backups"), chunk_rows=chunk_rows)
    resources = {
        "source": source,
        "target": PostgresTarget(database_url=url),
        "io_manager": dg.FilesystemIOManager(base_dir=str(tmp / "storage")),
    }
    with dg.instance_for_test(temp_dir=str(tmp / "home")) as instance:
        result = dg.materialize([*ASSETS, *CHECKS], resources=resources, instance=instance)
        chunks = {
            t.source: result.asset_materializations_for_node(f"raw_{t.source}")[0].metadata["chunks"].value
            for t in SOURCE_TABLES
        }
    return result, chunks


def dump(url: str) -> dict[str, list]:
    """Every table, every column but the times the target stamps itself (DEFAULT now, no source)."""
    tables = {}
    for t in TARGET_TABLES:
        cols = ", ".join(c.name for c in t.columns if c.source or c.default != NOW)
        tables[t.name] = query(url, f"SELECT {cols} FROM {t.name} ORDER BY 1, 2")
    tables["rejected_rows"] = query(
        url,
        "SELECT source_table, source_key, reason, payload, source_rowid, reason_kind FROM migration.rejected_rows "
        "ORDER BY 1, 5",
    )
    return tables


@pytest.mark.slow
@pytest.mark.parametrize("chunk_rows", [3])
def test_tiny_chunks_give_the_same_target_as_one_chunk(tmp_path, pg_admin_url, chunk_rows):
    path = tmp_path / "db.sqlite"
    counts = messy_source(path)
    small_url, whole_url = create_database(pg_admin_url), create_database(pg_admin_url)

    small, chunks = migrate(path, small_url, tmp_path / "small", chunk_rows)
    whole, one = migrate(path, whole_url, tmp_path / "whole", 10**9)

    assert small.success and whole.success
    assert set(one.values()) == {1}
    assert chunks["chat_messages"] >= counts["chat_messages"] // chunk_rows >= 10, chunks
    assert dump(small_url) == dump(whole_url)

    # The rows that need the whole table, decided right:
    reasons = dict(query(small_url, "SELECT source_key, reason FROM migration.rejected_rows"))
    assert "overflows a PostgreSQL INTEGER" in reasons[str(REJECTED_AGENT)]
    assert f"names agent {REJECTED_AGENT}, which is missing or rejected" in reasons["800001"]
    duplicates = query(
        small_url,
        "SELECT source_table FROM migration.rejected_rows WHERE reason LIKE '%duplicate source key%'",
    )
    assert {"agents", "user_balance"} <= {t for (t,) in duplicates}
    assert query(small_url, "SELECT count(*) FROM users WHERE username = %s", (LAST_USER,)) == [(1,)]
    assert query(small_url, "SELECT count(*) FROM chat_messages WHERE id = 800002") == [(1,)]
