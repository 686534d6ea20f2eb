"""The app's SQLite database as the source: its file checked, read-only connections (sqlite3 and ADBC),
and the run's snapshot (a consistent copy, kept as the run's backup).

The Dagster resource `SqliteSource` (in `resources.py`) is this class with its settings as fields; the
stages only ever see this class. Errors are `MigrationError`s naming the file and the setting at fault.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

from agent_migration.core.errors import MigrationError
from agent_migration.core.settings import SOURCE, Setting, resolve
from agent_migration.source import disk
from agent_migration.source.files import same_file, shared_lock


def decode_text(raw: bytes) -> str:
    # Undecodable bytes become lone surrogates, so the row rules can reject them and payloads keep them.
    return raw.decode("utf-8", "surrogateescape")


class SourceDatabase:
    """What reading the source needs: the settings' fields (`path`, `backup_dir`, `keep_backups`,
    `keep_runs`, `min_free_mb`, `work_dir`, `chunk_rows`, `busy_timeout_s`) come from the subclass."""

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

    def snapshot(self, run_id: str, keep: str | None = None, check: bool = True) -> Path:
        """Copy the live source into the backup folder: as a file under SQLite's shared lock, or for a WAL
        database with SQLite's online backup API. Keep the last N (and `keep`: the snapshot a change-only
        re-sync compares with; a copy byte-identical to it needs no integrity check of its own).
        `check=False`: the caller runs `check_integrity` itself (alongside its own reading)."""
        source = self.check_file()
        folder = self.backup_folder
        folder.mkdir(parents=True, exist_ok=True)
        disk.check_free_space(self, source, folder, run_files=self.runs_folder)
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        copy = (folder / f"{source.stem}-{stamp}-{run_id[:8]}.sqlite").resolve()
        deadline = time.monotonic() + self.busy_timeout_s
        busy = MigrationError(
            f"SQLITE_PATH {self.sqlite_path!r}: database is busy (locked by a writer for more than "
            f"{self.busy_timeout_s:g} s; raise SourceDatabase.busy_timeout_s or retry later)."
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
        if check and (keep is None or not same_file(copy, keep)):
            self.check_integrity(copy)
        self._prune(folder, source.stem, keep)
        return copy

    def _prune(self, folder: Path, stem: str, keep: str | None) -> None:
        """Keep the last `keep_backups` copies, and always the re-sync baseline."""
        backups = sorted(folder.glob(f"{stem}-*.sqlite"), key=lambda p: p.stat().st_mtime)
        for old in backups[: max(0, len(backups) - self.setting("keep_backups").value)]:
            if keep is None or old.resolve() != Path(keep).resolve():
                old.unlink(missing_ok=True)

    def check_integrity(self, copy: Path) -> None:
        try:
            with self.connect(copy) as conn:
                result = conn.execute("PRAGMA quick_check").fetchall()
        except sqlite3.DatabaseError as exc:
            raise MigrationError(f"SQLITE_PATH {self.sqlite_path!r} is corrupt: {exc}.") from None
        if result != [("ok",)]:
            detail = "; ".join(str(r[0]) for r in result[:3])
            raise MigrationError(f"SQLITE_PATH {self.sqlite_path!r} is corrupt (integrity check: {detail}).")
