"""Free space, checked before a run copies anything: a full disk must fail the run up front, naming the
folder and how much it needs, not halfway through a copy."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from agent_migration.core.errors import MigrationError

MIB = 1 << 20
RUN_FILES = 2  # the run's cleaned rows, at most, per byte of source


def _existing(folder: Path) -> Path:
    """The folder, or its nearest existing parent (where it would be created)."""
    folder = folder.resolve()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def needs(source_bytes: int, copy_to: Path, run_files: Path | None) -> dict[Path, int]:
    """Bytes each folder needs for a run: a copy of the source, and (for a migration) its cleaned rows:
    about the source's size when clean, up to twice that when most rows are rejected (each reject carries
    its row as a JSON payload; 0.9x and 1.9x measured at medium). Folders on one disk add up."""
    wanted = [(copy_to, source_bytes)] + ([(run_files, RUN_FILES * source_bytes)] if run_files is not None else [])
    by_device: dict[int, tuple[Path, int]] = {}
    for folder, size in wanted:
        where = _existing(folder)
        device = os.stat(where).st_dev
        first, total = by_device.get(device, (folder, 0))
        by_device[device] = (first, total + size)
    return {folder: total for folder, total in by_device.values()}


def check_free_space(source, source_path: Path, copy_to: Path, run_files: Path | None) -> None:
    """Fail, saying where and how much, when a folder's disk has less free space than the run needs
    plus the reserve (`SourceDatabase.min_free_mb`, env MIGRATION_MIN_FREE_MB)."""
    reserve = source.setting("min_free_mb")
    for folder, size in needs(source_path.stat().st_size, copy_to, run_files).items():
        free = shutil.disk_usage(_existing(folder)).free
        wanted = size + reserve.value * MIB
        if free < wanted:
            raise MigrationError(
                f"not enough free space for {folder}: the run needs {wanted / MIB:,.0f} MiB (the source copy "
                f"{'and its cleaned rows ' if run_files is not None else ''}{size / MIB:,.0f} MiB + "
                f"{reserve.value:,} MiB reserve, MIGRATION_MIN_FREE_MB {reserve.where}), and "
                f"{free / MIB:,.0f} MiB are free. Free space there, move the folder (MIGRATION_BACKUP_DIR), or "
                "keep fewer copies (MIGRATION_KEEP_BACKUPS, MIGRATION_KEEP_RUNS). Nothing was written."
            )
