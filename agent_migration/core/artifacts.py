"""The typed values that pass between the assets: small, frozen, and pointing at files for the rows."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agent_migration.core.cleaning import KeyFacts


@dataclass(frozen=True)
class Delta:
    """A change-only re-sync of one table: what its redone rows replace in the target."""

    keys: tuple  # clean keys (before the username remap) whose target rows are replaced
    gone_rowids: tuple[int, ...]  # baseline rowids whose rejects go


@dataclass(frozen=True)
class Snapshot:
    """The run's consistent copy of the source, what it holds, and (a re-sync) what changed."""

    path: str
    run_dir: str  # where this run's cleaned rows wait for publish
    stats: dict[str, dict]  # source table -> {"rows": n, "sums": {column: total}}
    extra: dict[str, list[str]]  # what the source has beyond the plan
    baseline: str | None = None  # the last published snapshot, for a change-only re-sync
    changes: dict | None = None  # `delta.plan`'s result (None: a full run)
    schema: tuple = ()  # the source's sqlite_master statements (`sqlite_read.schema_objects`)

    def delta(self, source_table: str) -> Delta | None:
        if self.changes is None:
            return None
        found = self.changes[source_table]
        return Delta(tuple(found["keys"]), tuple(found["gone_rowids"]))


@dataclass(frozen=True)
class SourceTable:
    """One source table as the run reads it: its chunks of the snapshot and the facts about its keys."""

    name: str
    snapshot: str
    rows: int  # rows this run reads (a re-sync: the rows to redo)
    chunks: tuple  # of `Chunk`
    facts: KeyFacts
    rowids: tuple[int, ...] | None = None  # a re-sync's rows to redo (None: every row)
    delta: Delta | None = None


@dataclass(frozen=True)
class CleanTable:
    """One cleaned table: files of loadable rows and of rejects, counts (`fast_rows`: decided by the
    fast path), the reason kinds counted, a few rejects shown, and a parent table's loaded keys."""

    name: str
    loaded_path: str
    rejects_path: str
    rows: int
    loaded: int
    rejected: int
    fast_rows: int
    reasons: dict[str, int]
    preview: list[dict]
    loaded_keys: np.ndarray | None = field(default=None, compare=False)
    rowids: tuple[int, ...] | None = None  # a re-sync's redone rows
    delta: Delta | None = None
    snapshot: str = ""
    baseline: str | None = None

    @property
    def redone_rowids(self) -> list[int]:
        """A change-only re-sync's source rowids whose rejects this run replaces (read and gone rows)."""
        return sorted(set(self.rowids or ()) | set(self.delta.gone_rowids if self.delta else ()))


@dataclass(frozen=True)
class ExportTable:
    """One table of a rollback file: what PostgreSQL held, what the file holds, and how they reconcile."""

    name: str  # its name in the file (the source's name for an app table)
    pg_rows: int
    rejects: int  # rows in migration.rejected_rows for it
    restored: int  # rejects restored from their payloads
    conflicts: int  # rejects whose key PostgreSQL now holds: in rollback_conflicts instead
    file_rows: int
    sums_expected: dict  # column -> PostgreSQL's total + the restored rejects' (money in cents)
    sums_file: dict  # column -> the file's total

    @property
    def rows_reconcile(self) -> bool:
        return self.file_rows == self.pg_rows + self.restored and self.restored + self.conflicts == self.rejects

    @property
    def sums_reconcile(self) -> bool:
        return self.sums_file == self.sums_expected


@dataclass(frozen=True)
class RollbackExport:
    """A finished rollback file and its tables."""

    path: str
    tables: tuple[ExportTable, ...]
    seconds: float


@dataclass(frozen=True)
class TargetAssessment:
    """Preflight's read-only look at the target: reachable, facts (`postgres.readiness.assess`), and what
    would make migrate fail there."""

    where: str  # host:port/database, never a password
    reachable: bool
    facts: dict
    problems: tuple[str, ...]


@dataclass(frozen=True)
class PreflightSource:
    """Preflight's snapshot of the source, and the users migrate would derive from it."""

    snapshot: Snapshot
    users: Any = field(compare=False)  # a DataFrame (id, username), as `derived_users`


@dataclass(frozen=True)
class TableAssessment:
    """What migrate would make of one source table (preflight): counts, reasons with sample rows, and per
    column what it holds against its target type (`profiling.TableProfile.result`)."""

    name: str
    source: str
    rows: int
    loaded: int
    rejected: int
    reasons: dict[str, int]  # reason kind -> rows
    below: dict[str, int]  # integer overflow kind -> values below the range
    samples: dict[str, list[dict]]  # reason kind -> a few {source_key, reason}
    columns: dict[str, dict]
    seconds: float
    loaded_keys: np.ndarray | None = field(default=None, compare=False)
