"""The Dagster resources: the SQLite source, the PostgreSQL target (or the embedded default), the
rollback export's file and the storage of the values between steps.

Each resource is its settings as fields (None: read at run time from the environment, else the
default; see `core/settings.py`) on top of the stage's own class (`SourceDatabase`,
`TargetDatabase`), which holds the connections in `@contextmanager` methods. Engines are created inside
them and never pickled.
"""

from __future__ import annotations

import time
from pathlib import Path

import dagster as dg
from pydantic import Field

from agent_migration.core.errors import MigrationError
from agent_migration.core.settings import EXPORT_PATH, STORAGE, resolve
from agent_migration.postgres import embedded
from agent_migration.postgres.connection import TargetDatabase
from agent_migration.source.database import SourceDatabase


class SqliteSource(SourceDatabase, dg.ConfigurableResource):
    """The app's SQLite database, opened read-only; every run reads one consistent backup copy of it.

    Every field left unset is read at run time from its environment variable, else its default (`SOURCE`),
    so a run config that sets one field keeps the others from the environment."""

    path: str | None = Field(default=None, description="The source file (env SQLITE_PATH; default db.sqlite).")
    backup_dir: str | None = Field(
        default=None,
        description="Where each run's source copy is kept (env MIGRATION_BACKUP_DIR; default .migration/backups).",
    )
    keep_backups: int | None = Field(
        default=None, description="How many source copies to keep (env MIGRATION_KEEP_BACKUPS; default 5)."
    )
    keep_runs: int | None = Field(
        default=None, description="How many runs' folders of cleaned rows to keep (env MIGRATION_KEEP_RUNS; default 5)."
    )
    min_free_mb: int | None = Field(
        default=None,
        description="Free space a run leaves on each disk it writes to, beyond what it needs (env "
        "MIGRATION_MIN_FREE_MB; default 256).",
    )
    work_dir: str | None = Field(
        default=None,
        description="Where each run's cleaned rows wait for publish (default: `runs` beside the backup folder).",
    )
    chunk_rows: int | None = Field(
        default=None,
        description="Rows read and cleaned at a time: sets the memory, not the source (env MIGRATION_CHUNK_ROWS; "
        "default 50000).",
    )
    validate_sample: int | None = Field(
        default=None,
        description="Source rows per table that every migrate run compares with PostgreSQL, value by value "
        "(env MIGRATION_VALIDATE_SAMPLE; default 1000; 0 turns the values_match_source checks off).",
    )
    busy_timeout_s: float = Field(
        default=30.0, description="How long to wait while a writer locks the source."
    )


class ExportFile(dg.ConfigurableResource):
    """Where `rollback_export` writes its SQLite file: a new file, never one that exists."""

    path: str | None = Field(
        default=None,
        description="The new SQLite file (env EXPORT_SQLITE_PATH; default .migration/exports/rollback-<UTC time>.sqlite).",
    )

    def destination(self) -> Path:
        """The file to write, checked: it must not exist, and its folder must (the default one is made)."""
        given = resolve(EXPORT_PATH, self.path)
        raw = given.value
        if not raw:
            folder = Path(".migration/exports")
            folder.mkdir(parents=True, exist_ok=True)
            raw = str(folder / f"rollback-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}.sqlite")
        path = Path(raw).resolve()
        if path.exists() or path.is_symlink():
            raise MigrationError(
                f"EXPORT_SQLITE_PATH {raw!r} already exists ({given.where}): the export never overwrites a file "
                "(it was left as it is). Choose a new path, or move that file away."
            )
        if not path.parent.is_dir():
            raise MigrationError(
                f"EXPORT_SQLITE_PATH {raw!r} ({given.where}): the folder {str(path.parent)!r} does not exist."
            )
        return path


class RunStorage(dg.FilesystemIOManager):
    """Dagster's pickling IO manager for the small typed values between steps, its folder read at run time
    (env MIGRATION_STORAGE; default .migration/storage)."""

    def create_io_manager(self, context: dg.InitResourceContext):
        folder = resolve(STORAGE, self.base_dir).value
        return dg.FilesystemIOManager(base_dir=folder).create_io_manager(context)


class PostgresTarget(TargetDatabase, dg.ConfigurableResource):
    """The PostgreSQL target. Without a URL (and no env DATABASE_URL) an embedded server is started."""

    database_url: str | None = Field(
        default=None,
        description="postgresql://user:pass@host:port/db (env DATABASE_URL; default: the embedded server).",
    )
    embedded_dir: str | None = Field(
        default=None, description=f"Data folder of the embedded server (env EMBEDDED_PG_DIR; default {embedded.DEFAULT_DIR})."
    )
    connections: int | None = Field(
        default=None,
        description="Connections a first load copies and builds indexes on at once (env MIGRATION_PG_CONNECTIONS; "
        "default 3; 1: one transaction on one connection, as a re-sync always is).",
    )
    statement_timeout_s: int = Field(default=900, description="Longest a single statement may run.")
    connect_timeout_s: int = Field(default=10, description="Longest wait for a connection.")
    lock_wait_s: float = Field(default=600.0, description="Longest wait while another run writes the target.")
    max_reject_share: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="The reject budget: the largest share of a source table's rows that may be rejected; above "
        "it migrate publishes nothing (default: env MIGRATION_MAX_REJECT_SHARE, else 0.5; see `budget.py`).",
    )
