"""The validate ledger's PostgreSQL side: a digest of every stored row, as `validate` proved it, and what
differs from it now.

A row's digest is PostgreSQL's 64-bit hash of the whole row: `hash_record_extended` (PostgreSQL 14 on:
each column by its type's own hash, NULL apart from any value; 2.5x cheaper than printing the row), or
the hash of the row's text form (`t::text`) before 14 and for the rejects (`json` has no hash), so any
change to any stored value of a row changes its digest. `validate` records the digests of every target table and of `migration.rejected_rows` in one
snapshot of the target (the one it compares in); a cutover recomputes them and asks the server which
rows differ (a hash join, nothing but the differing keys comes back).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from psycopg2 import sql

from agent_migration.core.tables import TARGET_TABLES, Table
from agent_migration.postgres.ddl import SCHEMA

META = "migration.validate_ledger"
REJECTS = "rejected_rows"  # the ledger of migration.rejected_rows, keyed by (source table, source rowid)

META_DDL = f"""
CREATE TABLE IF NOT EXISTS {META} (
  run_id TEXT NOT NULL,
  validated_at TIMESTAMP NOT NULL DEFAULT (clock_timestamp() AT TIME ZONE 'UTC'),
  snapshot TEXT NOT NULL,
  published_by TEXT,
  spec TEXT NOT NULL,
  counts JSONB NOT NULL
)"""


@dataclass(frozen=True)
class Recorded:
    """The ledger's record: the validate run, the source snapshot it proved (a copy kept for the ledger),
    the run that had published it, the specs, and every ledger table's row count."""

    run_id: str
    validated_at: object
    snapshot: str
    published_by: str
    spec: str
    counts: dict[str, int]


@dataclass(frozen=True)
class Changed:
    """A table's rows whose digest differs from the ledger's: `now` the keys the table holds now (new or
    changed rows), `gone` the keys only the ledger has (deleted or changed rows); `rows`: it holds now."""

    now: list
    gone: list
    rows: int


def ledger_table(name: str) -> sql.Composable:
    return sql.SQL("migration.{}").format(sql.Identifier(f"ledger_{name}"))


def pk(table: Table) -> str:
    return next(c.name for c in table.columns if c.primary_key)


def digest_kind(cur) -> str:
    """The row digest this server computes: `record` (PostgreSQL 14 on) or `text`."""
    cur.execute("SELECT current_setting('server_version_num')::int >= 140000")
    return "record" if cur.fetchone()[0] else "text"


def _digests(table: Table | None, kind: str) -> sql.Composable:
    """(key, digest) of every row of a target table, or (source table, rowid, digest) of every reject."""
    if table is None:
        return sql.SQL(
            "SELECT source_table AS s, source_rowid AS k, hashtextextended(r::text, 0) AS d "
            "FROM migration.rejected_rows r"
        )
    digest = "hash_record_extended(t, 0)" if kind == "record" else "hashtextextended(t::text, 0)"
    return sql.SQL("SELECT t.{} AS k, {} AS d FROM {}.{} t").format(
        sql.Identifier(pk(table)), sql.SQL(digest), sql.Identifier(SCHEMA), sql.Identifier(table.name)
    )


def write_digests(cur) -> str:
    """Replace every ledger table with the digests of the rows as this transaction sees them; returns
    the digest's kind (part of the ledger's record: a cutover must compute the same)."""
    kind = digest_kind(cur)
    for table in (*TARGET_TABLES, None):
        name = table.name if table else REJECTS
        cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(ledger_table(name)))
        cur.execute(sql.SQL("CREATE TABLE {} AS {}").format(ledger_table(name), _digests(table, kind)))
    return kind


