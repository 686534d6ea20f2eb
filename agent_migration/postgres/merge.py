"""The publish transaction: stage every frame with COPY, then merge set-based into the app tables.

One transaction, so a run that fails or is killed midway leaves the target as the previous run left it.
Merging on keys (insert new, update only rows whose values differ, delete rows gone from the source)
makes a re-run write nothing when nothing changed, and keeps every id stable.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from psycopg2 import sql

from agent_migration.core.errors import MigrationError
from agent_migration.core.tables import MARKETPLACE_LISTINGS, TARGET_TABLES, USERS, Table
from agent_migration.postgres.copy import Rows, copy_batches
from agent_migration.postgres.ddl import SCHEMA

LOCK_KEY = 0x6D1647  # one advisory lock for every writer of this project
REJECT_TYPES = {
    "source_table": "TEXT",
    "source_key": "TEXT",
    "reason": "TEXT",
    "payload": "JSON",
    "run_id": "TEXT",
    "source_rowid": "BIGINT",
    "reason_kind": "TEXT",
}


class ConcurrentRun(MigrationError):
    pass


def target(table: Table) -> sql.Composable:
    return sql.SQL("{}.{}").format(sql.Identifier(SCHEMA), sql.Identifier(table.name))


def stage_name(table: Table) -> sql.Identifier:
    return sql.Identifier(f"stage_{table.name}")


def _ids(names) -> sql.Composable:
    return sql.SQL(", ").join(map(sql.Identifier, names))


def _prefixed(alias: str, names) -> sql.Composable:
    return sql.SQL(", ").join(
        sql.SQL("{}.{}").format(sql.Identifier(alias), sql.Identifier(n)) for n in names
    )


def lock(cur, wait_s: float) -> None:
    """Take the project's advisory lock for this transaction, or fail clearly after `wait_s`."""
    deadline = time.monotonic() + wait_s
    while True:
        if try_lock(cur):
            return
        if time.monotonic() >= deadline:
            raise ConcurrentRun(
                f"another migration run is writing to the target (advisory lock {LOCK_KEY} held for more "
                f"than {wait_s:g} s); wait for it to finish, then run again"
            )
        time.sleep(0.5)


def try_lock(cur) -> bool:
    """The project's advisory lock for this transaction, if no other run holds it."""
    cur.execute("SELECT pg_try_advisory_xact_lock(%s)", (LOCK_KEY,))
    return cur.fetchone()[0]


def stage(cur, table: Table, columns: dict[str, str], rows: Rows, progress=None) -> int:
    """A temporary table (dropped at commit) holding `rows`, analyzed so the merge plans hash joins."""
    name = stage_name(table)
    cols = sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(t)) for c, t in columns.items()
    )
    cur.execute(sql.SQL("CREATE TEMP TABLE {} ({}) ON COMMIT DROP").format(name, cols))
    n = copy_batches(cur, name, rows.schema, rows.batches(), columns, progress)
    cur.execute(sql.SQL("ANALYZE {}").format(name))
    return n


def is_empty(cur, table: Table) -> bool:
    cur.execute(sql.SQL("SELECT NOT EXISTS (SELECT 1 FROM {})").format(target(table)))
    return cur.fetchone()[0]


def upsert(cur, table: Table, columns: list[str]) -> tuple[int, int]:
    """Update rows whose values differ, insert new keys. Returns (inserted, updated)."""
    key = sql.Identifier(table.key)
    rest = [c for c in columns if c != table.key]
    updated = 0
    if rest:
        cur.execute(
            sql.SQL(
                "UPDATE {t} AS t SET ({cols}) = ROW({s_cols}) FROM {s} AS s "
                "WHERE t.{key} = s.{key} AND ({t_cols}) IS DISTINCT FROM ({s_cols})"
            ).format(
                t=target(table),
                s=stage_name(table),
                cols=_ids(rest),
                s_cols=_prefixed("s", rest),
                t_cols=_prefixed("t", rest),
                key=key,
            )
        )
        updated = cur.rowcount
    cur.execute(
        sql.SQL(
            "INSERT INTO {t} ({cols}) SELECT {s_cols} FROM {s} AS s "
            "WHERE NOT EXISTS (SELECT 1 FROM {t} AS t WHERE t.{key} = s.{key})"
        ).format(
            t=target(table), s=stage_name(table), cols=_ids(columns), s_cols=_prefixed("s", columns), key=key
        )
    )
    return cur.rowcount, updated


