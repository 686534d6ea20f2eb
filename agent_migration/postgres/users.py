"""What the target already holds that cleaning needs: its users (their ids never change) and a parent
table's keys."""

from __future__ import annotations

import numpy as np
import pandas as pd
from psycopg2 import sql

from agent_migration.core.tables import USERS, Table
from agent_migration.postgres import merge
from agent_migration.postgres.connection import TargetDatabase


def read_existing_users(target: TargetDatabase) -> tuple[pd.DataFrame, int]:
    """The target's current users (id, username) and the users sequence position, so ids never change."""
    with target.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT to_regclass('public.users') IS NOT NULL")
        if cur.fetchone()[0]:
            cur.execute(sql.SQL("SELECT id, username FROM {}").format(merge.target(USERS)))
            rows, nxt = cur.fetchall(), merge.next_id(cur, USERS)
        else:  # a fresh target: target_schema creates the tables, nobody has an id yet
            rows, nxt = [], 1
    existing = pd.DataFrame(rows, columns=["id", "username"]).astype({"id": "int64", "username": object})
    return existing, int(nxt) - 1


def held_keys(target: TargetDatabase, parent: Table) -> np.ndarray:
    """Every key the target's `parent` table holds."""
    with target.connect() as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT {} FROM {}").format(sql.Identifier(parent.key), merge.target(parent)))
        return np.array([r[0] for r in cur.fetchall()], dtype=np.int64)
