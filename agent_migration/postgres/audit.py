"""Read-only queries that prove the migration in PostgreSQL, generated from the table specs.

Used by the asset checks and the final report; each returns plain data (counts and a few keys).
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from psycopg2 import sql

from agent_migration.core.rules import Money
from agent_migration.core.tables import Table
from agent_migration.postgres.ddl import SCHEMA
from agent_migration.postgres.merge import next_id, target

SAMPLE_KEYS = 5
_NUMBER = r"^[+-]?(\d+\.?\d*|\.\d+)$"


def scalar(cur, query, params=None):
    cur.execute(query, params)
    return cur.fetchone()[0]


def recorded_source_stats(cur) -> dict[str, dict]:
    cur.execute("SELECT source_table, source_rows, sums, max_id FROM migration.source_stats")
    return {t: {"rows": n, "sums": s, "max_id": m} for t, n, s, m in cur.fetchall()}


def rejected_count(cur, table: Table) -> int:
    return scalar(
        cur, "SELECT count(*) FROM migration.rejected_rows WHERE source_table = %s", (table.source,)
    )


def loaded_count(cur, table: Table) -> int:
    return scalar(cur, sql.SQL("SELECT count(*) FROM {}").format(target(table)))


def accounting(cur, table: Table, stats: dict) -> dict:
    """source rows = loaded rows + rejected rows, and rejected keys are not duplicated."""
    source = stats.get(table.source, {}).get("rows")
    loaded, rejected = loaded_count(cur, table), rejected_count(cur, table)
    dup = scalar(
        cur,
        # Byte order ("C"): the same distinctness, without the locale's slow comparisons (12 s -> 2 s at 4 M rows).
        'SELECT count(*) - count(DISTINCT source_key COLLATE "C") FROM migration.rejected_rows WHERE source_table = %s',
        (table.source,),
    )
    return {
        "source_rows": source,
        "loaded_rows": loaded,
        "rejected_rows": rejected,
        "difference": None if source is None else source - loaded - rejected,
        "duplicate_reject_keys": dup,
        "passed": source is not None and source == loaded + rejected and dup == 0,
    }


def enforced(cur, table: Table, column: str, parent: str, parent_col: str) -> str | None:
    """The name of a validated FOREIGN KEY on `column` -> parent(parent_col) whose triggers are all
    enabled: PostgreSQL then guarantees there is no orphan, and no scan is needed to prove it."""
    cur.execute(
        """SELECT c.conname FROM pg_constraint AS c
           WHERE c.conrelid = %(t)s::regclass AND c.contype = 'f' AND c.convalidated
             AND c.confrelid = %(p)s::regclass
             AND c.conkey = ARRAY[(SELECT attnum FROM pg_attribute WHERE attrelid = %(t)s::regclass
                                   AND attname = %(c)s)]::int2[]
             AND c.confkey = ARRAY[(SELECT attnum FROM pg_attribute WHERE attrelid = %(p)s::regclass
                                    AND attname = %(pc)s)]::int2[]
             AND NOT EXISTS (SELECT 1 FROM pg_trigger AS g WHERE g.tgconstraint = c.oid AND g.tgenabled = 'D')
           LIMIT 1""",
        {"t": f"{SCHEMA}.{table.name}", "p": f"{SCHEMA}.{parent}", "c": column, "pc": parent_col},
    )
    row = cur.fetchone()
    return row[0] if row else None


def orphans(cur, table: Table) -> dict[str, dict]:
    """Per foreign key column: rows pointing at a parent that does not exist, with a few of their keys.

    Where PostgreSQL enforces the key (see `enforced`) that is its proof; elsewhere the rows are scanned.
    """
    found = {}
    for col in table.foreign_keys:
        parent, parent_col = col.references.rstrip(")").split("(")
        constraint = enforced(cur, table, col.name, parent, parent_col)
        if constraint:
            found[col.name] = {"sample_keys": [], "enforced_by": constraint}
            continue
        query = sql.SQL(
            "SELECT c.{key} FROM {t} AS c WHERE c.{col} IS NOT NULL AND NOT EXISTS "
            "(SELECT 1 FROM {p} AS p WHERE p.{pc} = c.{col}) LIMIT %s"
        ).format(
            key=sql.Identifier(table.key),
            t=target(table),
            col=sql.Identifier(col.name),
            p=sql.SQL("public.{}").format(sql.Identifier(parent)),
            pc=sql.Identifier(parent_col),
        )
        cur.execute(query, (SAMPLE_KEYS,))
        found[col.name] = {"sample_keys": [r[0] for r in cur.fetchall()], "enforced_by": None}
    return found


def constraint_breaks(cur, table: Table) -> dict[str, list]:
    """Per column with a CHECK or NOT NULL: keys of rows that break it (PostgreSQL enforces them; we re-prove)."""
    found = {}
    for col in table.columns:
        conds = []
        if col.check_sql:
            conds.append(sql.SQL("NOT ({})").format(sql.SQL(col.check_sql)))
        if col.not_null:
            conds.append(sql.SQL("{} IS NULL").format(sql.Identifier(col.name)))
        if not conds:
            continue
        cur.execute(
            sql.SQL("SELECT {key} FROM {t} WHERE {cond} LIMIT %s").format(
                key=sql.Identifier(table.key), t=target(table), cond=sql.SQL(" OR ").join(conds)
            ),
            (SAMPLE_KEYS,),
        )
        found[col.name] = [r[0] for r in cur.fetchall()]
    return found


def sums(cur, table: Table, stats: dict) -> dict[str, dict]:
    """Per reconciled column: the source total vs loaded + rejected totals (cents for money)."""
    found = {}
    for name in table.sums:
        col = table.col(name)
        scale = col.rule.scale if isinstance(col.rule, Money) else 0
        loaded = scalar(
            cur,
            sql.SQL("SELECT COALESCE(sum({c}), 0) FROM {t}").format(c=sql.Identifier(name), t=target(table)),
        )
        cur.execute(
            """
            SELECT COALESCE(sum(CASE WHEN %(scale)s > 0 THEN round(v * 10::numeric ^ %(scale)s) ELSE v END), 0) FROM (
              SELECT CASE WHEN json_typeof(payload -> %(col)s) = 'number'
                            OR (json_typeof(payload -> %(col)s) = 'string' AND payload ->> %(col)s ~ %(num)s)
                          THEN (payload ->> %(col)s)::numeric END AS v
              FROM migration.rejected_rows WHERE source_table = %(table)s) AS r
            """,
            {"scale": scale, "col": col.source, "num": _NUMBER, "table": table.source},
        )
        rejected = Decimal(cur.fetchone()[0])
        loaded_units = (
            (Decimal(loaded) * (10**scale)).quantize(Decimal(1), rounding=ROUND_HALF_UP)
            if scale
            else Decimal(loaded)
        )
        source = Decimal(stats.get(table.source, {}).get("sums", {}).get(name, "NaN"))
        found[name] = {
            "unit": "cents" if scale else "units",
            "source": str(source),
            "loaded": str(loaded_units),
            "rejected": str(rejected),
            "passed": source == loaded_units + rejected,
        }
    return found


def sequence_lag(cur, table: Table, max_source_id: int | None = None) -> dict | None:
    """The SERIAL sequence's next value vs max(id) and the largest source id, rejected rows included: the
    app's next insert must collide neither with a row nor with a reject that a rollback restores."""
    col = table.serial
    if col is None:
        return None
    max_id = scalar(cur, sql.SQL("SELECT max({}) FROM {}").format(sql.Identifier(col.name), target(table)))
    next_value = next_id(cur, table)
    if max_source_id is not None:  # a rejected id beyond SERIAL's range can collide with nothing
        max_source_id = min(max_source_id, 2**31 - 1)
    highest = max((i for i in (max_id, max_source_id) if i is not None), default=None)
    return {
        "max_id": max_id,
        "max_source_id": max_source_id,
        "next_value": next_value,
        "passed": highest is None or next_value > highest,
    }