def delete_missing(cur, table: Table, keys: list | None = None) -> int:
    """Delete target rows whose key is no longer in the source (the plan's cascades follow); with
    `keys`, only among those keys (a change-only re-sync stages only the rows it redid), found by index."""
    key = sql.Identifier(table.key)
    using, scope, params = sql.SQL(""), sql.SQL(""), None
    if keys is not None:
        using = sql.SQL(" USING unnest(%s::bigint[]) AS k(key)")
        scope, params = sql.SQL("t.{} = k.key AND ").format(key), (keys,)
    cur.execute(
        sql.SQL(
            "DELETE FROM {t} AS t{using} WHERE {scope}NOT EXISTS (SELECT 1 FROM {s} AS s WHERE s.{key} = t.{key})"
        ).format(t=target(table), s=stage_name(table), key=key, using=using, scope=scope),
        params,
    )
    return cur.rowcount


def check_user_ids(cur) -> None:
    """Refuse to publish when the target's users changed since `derived_users` read them."""
    cur.execute(
        sql.SQL(
            "SELECT count(*) FROM {t} AS t JOIN {s} AS s ON s.username = t.username WHERE s.id <> t.id"
        ).format(t=target(USERS), s=stage_name(USERS))
    )
    if cur.fetchone()[0]:
        raise ConcurrentRun("the target's users changed while this run was preparing them; run again")


# Listings follow their agents: one active listing per agent for sale (with a price), at its current price
# and owner; a listing whose agent is no longer for sale is cancelled, never deleted; an agent for sale
# again gets its latest cancelled listing back.
_LISTINGS = [
    (
        "cancelled",
        """UPDATE marketplace_listings AS l SET status = 'cancelled', updated_at = CURRENT_TIMESTAMP
           FROM agents AS a WHERE l.agent_id = a.id AND l.status = 'active'
             AND NOT (a.for_sale IS TRUE AND a.price IS NOT NULL)""",
    ),
    (
        "updated",
        """UPDATE marketplace_listings AS l SET price = a.price, seller_id = a.owner_id,
                  updated_at = CURRENT_TIMESTAMP
           FROM agents AS a WHERE l.agent_id = a.id AND l.status = 'active'
             AND a.for_sale IS TRUE AND a.price IS NOT NULL
             AND (l.price, l.seller_id) IS DISTINCT FROM (a.price, a.owner_id)""",
    ),
    (
        "reactivated",
        """UPDATE marketplace_listings AS l SET status = 'active', price = a.price, seller_id = a.owner_id,
                  updated_at = CURRENT_TIMESTAMP
           FROM agents AS a
           WHERE l.agent_id = a.id AND l.id IN (
             SELECT DISTINCT ON (c.agent_id) c.id FROM marketplace_listings AS c JOIN agents AS g ON g.id = c.agent_id
             WHERE c.status = 'cancelled' AND g.for_sale IS TRUE AND g.price IS NOT NULL
               AND NOT EXISTS (SELECT 1 FROM marketplace_listings AS x
                               WHERE x.agent_id = c.agent_id AND x.status = 'active')
             ORDER BY c.agent_id, c.id DESC)""",
    ),
    (
        "inserted",
        """INSERT INTO marketplace_listings (agent_id, seller_id, price, status)
           SELECT a.id, a.owner_id, a.price, 'active' FROM agents AS a
           WHERE a.for_sale IS TRUE AND a.price IS NOT NULL
             AND NOT EXISTS (SELECT 1 FROM marketplace_listings AS l
                             WHERE l.agent_id = a.id AND l.status = 'active')
           ORDER BY a.id""",
    ),
]


