"""The target server and the benchmark's databases on it; the source's row counts and its 1 % change."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import psycopg2

from agent_migration.sample import COLUMNS, KEYS

UPDATES = {  # ~0.5 % of each table (rowid is the id; user_balance's key is a username)
    "agents": "xp = xp + 1",
    "user_balance": "coins = coins + 1",
    "payments": "status = CASE status WHEN 'completed' THEN 'refunded' ELSE 'completed' END",
    "chat_messages": "message = message || ' (edited)'",
}


def database_url(url: str, name: str) -> str:
    return urlsplit(url)._replace(path=f"/{name}").geturl()


def pgloader_url(url: str) -> str:
    """pgloader's form of a libpq URL: a Unix socket folder (`?host=/dir`) becomes `user@unix:/dir:port`."""
    parts = urlsplit(url)
    host = parse_qs(parts.query).get("host", [""])[0]
    user, db, port = unquote(parts.username or "postgres"), parts.path.lstrip("/"), parts.port or 5432
    if host.startswith("/"):
        return f"postgresql://{user}@unix:{host}:{port}/{db}"
    auth = f"{user}:{parts.password}" if parts.password else user
    return f"postgresql://{auth}@{parts.hostname or 'localhost'}:{port}/{db}"


def describe_target(url: str, embedded: bool) -> str:
    """What the report says of the server: embedded, or its host and port (never user or password)."""
    if embedded:
        return "embedded PostgreSQL (Unix socket)"
    parts = urlsplit(url)
    host = parse_qs(parts.query).get("host", [""])[0] or unquote(parts.hostname or "")
    port = parse_qs(parts.query).get("port", [""])[0] or parts.port or 5432
    if not host or host.startswith("/"):
        return f"PostgreSQL at {host or 'the default socket folder'}, port {port} (Unix socket)"
    return f"PostgreSQL at {host}:{port} (TCP)"


def server_version(url: str) -> str:
    with closing(psycopg2.connect(url)) as conn, conn.cursor() as cur:
        cur.execute("SHOW server_version")
        return cur.fetchone()[0]


def recreate(admin_url: str, name: str) -> str:
    conn = psycopg2.connect(admin_url)
    conn.autocommit = True
    with closing(conn), conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        cur.execute(f'CREATE DATABASE "{name}"')
    return database_url(admin_url, name)


def count_rows(path: Path) -> dict[str, int]:
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in COLUMNS}


def change_one_percent(path: Path, tag: str = "bench_") -> int:
    """Update ~0.5 %, delete ~0.25 % and insert ~0.25 % of each table's rows; returns the rows changed.
    `tag` prefixes the new user_balance keys (another tag for a second change: the keys stay unique)."""
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("BEGIN")
        for table, assignment in UPDATES.items():
            conn.execute(f"UPDATE {table} SET {assignment} WHERE rowid % 200 = 0")
        conn.execute("DELETE FROM chat_messages WHERE agent_id % 400 = 1")  # the deleted agents' messages
        for table, columns in COLUMNS.items():
            conn.execute(f"DELETE FROM {table} WHERE rowid % 400 = 1")
            key = f"'{tag}' || user_id" if table == "user_balance" else f"id + (SELECT max(id) FROM {table})"
            rest = ", ".join(f'"{c}"' for c in columns if c != KEYS[table])
            conn.execute(f"INSERT INTO {table} SELECT {key}, {rest} FROM {table} WHERE rowid % 400 = 2")
        changed = conn.total_changes
        conn.execute("COMMIT")
    return changed
