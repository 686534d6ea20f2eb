"""Writing a sample file (`write_sample`) and its reject-heavy variant (`write_reject_heavy`)."""

from __future__ import annotations

import errno
import os
import sqlite3
from contextlib import closing
from pathlib import Path

from agent_migration.sample.catalogue import MESSY_SHARE, SCALES, SCHEMA, MessyCase
from agent_migration.sample.messy import plant_cases, scatter
from agent_migration.sample.world import _World

REJECT_GENE_OFFSET = 2**48  # added to every agent's gene: far above PostgreSQL's INTEGER (2**31 - 1)


def _writable(path: str | os.PathLike, overwrite: bool) -> Path:
    """`path` as a Path, if a new file may be written there (else FileExistsError / FileNotFoundError)."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(errno.EEXIST, "already exists (use overwrite=True / --force)", str(path))
    if not path.parent.is_dir():
        raise FileNotFoundError(errno.ENOENT, "folder does not exist", str(path.parent))
    return path


def resolve_counts(scale: str, **explicit: int | None) -> dict[str, int]:
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}: choose one of {', '.join(SCALES)}")
    counts = {k: v if explicit.get(k) is None else explicit[k] for k, v in SCALES[scale].items()}
    if bad := [k for k, v in counts.items() if not isinstance(v, int) or v < 0]:
        raise ValueError(f"row counts must be whole numbers >= 0: {', '.join(bad)}")
    return counts


def write_sample(
    path: str | os.PathLike,
    *,
    scale: str = "small",
    seed: int = 0,
    messy: bool = True,
    agents: int | None = None,
    balances: int | None = None,
    payments: int | None = None,
    messages: int | None = None,
    messy_share: float = MESSY_SHARE,
    overwrite: bool = False,
) -> list[MessyCase]:
    """Write a new sample database at `path`; returns the planted messy cases (empty when `messy=False`).

    Explicit counts override the scale's. The file is built next to `path` and moved into place at the end,
    so a failure never leaves a half-written database. Raises FileExistsError (path exists and not
    `overwrite`), FileNotFoundError (missing folder) or ValueError (bad scale, counts or share).
    """
    counts = resolve_counts(scale, agents=agents, balances=balances, payments=payments, messages=messages)
    if not 0 <= messy_share <= 1:
        raise ValueError(f"messy_share must be between 0 and 1, got {messy_share}")
    path = _writable(path, overwrite)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    world = _World.make(seed, counts)
    try:
        conn = sqlite3.connect(tmp, isolation_level=None)
        try:
            for pragma in (
                "journal_mode=OFF",
                "synchronous=OFF",
                "cache_size=-65536",
                "locking_mode=EXCLUSIVE",
            ):
                conn.execute(f"PRAGMA {pragma}")
            conn.execute("BEGIN")  # one transaction (executescript would commit: run the DDL one by one)
            for ddl in filter(str.strip, SCHEMA.split(";")):
                conn.execute(ddl)
            clean_keys = world.write_clean(conn)
            cases = []
            if messy:
                scatter(conn, world, clean_keys, messy_share)
                cases = plant_cases(conn, world)
            conn.execute("COMMIT")
        finally:
            conn.close()
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return cases


def write_reject_heavy(src: str | os.PathLike, dst: str | os.PathLike, *, overwrite: bool = False) -> int:
    """Copy the source `src` to `dst` with every agent's gene moved above PostgreSQL's INTEGER range.

    The migration then rejects every agent (NULL and non-numeric genes become the offset itself, so none
    escapes) and, in turn, every chat message naming one of them; the other tables are unchanged.
    Returns the number of agents changed. Like `write_sample`, the file is built next to `dst` and moved
    into place at the end; FileExistsError / FileNotFoundError as there, FileNotFoundError for a
    missing `src`.
    """
    src = Path(src)
    if not src.is_file():
        raise FileNotFoundError(errno.ENOENT, "source does not exist", str(src))
    dst = _writable(dst, overwrite)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    try:
        with (
            closing(sqlite3.connect(f"file:{src.resolve()}?mode=ro", uri=True)) as source,
            closing(sqlite3.connect(tmp, isolation_level=None)) as copy,
        ):
            source.backup(copy)  # a consistent copy, even of a source in WAL mode
            copy.execute("BEGIN")
            changed = copy.execute(
                "UPDATE agents SET gene = coalesce(CAST(gene AS INTEGER), 0) + ?", (REJECT_GENE_OFFSET,)
            ).rowcount
            copy.execute("COMMIT")
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return changed
