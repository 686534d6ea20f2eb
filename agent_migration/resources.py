"""Resources: the SQLite source (read-only, snapshotted) and the PostgreSQL target (or the embedded default).

Connections live in `@contextmanager` methods; engines are created inside them and never pickled.
Errors are `MigrationError`s whose message names the file, table, setting or server at fault and
never contains a password.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import dagster as dg
from pydantic import Field
from sqlalchemy import create_engine
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import NullPool

from agent_migration import embedded
from agent_migration.errors import MigrationError
from agent_migration.settings import Env, Setting, not_negative, positive, resolve
from agent_migration.source import disk
from agent_migration.source.files import same_file, shared_lock


def decode_text(raw: bytes) -> str:
    # Undecodable bytes become lone surrogates, so the row rules can reject them and payloads keep them.
    return raw.decode("utf-8", "surrogateescape")


SOURCE = {
    "path": Env("SQLITE_PATH", "source.path", "db.sqlite"),
    "chunk_rows": Env(
        "MIGRATION_CHUNK_ROWS", "source.chunk_rows", 50_000, int, "a whole number of rows above 0", positive
    ),
    "backup_dir": Env("MIGRATION_BACKUP_DIR", "source.backup_dir", ".migration/backups"),
    "keep_backups": Env(
        "MIGRATION_KEEP_BACKUPS", "source.keep_backups", 5, int, "a whole number of copies, 1 or more", positive
    ),
    "keep_runs": Env(
        "MIGRATION_KEEP_RUNS", "source.keep_runs", 5, int, "a whole number of run folders, 1 or more", positive
    ),
    "min_free_mb": Env(
        "MIGRATION_MIN_FREE_MB", "source.min_free_mb", 256, int, "a whole number of MiB, 0 or more", not_negative
    ),
}

TARGET = {
    "database_url": Env("DATABASE_URL", "target.database_url", None),
    "embedded_dir": Env("EMBEDDED_PG_DIR", "target.embedded_dir", embedded.DEFAULT_DIR),
    "connections": Env(
        "MIGRATION_PG_CONNECTIONS", "target.connections", 3, int, "a whole number of connections, 1 or more", positive
    ),
}


class SqliteSource(dg.ConfigurableResource):
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
    busy_timeout_s: float = Field(
        default=30.0, description="How long to wait while a writer locks the source."
    )

    def setting(self, field: str) -> Setting:
        """A field's value and where it came from (resource config, environment, default), read now."""
        return resolve(SOURCE[field], getattr(self, field))

    @property
    def sqlite_path(self) -> str:
        return self.setting("path").value

    @property
    def rows_per_chunk(self) -> int:
        return self.setting("chunk_rows").value

    @property
    def backup_folder(self) -> Path:
        return Path(self.setting("backup_dir").value)

    @property
    def runs_folder(self) -> Path:
        return Path(self.work_dir) if self.work_dir else self.backup_folder.parent / "runs"

    def check_file(self) -> Path:
        setting = self.setting("path")
        path = Path(setting.value)
        problem = None
        if not path.exists():
            problem = "does not exist"
        elif path.is_dir():
            problem = "is a directory, not a SQLite file"
        elif path.stat().st_size == 0:
            problem = "is empty (0 bytes), not a SQLite database"
        else:
            try:
                with open(path, "rb") as f:
                    header = f.read(16)
            except PermissionError:
                header, problem = b"", "is not readable (permission denied; check its permissions)"
            if not problem and header != b"SQLite format 3\x00":
                problem = "is not a SQLite database (wrong file header)"
        if problem:
            raise MigrationError(f"SQLITE_PATH {str(path)!r} {problem} ({setting.where}).")
        return path

    @contextmanager
    def connect(self, path: str | os.PathLike | None = None) -> Iterator[sqlite3.Connection]:
        """A read-only connection to `path` (default: the source itself)."""
        target = Path(path or self.check_file()).resolve()
        conn = sqlite3.connect(f"file:{target}?mode=ro", uri=True, timeout=self.busy_timeout_s)
        conn.text_factory = decode_text
        try:
            yield conn
        finally:
            conn.close()

    @contextmanager
    def connect_arrow(self, path: str | os.PathLike) -> Iterator:
        """A read-only ADBC connection to a snapshot: typed Arrow batches, read in C."""
        import adbc_driver_sqlite.dbapi as adbc_sqlite

        conn = adbc_sqlite.connect(f"file:{quote(str(Path(path).resolve()))}?mode=ro")
        try:
            yield conn
        finally:
            conn.close()

    def snapshot(self, run_id: str, keep: str | None = None) -> Path:
        """Copy the live source into the backup folder: as a file under SQLite's shared lock, or for a WAL
        database with SQLite's online backup API. Keep the last N (and `keep`: the snapshot a change-only
        re-sync compares with; a copy byte-identical to it needs no integrity check of its own)."""
        source = self.check_file()
        folder = self.backup_folder
        folder.mkdir(parents=True, exist_ok=True)
        disk.check_free_space(self, source, folder, run_files=self.runs_folder)
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        copy = (folder / f"{source.stem}-{stamp}-{run_id[:8]}.sqlite").resolve()
        deadline = time.monotonic() + self.busy_timeout_s
        busy = MigrationError(
            f"SQLITE_PATH {self.sqlite_path!r}: database is busy (locked by a writer for more than "
            f"{self.busy_timeout_s:g} s; raise SqliteSource.busy_timeout_s or retry later)."
        )

        def give_up_when_late(status: int, remaining: int, total: int) -> None:
            # Python's backup() retries a locked source forever; this bounds the wait.
            if status in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED) and time.monotonic() > deadline:
                raise busy

        try:
            with self.connect(source) as src, shared_lock(src) as locked:
                if locked and keep and same_file(source, keep, cache=False):
                    return Path(keep).resolve()  # the same bytes: that snapshot serves this run too
                if locked:  # the pages the backup API would copy, at a file copy's speed (1.2 GB: 2 s, not 6)
                    shutil.copyfile(source, copy)
                else:
                    dst = sqlite3.connect(copy)
                    try:
                        src.backup(dst, progress=give_up_when_late)
                        # The copy inherits WAL mode; readers opening a WAL file at once race for its
                        # recovery and ADBC has no busy handler ("database is locked"). One file, no -wal.
                        dst.execute("PRAGMA journal_mode=DELETE")
                    finally:
                        dst.close()
        except MigrationError:
            copy.unlink(missing_ok=True)
            raise
        except sqlite3.OperationalError as exc:
            copy.unlink(missing_ok=True)
            if "locked" in str(exc) or "busy" in str(exc):
                raise busy from None
            raise MigrationError(f"SQLITE_PATH {self.sqlite_path!r} cannot be read: {exc}.") from None
        except sqlite3.DatabaseError as exc:
            copy.unlink(missing_ok=True)
            raise MigrationError(f"SQLITE_PATH {self.sqlite_path!r} is corrupt or not a database: {exc}.") from None
        if keep is None or not same_file(copy, keep):
            self._check_integrity(copy)
        self._prune(folder, source.stem, keep)
        return copy

    def _prune(self, folder: Path, stem: str, keep: str | None) -> None:
        """Keep the last `keep_backups` copies, and always the re-sync baseline."""
        backups = sorted(folder.glob(f"{stem}-*.sqlite"), key=lambda p: p.stat().st_mtime)
        for old in backups[: max(0, len(backups) - self.setting("keep_backups").value)]:
            if keep is None or old.resolve() != Path(keep).resolve():
                old.unlink(missing_ok=True)

    def _check_integrity(self, copy: Path) -> None:
        try:
            with self.connect(copy) as conn:
                result = conn.execute("PRAGMA quick_check").fetchall()
        except sqlite3.DatabaseError as exc:
            raise MigrationError(f"SQLITE_PATH {self.sqlite_path!r} is corrupt: {exc}.") from None
        if result != [("ok",)]:
            detail = "; ".join(str(r[0]) for r in result[:3])
            raise MigrationError(f"SQLITE_PATH {self.sqlite_path!r} is corrupt (integrity check: {detail}).")


