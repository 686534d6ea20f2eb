"""Transform: derive the users, apply the row rules, remap usernames to users.id and agent references.

Each cleaned frame has one row per source row: the loadable target values, or `_reject` (the reasons)
with `_payload` (the raw row as JSON). Nothing is dropped here; the load step splits the two.
"""

import dagster as dg
import pandas as pd
from psycopg2 import sql

from agent_migration.assets.common import OWNERS, frame_schema, reject_metadata
from agent_migration.postgres import merge
from agent_migration.resources import PostgresTarget
from agent_migration.rules import (
    REJECT,
    clean_table,
    derive_users,
    reject_missing_parents,
    remap_users,
    usernames,
)
from agent_migration.tables import BY_NAME, SOURCE_TABLES, USERS, Table


def read_existing_users(target: PostgresTarget) -> pd.DataFrame:
    """The target's current users (id, username) and the users sequence position, so ids never change."""
    with target.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT to_regclass('public.users') IS NOT NULL")
        if cur.fetchone()[0]:
            cur.execute(sql.SQL("SELECT id, username FROM {}").format(merge.target(USERS)))
            rows, nxt = cur.fetchall(), merge.next_id(cur, USERS)
        else:  # a fresh target: target_schema creates the tables, nobody has an id yet
            rows, nxt = [], 1
    existing = pd.DataFrame(rows, columns=["id", "username"]).astype({"id": "int64", "username": object})
    existing.attrs["sequence"] = int(nxt) - 1
    return existing


@dg.asset(
    group_name="transform",
    kinds={"pandas", "postgres"},
    owners=OWNERS,
    description="Users derived from every username in the source (owners, balances, payments, chats).",
    ins={f"raw_{t.source}": dg.AssetIn() for t in SOURCE_TABLES},
    deps=["target_schema"],  # its checks (reachable target, right shape, no cutover) come first
)
def derived_users(context: dg.AssetExecutionContext, target: PostgresTarget, **raw: pd.DataFrame):
    existing = read_existing_users(target)
    references = [usernames(t, raw[f"raw_{t.source}"]) for t in SOURCE_TABLES]
    users = derive_users(references, existing, existing.attrs["sequence"])
    new = int((~users["username"].isin(existing["username"])).sum())
    context.log.info(f"{len(users):,} users ({new:,} new, {len(existing):,} already in the target)")
    return dg.MaterializeResult(
        value=users,
        metadata={
            "dagster/row_count": len(users),
            "dagster/column_schema": frame_schema(users),
            "new_users": new,
            "referenced_by": dg.MetadataValue.json(
                {t.source: int(r.nunique()) for t, r in zip(SOURCE_TABLES, references, strict=True)}
            ),
        },
    )


def parent_tables(table: Table) -> list[Table]:
    """Migrated tables this table's migrated foreign keys point at (users aside: remapped by name)."""
    names = [c.references.split("(")[0] for c in table.migrated if c.references]
    return [BY_NAME[n] for n in names if n != USERS.name]


def clean_asset(table: Table) -> dg.AssetsDefinition:
    parents = parent_tables(table)
    ins = {"raw": dg.AssetIn(f"raw_{table.source}"), "derived_users": dg.AssetIn()}
    ins |= {f"clean_{p.name}": dg.AssetIn() for p in parents}

    @dg.asset(
        name=f"clean_{table.name}",
        group_name="transform",
        kinds={"pandas"},
        owners=OWNERS,
        description=f"{table.source}: row rules applied, usernames remapped to users.id"
        + (f", {', '.join(p.name for p in parents)} references checked" if parents else "")
        + "; rejects kept with reason and payload.",
        ins=ins,
    )
    def _clean(context: dg.AssetExecutionContext, raw: pd.DataFrame, derived_users: pd.DataFrame, **loaded):
        frame = remap_users(table, clean_table(table, raw), derived_users)
        for col in table.migrated:
            if col.references and (parent := col.references.split("(")[0]) != USERS.name:
                parent_frame = loaded[f"clean_{parent}"]
                ok = parent_frame.loc[parent_frame[REJECT].isna(), BY_NAME[parent].key]
                frame = reject_missing_parents(frame, col.name, ok, table, raw)
        meta = reject_metadata(frame)
        context.log.info(f"{table.source}: {len(frame):,} rows, {meta['rows_rejected'].value:,} rejected")
        return dg.MaterializeResult(
            value=frame,
            metadata={"dagster/row_count": len(frame), "dagster/column_schema": frame_schema(frame), **meta},
        )

    return _clean


CLEAN_ASSETS = [clean_asset(t) for t in SOURCE_TABLES]
