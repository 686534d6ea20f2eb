"""Settings read at run time, each with where its value came from.

A resource field left unset (None) falls back to its environment variable, then to its documented
default. Dagster replaces a resource's whole config when a run sets one field, so a value baked in at
import time would be lost; a None field never hides the environment. Errors name the setting and say
where its value came from, so a user never chases a value they did not give.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent_migration.core.errors import MigrationError


class SettingError(MigrationError):
    """A setting whose value cannot be used; the message names it and where it came from."""


@dataclass(frozen=True)
class Env:
    """One setting: its environment variable, its resource field, its default and how to read its text."""

    env: str
    field: str  # `resource.field` as in run config
    default: Any
    parse: Callable[[str], Any] = str
    rule: str = ""  # what a valid value is, for the error message
    valid: Callable[[Any], bool] = lambda _v: True


@dataclass(frozen=True)
class Setting:
    name: str
    value: Any
    origin: str  # "environment", "run config" or "default"
    field: str

    @property
    def where(self) -> str:
        if self.origin == "environment":
            return f"from env {self.name}"
        if self.origin == "run config":
            return f"from the resource config {self.field}"
        if not self.field:  # read when the code location loads: no run config
            return f"the default; set env {self.name}"
        return f"the default; set env {self.name} or the resource config {self.field}"

    def __str__(self) -> str:
        return f"{self.name} {self.value!r}"


def resolve(spec: Env, configured: Any) -> Setting:
    """The value of `spec`: the resource config if set, else the environment (read now), else the default."""
    if configured is not None:
        setting = Setting(spec.env, configured, "run config", spec.field)
    elif (raw := os.environ.get(spec.env, "").strip()) != "":
        try:
            value = spec.parse(raw)
        except ValueError:
            raise SettingError(f"{spec.env} must be {spec.rule or 'valid'}, not {raw!r} (from env {spec.env}).") from None
        setting = Setting(spec.env, value, "environment", spec.field)
    else:
        setting = Setting(spec.env, spec.default, "default", spec.field)
    if not spec.valid(setting.value):
        raise SettingError(f"{setting.name} must be {spec.rule}, not {setting.value!r} ({setting.where}).")
    return setting


def positive(v) -> bool:
    return v is not None and v > 0


def not_negative(v) -> bool:
    return v is not None and v >= 0


# ---------------------------------------------------------------- every setting of the project

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
    # Source rows per table that every migrate run proves against PostgreSQL (the values_match_source checks).
    "validate_sample": Env(
        "MIGRATION_VALIDATE_SAMPLE",
        "source.validate_sample",
        1000,
        int,
        "a whole number of rows, 0 or more (0 turns the check off)",
        not_negative,
    ),
}

def fraction(raw: str) -> float:
    value = float(raw)
    if not 0 <= value <= 1:  # (NaN fails too)
        raise ValueError(raw)
    return value


def log_level(raw: str) -> str:
    level = raw.strip().upper()
    if level not in LEVELS:
        raise ValueError(raw)
    return level


LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

TARGET = {
    "database_url": Env("DATABASE_URL", "target.database_url", None),
    "embedded_dir": Env("EMBEDDED_PG_DIR", "target.embedded_dir", ".pgdata"),
    "connections": Env(
        "MIGRATION_PG_CONNECTIONS", "target.connections", 3, int, "a whole number of connections, 1 or more", positive
    ),
    # The reject budget: the largest share of a source table's rows that may be rejected (postgres/budget.py).
    "max_reject_share": Env(
        "MIGRATION_MAX_REJECT_SHARE",
        "target.max_reject_share",
        0.5,
        fraction,
        "a fraction between 0 and 1 (0.5: up to half of a table's rows may be rejected)",
        lambda v: v is not None and 0 <= v <= 1,
    ),
}

EXPORT_PATH = Env("EXPORT_SQLITE_PATH", "export.path", None)
STORAGE = Env("MIGRATION_STORAGE", "io_manager.base_dir", ".migration/storage")
LOG_LEVEL = Env(
    "MIGRATION_LOG_LEVEL",
    "loggers.console.config.log_level",
    "INFO",
    log_level,
    f"one of {', '.join(LEVELS)}",
    lambda v: str(v).strip().upper() in LEVELS,
)
# The `resync` schedule's cron, read when the code location loads (a schedule's cron is part of its
# definition): no resource field. jobs.py checks it is a cron expression Dagster takes.
RESYNC_CRON = Env("RESYNC_CRON", "", "*/30 * * * *", str, "a cron expression of five fields, e.g. '*/30 * * * *'")
