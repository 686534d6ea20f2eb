"""Resources: the SQLite source (read-only, snapshotted) and the PostgreSQL target (or the embedded default).

Connections live in `@contextmanager` methods; engines are created inside them and never pickled.
Errors are `MigrationError`s whose message names the file, table, setting or server at fault and
never contains a password.
"""

from __future__ import annotations

import functools
import os
import re
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
from agent_migration.tables import SOURCE_TABLES


class MigrationError(Exception):
    """A failure with a message meant for the person running the migration."""


def decode_text(raw: bytes) -> str:
    # Undecodable bytes become lone surrogates, so the row rules can reject them and payloads keep them.
    return raw.decode("utf-8", "surrogateescape")


class SqliteSource(dg.ConfigurableResource):
    """The app's SQLite database, opened read-only; every run reads one consistent backup copy of it."""

    path: str = Field(default="db.sqlite", description="The source file (env SQLITE_PATH).")
    backup_dir: str = Field(default=".migration/backups", description="Where each run's source copy is kept.")
    keep_backups: int = Field(default=5, description="How many source copies to keep.")
    work_dir: str | None = Field(
        default=None,
        description="Where each run's cleaned rows wait for publish (default: `runs` beside backup_dir).",
    )
    chunk_rows: int = Field(
        default=50_000, gt=0, description="Rows read and cleaned at a time: sets the memory, not the source."
    )
    busy_timeout_s: float = Field(
        default=30.0, description="How long to wait while a writer locks the source."
    )

    def check_file(self) -> Path:
        path = Path(self.path)
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
            raise MigrationError(f"SQLITE_PATH {str(path)!r} {problem}.")
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
        """Copy the live source with SQLite's online backup API into the backup folder; keep the last N
        (and `keep`: the snapshot a change-only re-sync compares with; a copy byte-identical to it
        needs no integrity check of its own)."""
        source = self.check_file()
        folder = Path(self.backup_dir)
        folder.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        copy = (folder / f"{source.stem}-{stamp}-{run_id[:8]}.sqlite").resolve()
        deadline = time.monotonic() + self.busy_timeout_s
        busy = MigrationError(
            f"SQLITE_PATH {self.path!r}: database is busy (locked by a writer for more than "
            f"{self.busy_timeout_s:g} s; raise SqliteSource.busy_timeout_s or retry later)."
        )

        def give_up_when_late(status: int, remaining: int, total: int) -> None:
            # Python's backup() retries a locked source forever; this bounds the wait.
            if status in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED) and time.monotonic() > deadline:
                raise busy

        try:
            with self.connect(source) as src:
                if keep and unchanged_since(src, source, keep):
                    return Path(keep).resolve()  # the same bytes: that snapshot serves this run too
                dst = sqlite3.connect(copy)
                try:
                    src.backup(dst, progress=give_up_when_late)
                finally:
                    dst.close()
        except MigrationError:
            copy.unlink(missing_ok=True)
            raise
        except sqlite3.OperationalError as exc:
            copy.unlink(missing_ok=True)
            if "locked" in str(exc) or "busy" in str(exc):
                raise busy from None
            raise MigrationError(f"SQLITE_PATH {self.path!r} cannot be read: {exc}.") from None
        except sqlite3.DatabaseError as exc:
            copy.unlink(missing_ok=True)
            raise MigrationError(f"SQLITE_PATH {self.path!r} is corrupt or not a database: {exc}.") from None
        if keep is None or not same_file(copy, keep):
            self._check_integrity(copy)
        backups = sorted(folder.glob(f"{source.stem}-*.sqlite"), key=lambda p: p.stat().st_mtime)
        for old in backups[: max(0, len(backups) - self.keep_backups)]:
            if keep is None or old.resolve() != Path(keep).resolve():
                old.unlink(missing_ok=True)
        return copy

    def _check_integrity(self, copy: Path) -> None:
        try:
            with self.connect(copy) as conn:
                result = conn.execute("PRAGMA quick_check").fetchall()
        except sqlite3.DatabaseError as exc:
            raise MigrationError(f"SQLITE_PATH {self.path!r} is corrupt: {exc}.") from None
        if result != [("ok",)]:
            detail = "; ".join(str(r[0]) for r in result[:3])
            raise MigrationError(f"SQLITE_PATH {self.path!r} is corrupt (integrity check: {detail}).")


def unchanged_since(src: sqlite3.Connection, source: Path, snapshot: str) -> bool:
    """Whether the live source file is byte-identical to `snapshot`, read under a shared lock (no writer
    can commit meanwhile). Never for a WAL database: its latest commits may be in the -wal file only."""
    if src.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal":
        return False
    src.execute("BEGIN")
    try:
        src.execute("SELECT count(*) FROM sqlite_master").fetchone()  # takes the shared lock
        return same_file(source, snapshot, cache=False)
    finally:
        src.execute("ROLLBACK")


def same_file(a: str | Path, b: str | Path, cache: bool = True) -> bool:
    """The same database, byte for byte: the backup copies every page as is, so snapshots of an unchanged
    source are equal, and equal to the source itself but for header counters (see `_COUNTERS`).

    `cache`: for snapshots, which never change once written; not for a live file."""
    a, b = Path(a).resolve(), Path(b).resolve()
    if a == b:
        return True
    sa, sb = a.stat(), b.stat()
    if sa.st_size != sb.st_size:
        return False
    compare = _same_bytes if cache else _same_bytes.__wrapped__
    return compare(str(a), str(b), sa.st_mtime_ns, sb.st_mtime_ns)