_PASSWORD = re.compile(r"(://[^:/@]*:)[^@]*@")


def redact(text: str, url: URL | None = None) -> str:
    """`text` without any password (the URL's own, and any user:password@ form)."""
    if url is not None and url.password:
        text = text.replace(str(url.password), "***")
    return _PASSWORD.sub(r"\1***@", text)


EXPORT_PATH = Env("EXPORT_SQLITE_PATH", "export.path", None)
STORAGE = Env("MIGRATION_STORAGE", "io_manager.base_dir", ".migration/storage")


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


class PostgresTarget(dg.ConfigurableResource):
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

    def setting(self, field: str) -> Setting:
        """A field's value and where it came from (resource config, environment, default), read now."""
        return resolve(TARGET[field], getattr(self, field))

    @property
    def embedded_folder(self) -> str:
        return self.setting("embedded_dir").value

    def url(self) -> URL:
        given = self.setting("database_url")
        raw = given.value or embedded.ensure_database(self.embedded_folder)
        try:
            url = make_url(raw)
        except (ArgumentError, ValueError):
            raise MigrationError(
                "DATABASE_URL is malformed: expected postgresql://user:password@host:port/database "
                f"({given.where})."
            ) from None
        if url.get_backend_name() not in ("postgresql", "postgres"):
            raise MigrationError(
                f"DATABASE_URL must be a postgresql:// URL, not {url.drivername}:// ({given.where})."
            )
        # SQLAlchemy 2.1 maps plain postgresql:// to psycopg 3; this project ships psycopg2.
        return url.set(drivername="postgresql+psycopg2")

    def describe(self, url: URL | None = None) -> str:
        """Host, port and database of the target (of `url`, if given), never the password."""
        url = url or self.url()
        host = url.host or url.query.get("host") or "localhost"
        return f"{host}:{url.port or 5432}/{url.database}"

    @property
    def is_embedded(self) -> bool:
        return not self.setting("database_url").value

    @contextmanager
    def connect(self) -> Iterator:
        """A psycopg2 connection in a transaction, with statement timeouts set; committed by the caller."""
        url = self.url()
        engine = create_engine(
            url,
            poolclass=NullPool,
            connect_args={
                "connect_timeout": self.connect_timeout_s,
                "options": f"-c statement_timeout={self.statement_timeout_s * 1000} -c TimeZone=UTC",
                "application_name": "agent_migration",
            },
        )
        try:
            raw = engine.raw_connection()
        except Exception as exc:  # noqa: BLE001 - every driver error becomes one clear message
            detail = redact(str(getattr(exc, "orig", exc)).strip().splitlines()[0], url)
            raise MigrationError(f"Cannot connect to PostgreSQL at {self.describe(url)}: {detail}") from None
        conn = raw.dbapi_connection
        try:
            yield conn
        finally:
            raw.close()
            engine.dispose()
