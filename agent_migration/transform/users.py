"""The users table and the parent keys a cleaned table checks against.

What they are made of is read by the stages that hold it, and handed in: the target's users and held
parent keys (`postgres/users.py`), the usernames the snapshot references (`source/usernames.py`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from agent_migration.core import contract
from agent_migration.core.artifacts import CleanTable, Snapshot
from agent_migration.core.cleaning import derive_users, usernames
from agent_migration.core.tables import SOURCE_TABLES, Table


def users_of(
    existing: pd.DataFrame, sequence: int, snap: Snapshot, referenced: Callable[[], list[dict[str, pd.Series]]]
) -> tuple[pd.DataFrame, dict]:
    """(users, distinct usernames referenced per source table), from the target's `existing` users and
    its users sequence position.

    A full run takes every username column's distinct values (`referenced()`: one dict per source
    table, read from the snapshot); a re-sync starts from the target's users, which are those of the
    last published snapshot, and applies only the names the changed rows add or drop."""
    referenced_by = {}
    if snap.changes is not None:
        names = snap.changes[contract.USER_CHANGES]
        kept = existing.loc[~existing["username"].isin(names["removed"]), "username"]
        references = [kept, pd.Series(names["added"], dtype=object)]
    else:
        references = [usernames(t, found) for t, found in zip(SOURCE_TABLES, referenced(), strict=True)]
        referenced_by = {t.source: int(r.nunique()) for t, r in zip(SOURCE_TABLES, references, strict=True)}
    return derive_users(references, existing, sequence), referenced_by


def parent_keys(
    table: Table, parents: dict[str, CleanTable], held: Callable[[Table], np.ndarray]
) -> dict[str, np.ndarray]:
    """Per parent reference of `table`: the parent keys that load. A re-sync's parent table holds only
    its redone rows; every other parent key is as the target holds it (`held(parent)`: the last
    published outcome)."""
    found = {}
    for col, parent in table.parent_refs:
        done = parents[parent.name]
        keys = done.loaded_keys
        if done.delta is not None:
            held_now = held(parent)
            affected = np.array([int(k) for k in done.delta.keys if isinstance(k, int)], dtype=np.int64)
            keys = np.union1d(keys.astype(np.int64), held_now[~np.isin(held_now, affected)])
        found[col.name] = np.asarray(keys)
    return found
