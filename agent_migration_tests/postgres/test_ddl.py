"""The generated target schema equals the plan's DDL, catalog entry by catalog entry, and is idempotent."""

from pathlib import Path

import psycopg2
import pytest

from agent_migration.postgres import ddl
from agent_migration_tests.conftest import query

SEED = Path(__file__).parents[1] / "data" / "seed_schema.sql"

CATALOG = {
    "columns": """
        SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
               pg_get_expr(d.adbin, d.adrelid)
        FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE n.nspname = 'public' AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped
        ORDER BY 1, a.attnum""",
    "constraints": """
        SELECT conrelid::regclass::text, conname, contype, pg_get_constraintdef(oid)
        FROM pg_constraint WHERE connamespace = 'public'::regnamespace ORDER BY 1, 2""",
    "indexes": "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1, 2",
    "sequences": "SELECT sequencename, data_type FROM pg_sequences WHERE schemaname = 'public' ORDER BY 1",
}


def catalog(url: str) -> dict[str, list]:
    return {name: query(url, sql) for name, sql in CATALOG.items()}


def apply(url: str, statements) -> None:
    conn = psycopg2.connect(url)
    with conn, conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement)
    conn.close()


def ours(url: str) -> list[str]:
    conn = psycopg2.connect(url)
    with conn, conn.cursor() as cur:
        created = ddl.ensure_schema(cur)
    conn.close()
    return created


def test_generated_schema_equals_the_plan(new_database):
    seed_url, our_url = new_database(), new_database()
    apply(seed_url, [SEED.read_text()])
    assert ours(our_url) == [
        "users",
        "agents",
        "user_balance",
        "payments",
        "chat_messages",
        "battles",
        "marketplace_listings",
    ]
    seed, mine = catalog(seed_url), catalog(our_url)
    for part in CATALOG:
        assert mine[part] == seed[part], part
    assert len(seed["indexes"]) == 7 + 2 + 19  # 7 primary keys, 2 UNIQUEs of users, the 19 named indexes


def test_schema_creation_is_idempotent_and_keeps_data(pg_url):
    ours(pg_url)
    apply(pg_url, ["INSERT INTO users (username) VALUES ('kept')"])
    assert ours(pg_url) == []
    assert query(pg_url, "SELECT username FROM users") == [("kept",)]
    tables = query(
        pg_url, "SELECT table_name FROM information_schema.tables WHERE table_schema = 'migration'"
    )
    assert {t for (t,) in tables} == {"rejected_rows", "source_stats", "source_schema", "runs", "cutover"}


def test_existing_tables_of_another_shape_are_refused_untouched(pg_url):
    apply(pg_url, ["CREATE TABLE agents (id INTEGER PRIMARY KEY, name TEXT)"])
    with pytest.raises(ValueError) as err:
        ours(pg_url)
    message = str(err.value)
    assert "agents.name is text, expected character varying(255)" in message
    assert "agents.owner_id is missing" in message
    columns = query(pg_url, "SELECT column_name FROM information_schema.columns WHERE table_name = 'agents'")
    assert sorted(c for (c,) in columns) == ["id", "name"]
    assert query(pg_url, "SELECT to_regclass('public.users')") == [(None,)]
