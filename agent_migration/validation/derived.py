"""The tables no source table maps to row by row, proven from what the rules derive, never with the SQL
that made them: `users` (every valid username the source references), `marketplace_listings` (one active
listing per agent for sale with a price, at its price and owner), `battles` (nothing in the source makes
one) and `migration.rejected_rows` beyond the source tables' own rejects (none).
"""

from __future__ import annotations

import sqlite3

import numpy as np
import pandas as pd

from agent_migration.core.tables import AGENTS, BATTLES, MARKETPLACE_LISTINGS, SOURCE_TABLES, USERS
from agent_migration.validation import compare, expected, target_read
from agent_migration.validation.compare import Difference, Tally
from agent_migration.validation.expected import KEY

REJECTED_ROWS = "rejected_rows"
LISTED = ["agent_id", "seller_id", "price"]
COMPARED = ("seller_id", "price")  # a listing's columns the rules set (status: active; the rest are times)


def tallies(sconn: sqlite3.Connection, conn, cur, listed: list[pd.DataFrame]) -> list[Tally]:
    """`users`, `marketplace_listings` (from the agents' `listed` chunks), `battles`, stray rejects."""
    return [users(sconn, cur), listings(cur, listed), battles(conn), stray_rejects(cur)]


def listed_by_target(conn) -> list[pd.DataFrame]:
    """The listings the rules make of the agents the target holds, once those are proven."""
    columns = ["for_sale", "price", "owner_id"]
    return [for_sale(rows) for rows in target_read.rows_of(conn, AGENTS, columns)]


def users(sconn: sqlite3.Connection, cur, want: set[str] | None = None) -> Tally:
    """`users` is exactly the set of valid usernames the source references (`want`, if read already)."""
    tally = Tally(USERS.name)
    want = expected.referenced_users(sconn, SOURCE_TABLES) if want is None else want
    have = target_read.usernames(cur)
    held = set(have)
    tally.compared = len(want)
    for name in sorted(want - held):
        tally.missing += 1
        tally.note(
            Difference(
                USERS.name, f"username={compare.show(name)}", "missing", source="the source references it"
            )
        )
    for name in sorted(held - want):
        tally.extra += 1
        tally.note(
            Difference(
                USERS.name, f"username={compare.show(name)}", "extra", target="no source row references it"
            )
        )
    tally.extra += len(have) - len(held)  # a username twice (the UNIQUE constraint forbids it)
    tally.matched = len(want & held)
    return tally


def for_sale(agents: pd.DataFrame) -> pd.DataFrame:
    """The listings the rules make of loaded agents (canonical rows): one per agent for sale with a price."""
    listed = agents["for_sale"].map(lambda v: v is True) & agents["price"].notna()
    return pd.DataFrame(
        {
            "agent_id": agents.loc[listed, KEY].astype("int64"),
            "seller_id": agents.loc[listed, "owner_id"].astype(object),
            "price": agents.loc[listed, "price"].astype(object),
        }
    )


def _extra(tally: Tally, key: str, why: str) -> None:
    tally.extra += 1
    tally.note(Difference(tally.table, key, "extra", target=why))


def listings(cur, listed: list[pd.DataFrame]) -> Tally:
    """Every listing against the agents': one active listing per agent for sale, at its price and seller,
    no other active one; a cancelled listing is history (an agent once for sale); no other status."""
    tally = Tally(MARKETPLACE_LISTINGS.name)
    want = pd.concat(listed, ignore_index=True) if listed else pd.DataFrame({c: [] for c in LISTED})
    want = want.astype({"agent_id": "int64"})
    have = target_read.listings(cur)
    tally.compared = len(want)
    odd = ~have["status"].isin(["active", "cancelled"]) | have["agent_id"].isna()
    for row in have[odd].itertuples():
        _extra(tally, f"id={row.id}", f"status {row.status!r} of agent {row.agent_id}: the rules make none")
    active = have[~odd & have["status"].eq("active")].astype({"agent_id": "int64"})
    twice = active["agent_id"].duplicated()
    for row in active[twice].itertuples():
        _extra(tally, f"id={row.id}", f"a second active listing of agent {row.agent_id}")
    merged = want.merge(active[~twice], on="agent_id", how="outer", suffixes=("", "@target"), indicator=True)
    for row in merged[merged["_merge"] == "left_only"].itertuples():
        tally.missing += 1
        tally.note(
            Difference(tally.table, f"agent_id={row.agent_id}", "missing", source="the agent is for sale")
        )
    for row in merged[merged["_merge"] == "right_only"].itertuples():
        _extra(tally, f"id={row.id}", f"active, but agent {row.agent_id} is not for sale")
    both = merged[merged["_merge"] == "both"]
    differs = np.zeros(len(both), dtype=bool)
    for col in COMPARED:
        rules, held = both[col].to_numpy(dtype=object), both[f"{col}@target"].to_numpy(dtype=object)
        bad = np.asarray(rules != held, dtype=bool)
        differs |= bad
        for listing, x, y in zip(both["id"].to_numpy()[bad], rules[bad], held[bad], strict=True):
            tally.note(Difference(tally.table, f"id={listing}", "differs", col, x, y))
    tally.differing = int(differs.sum())
    tally.matched = len(both) - tally.differing
    return tally


def battles(conn) -> Tally:
    """`battles` is new in PostgreSQL: nothing in the source makes one, so every battle is extra."""
    tally = Tally(BATTLES.name)
    for ids in target_read.battle_ids(conn):
        for battle in ids:
            _extra(tally, f"id={battle}", "the source has no battles: the migration makes none")
    return tally


def stray_rejects(cur) -> Tally:
    """Rejects naming a table the source does not have (the source tables' own are proven with them)."""
    tally = Tally(REJECTED_ROWS)
    for table, key, rowid in target_read.stray_rejects(cur, [t.source for t in SOURCE_TABLES]):
        label = f"source_table={compare.show(table)} source_key={compare.show(key)} (rowid {rowid})"
        _extra(tally, label, "no source table of that name")
    return tally