def listing_mismatches(cur) -> dict:
    """Agents for sale without exactly one active listing at their price, and active listings of agents not for sale."""
    missing = scalar(
        cur,
        """SELECT count(*) FROM agents a LEFT JOIN (
             SELECT l.agent_id, count(*) AS n FROM marketplace_listings l JOIN agents g ON g.id = l.agent_id
             WHERE l.status = 'active' AND l.price = g.price AND l.seller_id IS NOT DISTINCT FROM g.owner_id
             GROUP BY l.agent_id) m ON m.agent_id = a.id
           WHERE a.for_sale IS TRUE AND a.price IS NOT NULL AND COALESCE(m.n, 0) <> 1""",
    )
    stale = scalar(
        cur,
        """SELECT count(*) FROM marketplace_listings l JOIN agents a ON a.id = l.agent_id
           WHERE l.status = 'active' AND NOT (a.for_sale IS TRUE AND a.price IS NOT NULL)""",
    )
    unpriced = scalar(cur, "SELECT count(*) FROM agents WHERE for_sale IS TRUE AND price IS NULL")
    return {
        "for_sale_without_one_listing": missing,
        "active_but_not_for_sale": stale,
        "for_sale_without_price": unpriced,
    }


def rejects_by_reason(cur, table: Table, top: int = 10) -> dict[str, int]:
    """Counts per kind of reason (a row with several reasons counts under each); rows of runs before
    `reason_kind` existed are grouped by their reason with its values cut out.

    Grouped by the stored combination first (a handful of groups), split into kinds here: splitting every
    row's text in SQL cost seconds per million rejects."""
    cur.execute(
        """SELECT coalesce(reason_kind,
             regexp_replace(regexp_replace(reason, ' \\(got .*?\\)(;|$)', '\\1', 'g'),
                            'agent \\d+, which', 'agent N, which', 'g')), count(*)
           FROM migration.rejected_rows WHERE source_table = %s GROUP BY 1""",
        (table.source,),
    )
    kinds: dict[str, int] = {}
    for combined, count in cur.fetchall():
        for kind in combined.split("; "):
            kinds[kind] = kinds.get(kind, 0) + count
    return dict(sorted(kinds.items(), key=lambda kv: (-kv[1], kv[0]))[:top])


def reject_sample(cur, table: Table, n: int = SAMPLE_KEYS) -> list[dict]:
    cur.execute(
        "SELECT source_key, reason FROM migration.rejected_rows WHERE source_table = %s "
        'ORDER BY source_rowid, source_key COLLATE "C" LIMIT %s',  # the first in source order, by the index
        (table.source, n),
    )
    return [{"source_key": k, "reason": r} for k, r in cur.fetchall()]


def last_run_changes(cur) -> dict:
    """The latest publish: its run id, source snapshot and per-table changes."""
    cur.execute("SELECT run_id, snapshot, changes FROM migration.runs ORDER BY finished_at DESC LIMIT 1")
    row = cur.fetchone()
    return {} if row is None else {"run_id": row[0], "snapshot": row[1], "changes": row[2]}