def sync_listings(cur) -> dict[str, int]:
    counts = {}
    for what, statement in _LISTINGS:
        cur.execute(statement)
        counts[what] = cur.rowcount
    return counts


def next_id(cur, table: Table) -> int | None:
    """What the table's SERIAL sequence hands out next (None: no SERIAL column)."""
    col = table.serial
    if col is None:
        return None
    cur.execute("SELECT pg_get_serial_sequence(%s, %s)", (f"{SCHEMA}.{table.name}", col.name))
    seq = sql.Identifier(*cur.fetchone()[0].split("."))
    # After setval(..., false) the sequence has not been called: it hands out last_value itself.
    cur.execute(
        sql.SQL("SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END FROM {}").format(seq)
    )
    return cur.fetchone()[0]


def advance_sequence(cur, table: Table, past: int | None = None) -> None:
    """Move the SERIAL sequence past the largest id and `past` (the largest source id, rejected rows
    included), never backwards, so the app's next insert works. The highest id is set as handed out
    (is_called), so an id of INTEGER's maximum does not overflow the sequence; a rejected source id beyond
    the sequence's range (it cannot be loaded, nor collide) leaves it at its maximum."""
    nxt = next_id(cur, table)
    if nxt is None:
        return
    cur.execute(
        sql.SQL(
            "SELECT CASE WHEN h >= 1 THEN setval(s, LEAST(h, m), true) ELSE setval(s, 1, false) END FROM"
            " (SELECT s, GREATEST((SELECT COALESCE(max({c}), 0) FROM {t}), %s, %s) AS h,"
            "  (SELECT seqmax FROM pg_sequence WHERE seqrelid = s::regclass) AS m"
            "  FROM pg_get_serial_sequence(%s, %s) AS s) x"
        ).format(c=sql.Identifier(table.serial.name), t=target(table)),
        (nxt - 1, past or 0, f"{SCHEMA}.{table.name}", table.serial.name),
    )


def detach_for_bulk(cur, table: Table) -> list[sql.Composable]:
    """Drop an empty table's foreign keys and secondary indexes; return the statements that restore them.

    Building an index once and validating a foreign key in one join after a bulk insert is much faster
    than maintaining them row by row (pgloader does the same). The definitions come from the catalog,
    so whatever the table really had is restored, under the same names.
    """
    cur.execute(
        """SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint
           WHERE conrelid = %s::regclass AND contype = 'f' ORDER BY conname""",
        (f"{SCHEMA}.{table.name}",),
    )
    fkeys = cur.fetchall()
    cur.execute(
        """SELECT c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
           WHERE i.indrelid = %s::regclass AND NOT i.indisprimary AND NOT i.indisunique ORDER BY c.relname""",
        (f"{SCHEMA}.{table.name}",),
    )
    indexes = cur.fetchall()
    restore: list[sql.Composable] = []
    for name, definition in fkeys:
        cur.execute(sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(target(table), sql.Identifier(name)))
        restore.append(
            sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
                target(table), sql.Identifier(name), sql.SQL(definition)
            )
        )
    for name, definition in indexes:
        cur.execute(sql.SQL("DROP INDEX {}.{}").format(sql.Identifier(SCHEMA), sql.Identifier(name)))
        restore.insert(0, sql.SQL(definition))
    return restore


def progress(table: Table, total: int, log: Callable[[str], None]) -> Callable[[int], None]:
    """Logs rows copied of total for large tables, so a user watching a long load sees it move."""

    reported = [0]

    def report(done: int) -> None:  # in quarters: each log line is a stored event
        if total > 100_000 and 4 * done // total > reported[0]:
            reported[0] = 4 * done // total
            log(f"{table.name}: copied {done:,} of {total:,} rows")

    return report


