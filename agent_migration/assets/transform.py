"""Transform: derive the users, apply the row rules, remap usernames to users.id and agent references.

Each cleaned frame has one row per source row: the loadable target values, or `_reject` (the reasons)
with `_payload` (the raw row as JSON). Nothing is dropped here; the load step splits the two.
"""

import dagster as dg
import pandas as pd
from psycopg2 import sql

from agent_migration import delta
from agent_migration.assets.common import OWNERS, frame_schema, reject_metadata
from agent_migration.assets.extract import distinct_values
from agent_migration.postgres import merge
from agent_migration.resources import PostgresTarget, SqliteSource
from agent_migration.rules import (
    REJECT,
    Username,
    clean_table,
    derive_users,
    reject_missing_parents,
    remap_users,
    usernames,
)
from agent_migration.tables import SOURCE_TABLES, USERS, Table


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
    ins={"source_snapshot": dg.AssetIn()},
    # The usernames are read as distinct values straight from the snapshot the raw frames come from;
    # target_schema's checks (reachable target, right shape, no cutover) come first.
    deps=["target_schema", *(f"raw_{t.source}" for t in SOURCE_TABLES)],
)
def derived_users(
    context: dg.AssetExecutionContext, target: PostgresTarget, source: SqliteSource, source_snapshot: dict
):
    existing = read_existing_users(target)
    changes = source_snapshot.get("changes")
    referenced_by = {}
    if changes is not None:
        # The target's users are those of the last published snapshot; only the changed rows alter them.
        names = changes[delta.USER_CHANGES]
        kept = existing.loc[~existing["username"].isin(names["removed"]), "username"]
        references = [kept, pd.Series(names["added"], dtype=object)]
    else:
        with source.connect(source_snapshot["path"]) as conn:
            references = [usernames(t, referenced(conn, t)) for t in SOURCE_TABLES]
        referenced_by = {t.source: int(r.nunique()) for t, r in zip(SOURCE_TABLES, references, strict=True)}
    users = derive_users(references, existing, existing.attrs["sequence"])
    new = int((~users["username"].isin(existing["username"])).sum())
    context.log.info(f"{len(users):,} users ({new:,} new, {len(existing):,} already in the target)")
    return dg.MaterializeResult(
        value=users,
        metadata={
            "dagster/row_count": len(users),
            "dagster/column_schema": frame_schema(users),
            "new_users": new,
            "referenced_by": dg.MetadataValue.json(referenced_by or {"(change-only re-sync)": len(users)}),
        },
    )


def referenced(conn, table: Table) -> dict[str, pd.Series]:
    """The distinct values of each username column of a source table (all a users table needs)."""
    return {
        c.source: distinct_values(conn, table, c.source)
        for c in table.migrated
        if isinstance(c.rule, Username)
    }


def unchanged_parents(
    target: PostgresTarget, parent: Table, ids: pd.Series, redone: pd.DataFrame
) -> pd.Series:
    """Of the parent ids a change-only frame names, those the target holds and this run leaves alone.

    A parent row this run redoes is judged by its new outcome (in `redone`), any other by the target,
    which holds exactly the loadable rows of the last published snapshot.
    """
    affected = set(redone.attrs["delta"]["keys"])
    wanted = [int(v) for v in ids.dropna().unique() if int(v) not in affected]
    if not wanted:
        return pd.Series([], dtype="Int64")
    key = sql.Identifier(parent.key)
    with target.connect() as conn, conn.cursor() as cur:
        cur.execute(
            sql.SQL("SELECT {k} FROM {t} WHERE {k} = ANY(%s)").format(k=key, t=merge.target(parent)),
            (wanted,),
        )
        return pd.Series([r[0] for r in cur.fetchall()], dtype="Int64")


def clean_asset(table: Table) -> dg.AssetsDefinition:
    parents = list(dict.fromkeys(parent for _, parent in table.parent_refs))
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
    def _clean(
        context: dg.AssetExecutionContext,
        target: PostgresTarget,
        raw: pd.DataFrame,
        derived_users: pd.DataFrame,
        **loaded,
    ):
        frame = remap_users(table, clean_table(table, raw), derived_users)
        changes = raw.attrs.get("delta")
        for col, parent in table.parent_refs:
            parent_frame = loaded[f"clean_{parent.name}"]
            ok = parent_frame.loc[parent_frame[REJECT].isna(), parent.key]
            if changes is not None:
                ok = pd.concat([ok, unchanged_parents(target, parent, frame[col.name], parent_frame)])
            frame = reject_missing_parents(frame, col.name, ok, table, raw)
        if changes is not None:
            frame.attrs["delta"] = changes
        meta = reject_metadata(frame)
        context.log.info(f"{table.source}: {len(frame):,} rows, {meta['rows_rejected'].value:,} rejected")
        return dg.MaterializeResult(
            value=frame,
            metadata={"dagster/row_count": len(frame), "dagster/column_schema": frame_schema(frame), **meta},
        )

    return _clean


CLEAN_ASSETS = [clean_asset(t) for t in SOURCE_TABLES]
