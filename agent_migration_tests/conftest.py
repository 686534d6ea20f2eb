"""Shared fixtures: a real embedded PostgreSQL for the session, a fresh database per test, real SQLite files."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path

import dagster as dg
import psycopg2
import pytest

from agent_migration.assets import extract, load, transform, validate, verify
from agent_migration.postgres import embedded
from agent_migration.resources import PostgresTarget, SqliteSource

MODULES = [extract, transform, load, verify, validate]
ASSETS = dg.load_assets_from_modules(MODULES)
CHECKS = dg.load_asset_checks_from_modules(MODULES)


def server_dir() -> Path:
    """A folder for an embedded server outside pytest's private (0700) tmp tree: the server runs as its own user."""
    path = Path(tempfile.mkdtemp(prefix="agent_migration_pg_"))
    path.chmod(0o755)
    return path


@pytest.fixture(scope="session")
def pg_server() -> Path:
    """One embedded server for the whole session (the project's own default path), stopped at the end."""
    folder = server_dir()
    embedded.ensure_database(folder / "data", "postgres")
    yield folder / "data"
    embedded.stop(folder / "data")
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_admin_url(pg_server) -> str:
    return embedded.ensure_database(pg_server, "postgres")


def _with_db(url: str, name: str) -> str:
    base, _, query = url.partition("?")
    return f"{base.rsplit('/', 1)[0]}/{name}" + (f"?{query}" if query else "")


def create_database(admin_url: str) -> str:
    """A fresh, empty database on the session server; returns its URL."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    conn = psycopg2.connect(admin_url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    return _with_db(admin_url, name)


@pytest.fixture
def new_database(pg_admin_url):
    """A factory of fresh, empty databases on the session server."""
    return lambda: create_database(pg_admin_url)


@pytest.fixture
def pg_url(new_database) -> str:
    return new_database()


def query(url: str, sql: str, params=None) -> list[tuple]:
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


def resources(sqlite_path: Path, pg_url: str, tmp_path: Path) -> dict:
    return {
        "source": SqliteSource(path=str(sqlite_path), backup_dir=str(tmp_path / "backups")),
        "target": PostgresTarget(database_url=pg_url),
        "io_manager": dg.FilesystemIOManager(base_dir=str(tmp_path / "storage")),
    }


def run_migration(
    sqlite_path: Path, pg_url: str, tmp_path: Path, raise_on_error: bool = True, resources_override: dict | None = None
):
    """Materialize every asset and check of the project, in process, against real files and servers."""
    home = tmp_path / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        return dg.materialize(
            [*ASSETS, *CHECKS],
            resources=resources_override or resources(sqlite_path, pg_url, tmp_path),
            instance=instance,
            raise_on_error=raise_on_error,
        )


@pytest.fixture(autouse=True)
def _no_ambient_config(monkeypatch):
    # Tests pass their source and target explicitly; a developer's environment must not leak in.
    for var in ("DATABASE_URL", "SQLITE_PATH", "EXPORT_SQLITE_PATH", "EMBEDDED_PG_DIR"):
        monkeypatch.delenv(var, raising=False)
    for var in [v for v in os.environ if v.startswith("MIGRATION_")]:
        monkeypatch.delenv(var, raising=False)