def load_tables(
    cur,
    frames: dict[str, Rows],
    columns: dict[str, dict[str, str]],
    source_tables: list[Table],
    rejects: list[Rows],
    log: Callable[[str], None] = print,
    scopes: dict[str, dict] | None = None,
    phases: dict[str, float] | None = None,
) -> dict[str, dict[str, int]]:
    """Load the frames into the app tables, in FK order; return per-table change counts.

    An empty table (the first run) is filled by COPY straight into it, with its foreign keys and
    secondary indexes restored after; a table with rows is staged and merged on its key. `frames` maps
    a target table name (users and the source tables) to its loadable rows (`Rows`); `columns` its column -> type.
    `scopes` (a change-only re-sync) maps each source table to the target `keys` and source `rowids`
    its frame redid: target rows and rejects outside them stay as they are. Without it, the frames are
    whole tables. The caller holds the transaction (and the lock) and commits. `phases` gets the seconds
    spent copying and merging ("copy") and building indexes and keys ("indexes").
    """
    phases = {} if phases is None else phases
    started = time.monotonic()
    cur.execute("SET LOCAL maintenance_work_mem TO '256MB'")
    changes: dict[str, dict[str, int]] = {}
    ordered = [USERS, *source_tables]
    empty = [t for t in ordered if is_empty(cur, t)]
    restore = [statement for table in empty for statement in detach_for_bulk(cur, table)]
    for table in ordered:
        t0 = time.monotonic()
        if table in empty:
            rows = frames[table.name]
            n = copy_batches(
                cur, target(table), rows.schema, rows.batches(), columns[table.name], progress(table, rows.count, log)
            )
            changes[table.name] = {"inserted": n, "updated": 0, "deleted": 0}
        else:
            rows = frames[table.name]
            stage(cur, table, columns[table.name], rows, progress(table, rows.count, log))
            if table is USERS:
                check_user_ids(cur)
            inserted, updated = upsert(cur, table, list(columns[table.name]))
            changes[table.name] = {"inserted": inserted, "updated": updated, "deleted": 0}
        c = changes[table.name]
        log(
            f"{table.name}: {c['inserted']:,} inserted, {c['updated']:,} updated in {time.monotonic() - t0:.1f} s"
        )
    for table in reversed(source_tables):
        if table not in empty:
            keys = scopes[table.name]["keys"] if scopes else None
            changes[table.name]["deleted"] = delete_missing(cur, table, keys)
    t0 = time.monotonic()
    phases["copy"] = t0 - started
    for statement in restore:
        cur.execute(statement)
    for table in empty:  # fresh statistics, so the checks that follow plan with the real row counts
        cur.execute(sql.SQL("ANALYZE {}").format(target(table)))
    phases["indexes"] = time.monotonic() - t0
    if restore:
        log(f"rebuilt {len(restore)} indexes and foreign keys in {time.monotonic() - t0:.1f} s")
    listings = sync_listings(cur)
    changes[MARKETPLACE_LISTINGS.name] = {
        "inserted": listings["inserted"],
        "updated": listings["updated"] + listings["cancelled"] + listings["reactivated"],
        "deleted": 0,
    }
    if USERS not in empty:
        changes[USERS.name]["deleted"] = delete_missing(cur, USERS)
    for table in TARGET_TABLES:
        advance_sequence(cur, table)
    if scopes is None:
        cur.execute("DELETE FROM migration.rejected_rows")
    else:
        for table in source_tables:
            cur.execute(
                "DELETE FROM migration.rejected_rows WHERE source_table = %s AND source_rowid = ANY(%s)",
                (table.source, scopes[table.name]["rowids"]),
            )
    for rows in rejects:
        copy_batches(cur, sql.SQL("migration.rejected_rows"), rows.full_schema, rows.batches(), REJECT_TYPES)
    cur.execute("ANALYZE migration.rejected_rows")  # the checks that follow plan with its real size
    return changes