# Header bytes a backup writes anew (https://sqlite.org/fileformat.html, 1.3): the file change counter,
# the schema cookie, the version-valid-for number and the library version. The schema itself is in page 1.
_COUNTERS = ((24, 28), (40, 44), (92, 100))


def _header(chunk: bytes) -> bytes:
    out = bytearray(chunk)
    for start, end in _COUNTERS:
        out[start:end] = bytes(end - start)
    return bytes(out)


@functools.lru_cache(maxsize=8)  # asked twice per run: by the integrity check and by the plan
def _same_bytes(a: str, b: str, _mtime_a: int, _mtime_b: int, block: int = 1 << 20) -> bool:
    with open(a, "rb") as fa, open(b, "rb") as fb:
        if _header(fa.read(100)) != _header(fb.read(100)):
            return False
        while chunk := fa.read(block):
            if chunk != fb.read(block):
                return False
    return True


def sqlite_ident(name: str) -> str:
    """A quoted SQLite identifier (psycopg2's sql module quotes for PostgreSQL only)."""
    return '"' + name.replace('"', '""') + '"'


def describe_source(conn: sqlite3.Connection) -> dict[str, list[str]]:
    """Table name -> column names, as the source has them."""
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    return {t: [r[1] for r in conn.execute(f"PRAGMA table_info({sqlite_ident(t)})")] for t in tables}


def check_source_shape(shape: dict[str, list[str]], path: str) -> dict[str, list[str]]:
    """Fail listing every missing table and column; return what the source has beyond the expected."""
    missing = []
    extra: dict[str, list[str]] = {}
    for table in SOURCE_TABLES:
        if table.source not in shape:
            missing.append(f"table {table.source}")
            continue
        have = shape[table.source]
        missing += [f"column {table.source}.{c}" for c in table.source_columns if c not in have]
        if more := [c for c in have if c not in table.source_columns]:
            extra[table.source] = more
    if missing:
        raise MigrationError(f"SQLITE_PATH {path!r} lacks what the migration needs: {', '.join(missing)}.")
    wanted = {t.source for t in SOURCE_TABLES}
    extra_tables = [t for t in shape if t not in wanted and not t.startswith("sqlite_")]
    if extra_tables:
        extra["(tables)"] = extra_tables
    return extra


_PASSWORD = re.compile(r"(://[^:/@]*:)[^@]*@")


def redact(text: str, url: URL | None = None) -> str:
    """`text` without any password (the URL's own, and any user:password@ form)."""
    if url is not None and url.password:
        text = text.replace(str(url.password), "***")
    return _PASSWORD.sub(r"\1***@", text)


class ExportFile(dg.ConfigurableResource):
    """Where `rollback_export` writes its SQLite file: a new file, never one that exists."""

    path: str | None = Field(
        default=None,
        description="The new SQLite file (env EXPORT_SQLITE_PATH; default .migration/exports/rollback-<UTC time>.sqlite).",
    )

    def destination(self) -> Path:
        """The file to write, checked: it must not exist, and its folder must (the default one is made)."""
        raw = self.path or os.environ.get("EXPORT_SQLITE_PATH")
        if not raw:
            folder = Path(".migration/exports")
            folder.mkdir(parents=True, exist_ok=True)
            raw = str(folder / f"rollback-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}.sqlite")
        path = Path(raw).resolve()
        if path.exists() or path.is_symlink():
            raise MigrationError(
                f"EXPORT_SQLITE_PATH {raw!r} already exists: the export never overwrites a file (it was left "
                "as it is). Choose a new path, or move that file away."
            )
        if not path.parent.is_dir():
            raise MigrationError(f"EXPORT_SQLITE_PATH {raw!r}: the folder {str(path.parent)!r} does not exist.")
        return path


class PostgresTarget(dg.ConfigurableResource):
    """The PostgreSQL target. Without a URL (and no env DATABASE_URL) an embedded server is started."""

    database_url: str | None = Field(default=None, description="postgresql://user:pass@host:port/db")
    embedded_dir: str = Field(default=embedded.DEFAULT_DIR, description="Data folder of the embedded server.")
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

    def url(self) -> URL:
        raw = (
            self.database_url or os.environ.get("DATABASE_URL") or embedded.ensure_database(self.embedded_dir)
        )
        try:
            url = make_url(raw)
        except (ArgumentError, ValueError):
            raise MigrationError(
                "DATABASE_URL is malformed: expected postgresql://user:password@host:port/database."
            ) from None
        if url.get_backend_name() not in ("postgresql", "postgres"):
            raise MigrationError(f"DATABASE_URL must be a postgresql:// URL, not {url.drivername}://.")
        # SQLAlchemy 2.1 maps plain postgresql:// to psycopg 3; this project ships psycopg2.
        return url.set(drivername="postgresql+psycopg2")

    def describe(self, url: URL | None = None) -> str:
        """Host, port and database of the target (of `url`, if given), never the password."""
        url = url or self.url()
        host = url.host or url.query.get("host") or "localhost"
        return f"{host}:{url.port or 5432}/{url.database}"

    @property
    def is_embedded(self) -> bool:
        return not (self.database_url or os.environ.get("DATABASE_URL"))

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