def write_record(cur, run_id: str, snapshot: str, published_by: str, spec: str) -> None:
    """The one record of the ledger (an earlier one is replaced), with the row count of each ledger table."""
    counts = {}
    for name in (*(t.name for t in TARGET_TABLES), REJECTS):
        cur.execute(sql.SQL("SELECT count(*) FROM {}").format(ledger_table(name)))
        counts[name] = cur.fetchone()[0]
    cur.execute(META_DDL)
    cur.execute(f"DELETE FROM {META}")
    cur.execute(
        f"INSERT INTO {META} (run_id, snapshot, published_by, spec, counts) VALUES (%s, %s, %s, %s, %s)",
        (run_id, snapshot, published_by, spec, json.dumps(counts)),
    )


def recorded(cur) -> Recorded | None:
    """The ledger's record, or None when no validate recorded one (or a table of it is missing)."""
    cur.execute("SELECT to_regclass(%s)", (META,))
    if cur.fetchone()[0] is None:
        return None
    cur.execute(f"SELECT run_id, validated_at, snapshot, published_by, spec, counts FROM {META}")
    row = cur.fetchone()
    if row is None:
        return None
    for name in (*(t.name for t in TARGET_TABLES), REJECTS):
        cur.execute("SELECT to_regclass(%s)", (f"migration.ledger_{name}",))
        if cur.fetchone()[0] is None:
            return None
    return Recorded(*row)


def changed(cur, table: Table, kind: str) -> Changed:
    """The keys of `table` whose rows differ from the ledger's, on either side. The digests first, on
    their own (MATERIALIZED): the hash join then holds 16 bytes a row, not the rows (2x faster)."""
    cur.execute(
        sql.SQL(
            "WITH n AS MATERIALIZED ({now}) "
            "SELECT false, n.k, o.k FROM n FULL JOIN {led} o ON o.k = n.k WHERE n.d IS DISTINCT FROM o.d "
            "UNION ALL SELECT true, count(*), NULL FROM n"  # its row count, from the same scan
        ).format(now=_digests(table, kind), led=ledger_table(table.name))
    )
    found = cur.fetchall()
    rows = [(n, o) for counted, n, o in found if not counted]
    (count,) = [n for counted, n, _ in found if counted]
    return Changed([n for n, _ in rows if n is not None], [o for _, o in rows if o is not None], count)


@dataclass(frozen=True)
class ChangedRejects:
    """Rejects whose digest differs from the ledger's: per source table, the rowids on either side;
    `unkeyed`: a changed reject without a source rowid (it cannot be matched to a source row)."""

    rowids: dict[str, set[int]]
    unkeyed: bool
    rows: dict[str, int]  # per source table, the rejects it has now


def changed_rejects(cur) -> ChangedRejects:
    cur.execute(
        sql.SQL(
            "WITH n AS MATERIALIZED ({now}) SELECT false, coalesce(n.s, o.s), coalesce(n.k, o.k) FROM n "
            "FULL JOIN {led} o ON o.s = n.s AND o.k = n.k WHERE n.d IS DISTINCT FROM o.d "
            "UNION ALL SELECT true, s, count(*) FROM n GROUP BY s"
        ).format(now=_digests(None, "text"), led=ledger_table(REJECTS))
    )
    rowids: dict[str, set[int]] = {}
    counts: dict[str, int] = {}
    unkeyed = False
    for counted, source_table, rowid in cur.fetchall():
        if counted:
            counts[source_table] = rowid
        elif rowid is None:
            unkeyed = True
        else:
            rowids.setdefault(source_table, set()).add(rowid)
    return ChangedRejects(rowids, unkeyed, counts)


def rejects_among(cur, source_table: str, rowids: list[int]) -> int:
    """How many of these source rows the ledger records as rejected."""
    cur.execute(
        sql.SQL("SELECT count(*) FROM {} WHERE s = %s AND k = ANY(%s)").format(ledger_table(REJECTS)),
        (source_table, rowids),
    )
    return cur.fetchone()[0]


def rejects_of_table(cur, source_table: str) -> int:
    cur.execute(
        sql.SQL("SELECT count(*) FROM {} WHERE s = %s").format(ledger_table(REJECTS)), (source_table,)
    )
    return cur.fetchone()[0]
