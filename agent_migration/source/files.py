"""The SQLite files themselves: byte-for-byte comparison of snapshots, the source's tables and columns."""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from agent_migration.core.errors import MigrationError
from agent_migration.core.tables import SOURCE_TABLES


@contextmanager
def shared_lock(src: sqlite3.Connection) -> Iterator[bool]:
    """SQLite's shared lock on the live source for the block: no writer can commit meanwhile, so the
    file's bytes are one consistent state. Yields False, holding nothing, for a WAL database: its latest
    commits may be in the -wal file only."""
    if src.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal":
        yield False
        return
    src.execute("BEGIN")
    try:
        src.execute("SELECT count(*) FROM sqlite_master").fetchone()  # takes the shared lock
        yield True
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


