"""Load: create the target schema, then publish every table in one PostgreSQL transaction.

`publish` stages each cleaned frame with COPY and merges it set-based into the app tables (see
`postgres/merge.py`); the whole run's writes commit together or not at all.
"""

import json
import time

import dagster as dg
import pandas as pd
import psycopg2
import psycopg2.errors
from psycopg2 import sql

from agent_migration import delta, embedded
from agent_migration.assets.common import OWNERS, markdown_table, reject_reasons, table_schema
from agent_migration.postgres import cutover, ddl, merge
from agent_migration.resources import MigrationError, PostgresTarget, redact
from agent_migration.rules import PAYLOAD, REJECT, SOURCE_KEY, SOURCE_ROWID, Username
from agent_migration.tables import SOURCE_TABLES, TARGET_TABLES, USERS, Table

POOL = "postgres"
REJECTED_ROWS = "rejected_rows"
RETRY = dg.RetryPolicy(max_retries=3, delay=2, backoff=dg.Backoff.EXPONENTIAL)
TRANSIENT = (psycopg2.OperationalError, psycopg2.InterfaceError)


def fail(exc: Exception, target: PostgresTarget) -> dg.Failure:
    """A clear, password-free failure; transient connection errors stay retryable."""
    text, where = str(exc).strip() or type(exc).__name__, "the target"
    try:
        url = target.url()
        text, where = redact(text, url), target.describe(url)
    except MigrationError:
        text = redact(text)
    # A dropped connection or a restarted server is worth another try; a statement timeout is not.
    retry = isinstance(exc, TRANSIENT) and not isinstance(exc, psycopg2.errors.QueryCanceled)
    return dg.Failure(description=f"PostgreSQL at {where}: {text}", allow_retries=retry)


@dg.asset(
    group_name="load",
    kinds={"postgres"},
    owners=OWNERS,
    pool=POOL,
    retry_policy=RETRY,
    deps=["source_snapshot"],  # a source that cannot be read fails the run before anything is written
    description="The plan's 7 app tables with every index, and the `migration` bookkeeping schema (idempotent).",
)
def target_schema(context: dg.AssetExecutionContext, target: PostgresTarget) -> dg.MaterializeResult:
    try:
        with target.connect() as conn, conn.cursor() as cur:
            merge.lock(cur, wait_s=target.lock_wait_s)
            cutover.refuse_after_cutover(cur)
            try:
                created = ddl.ensure_schema(cur)
            except ValueError as exc:
                raise MigrationError(
                    f"the target {target.describe()} already holds app tables of another shape: {exc}. "
                    "Nothing was changed; migrate into an empty database or fix those tables."
                ) from None
            conn.commit()
    except (MigrationError, merge.ConcurrentRun, cutover.CutoverDone) as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from None
    except psycopg2.Error as exc:
        raise fail(exc, target) from None
    where = target.describe()
    if target.is_embedded:
        # The embedded server trusts local socket connections: its URL holds no secret.
        url = embedded.ensure_database(target.embedded_dir)
        context.log.info(f"target: embedded PostgreSQL in {target.embedded_dir}; connect with: psql '{url}'")
    else:
        context.log.info(f"target: PostgreSQL at {where}")
    return dg.MaterializeResult(
        metadata={
            "target": where,
            "tables_created": dg.MetadataValue.json(created),
            "tables": dg.MetadataValue.json([t.name for t in TARGET_TABLES]),
        }
    )


def upstream(table: Table) -> list[str]:
    """The assets a target table is computed from (for lineage in the graph)."""
    if table.source:
        return [f"clean_{table.name}", "derived_users"]
    assets = {d.split(".")[0] for c in table.columns for d in c.derived_from}
    return sorted({a if a == "derived_users" else f"clean_{a}" for a in assets}) or ["target_schema"]


def column_lineage(table: Table) -> dg.TableColumnLineage:
    deps: dict[str, list[dg.TableColumnDep]] = {}
    for c in table.columns:
        found = [dg.TableColumnDep(f"raw_{table.source}", c.source)] if c.source else []
        if isinstance(c.rule, Username):
            found.append(dg.TableColumnDep("derived_users", "username"))
        found += [dg.TableColumnDep(*d.split(".")) for d in c.derived_from]
        if found:
            deps[c.name] = found
    return dg.TableColumnLineage(deps)


def lineage_markdown(lineage: dg.TableColumnLineage) -> str:
    rows = [
        {"column": col, "from": ", ".join(f"{'/'.join(d.asset_key.path)}.{d.column_name}" for d in deps)}
        for col, deps in lineage.deps_by_column.items()
    ]
    return markdown_table(rows, limit=100)


SPECS = [
    dg.AssetSpec(
        t.name,
        description=t.description,
        group_name="load",
        kinds={"postgres"},
        owners=OWNERS,
        deps=["target_schema", *upstream(t)],
        metadata={"dagster/column_schema": table_schema(t), "dagster/table_name": f"public.{t.name}"},
    )
    for t in TARGET_TABLES
] + [
    dg.AssetSpec(
        REJECTED_ROWS,
        description="migration.rejected_rows: every source row that could not be loaded, with reason and payload.",
        group_name="load",
        kinds={"postgres"},
        owners=OWNERS,
        deps=["target_schema", "source_snapshot", *(f"clean_{t.name}" for t in SOURCE_TABLES)],
    )
]


def loadable(table: Table, frame: pd.DataFrame) -> pd.DataFrame:
    columns = [c.name for c in table.migrated]
    ok = frame[REJECT].isna()
    # Without rejects, no filter: a boolean filter would copy every column (the chat text included).
    return frame[columns] if ok.all() else frame.loc[ok, columns]


def rejected(table: Table, frame: pd.DataFrame, run_id: str) -> pd.DataFrame:
    bad = frame[frame[REJECT].notna()]
    return pd.DataFrame(
        {
            "source_table": table.source,
            "source_key": bad[SOURCE_KEY],
            "reason": bad[REJECT],
            "payload": bad[PAYLOAD],
            "run_id": run_id,
            "source_rowid": bad.get(SOURCE_ROWID),
        }
    )


@dg.multi_asset(
    specs=SPECS,
    ins={"source_snapshot": dg.AssetIn(), "derived_users": dg.AssetIn()}
    | {f"clean_{t.name}": dg.AssetIn() for t in SOURCE_TABLES},
    pool=POOL,
    retry_policy=RETRY,
    description="Stage every table with COPY and merge it into PostgreSQL in one transaction.",
)
def publish(
    context: dg.AssetExecutionContext, target: PostgresTarget, source_snapshot: dict, derived_users, **clean
):
    started = time.monotonic()
    scopes = change_scopes(source_snapshot, derived_users, clean)
    frames = {USERS.name: derived_users} | {
        t.name: loadable(t, clean[f"clean_{t.name}"]) for t in SOURCE_TABLES
    }
    columns = {USERS.name: {"id": "INTEGER", "username": "VARCHAR(255)"}}
    columns |= {t.name: {c.name: c.pg_type for c in t.migrated} for t in SOURCE_TABLES}
    rejects = pd.concat([rejected(t, clean[f"clean_{t.name}"], context.run_id) for t in SOURCE_TABLES])
    stats = source_snapshot["stats"]
    try:
        with target.connect() as conn, conn.cursor() as cur:
            merge.lock(cur, wait_s=target.lock_wait_s)
            cutover.refuse_after_cutover(cur)
            if scopes is not None:
                check_baseline(cur, source_snapshot["baseline"])
            cur.execute("SELECT clock_timestamp() AT TIME ZONE 'UTC'")
            locked_at = cur.fetchone()[0]
            if scopes is not None and nothing_to_merge(scopes, source_snapshot):
                context.log.info("no source row changed since the last published run: nothing to merge")
                changes = {t.name: {"inserted": 0, "updated": 0, "deleted": 0} for t in TARGET_TABLES}
            else:
                changes = merge.publish(
                    cur, frames, columns, list(SOURCE_TABLES), rejects, context.log.info, scopes
                )
            for table in SOURCE_TABLES:
                changes[table.name]["rejected"] = int((rejects["source_table"] == table.source).sum())
            cur.execute("DELETE FROM migration.source_stats")
            cur.executemany(
                "INSERT INTO migration.source_stats (source_table, source_rows, sums, snapshot, run_id)"
                " VALUES (%s, %s, %s, %s, %s)",
                [
                    (t, s["rows"], json.dumps(s["sums"]), source_snapshot["path"], context.run_id)
                    for t, s in stats.items()
                ],
            )
            cur.execute(
                "INSERT INTO migration.runs (run_id, locked_at, snapshot, changes, spec) VALUES (%s, %s, %s, %s, %s)"
                " ON CONFLICT (run_id) DO UPDATE SET locked_at = EXCLUDED.locked_at, changes = EXCLUDED.changes,"
                " snapshot = EXCLUDED.snapshot, spec = EXCLUDED.spec,"
                " finished_at = clock_timestamp() AT TIME ZONE 'UTC'",
                (
                    context.run_id,
                    locked_at,
                    source_snapshot["path"],
                    json.dumps(changes),
                    delta.spec_fingerprint(),
                ),
            )
            conn.commit()
            counts = table_counts(cur)
    except (MigrationError, merge.ConcurrentRun, cutover.CutoverDone) as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from None
    except psycopg2.Error as exc:
        raise fail(exc, target) from None
    seconds = time.monotonic() - started
    loaded = sum(len(f) for f in frames.values())
    context.log.info(
        f"published {loaded:,} rows in {seconds:.1f} s ({loaded / max(seconds, 1e-9):,.0f} rows/s)"
    )
    common = {
        "target": target.describe(),
        "source_backup": dg.MetadataValue.path(source_snapshot["path"]),
        "load_seconds": round(seconds, 3),
        "rows_per_second": round(loaded / max(seconds, 1e-9)),
    }
    by_source = {t.name: t for t in SOURCE_TABLES}
    for table in TARGET_TABLES:
        lineage = column_lineage(table)
        meta = {
            **common,
            "dagster/row_count": counts[table.name],
            "dagster/column_schema": table_schema(table),
            "dagster/column_lineage": lineage,
            "column_lineage": dg.MetadataValue.md(lineage_markdown(lineage)),
            "changes": dg.MetadataValue.json(
                changes.get(table.name, {"inserted": 0, "updated": 0, "deleted": 0})
            ),
        }
        if table.name in by_source:
            mine = rejects[rejects["source_table"] == table.source]
            meta["rows_rejected"] = len(mine)
            meta["rejected_by_reason"] = dg.MetadataValue.json(reject_reasons(mine["reason"]))
        yield dg.MaterializeResult(asset_key=table.name, metadata=meta)
    preview = rejects[["source_table", "source_key", "reason"]].head(10).to_dict("records")
    yield dg.MaterializeResult(
        asset_key=REJECTED_ROWS,
        metadata={
            **common,
            "dagster/row_count": len(rejects),
            "rejected_by_reason": dg.MetadataValue.json(reject_reasons(rejects["reason"])),
            "rejected_preview": dg.MetadataValue.md(markdown_table(preview)),
        },
    )


def change_scopes(source_snapshot: dict, users: pd.DataFrame, clean: dict[str, pd.DataFrame]) -> dict | None:
    """For a change-only re-sync, what each table's frame redid: target keys and source rowids (else None)."""
    found = {t: clean[f"clean_{t.name}"].attrs.get("delta") for t in SOURCE_TABLES}
    if all(d is None for d in found.values()):
        return None
    this = (source_snapshot["path"], source_snapshot.get("baseline"))
    if any(d is None or (d["snapshot"], d["baseline"]) != this for d in found.values()):
        raise dg.Failure(
            description="publish got cleaned frames of different runs (some change-only, or against another "
            "snapshot); materialize everything from source_snapshot on, in one run.",
            allow_retries=False,
        )
    ids = users.set_index("username")["id"]
    scopes = {}
    for table, d in found.items():
        keys = d["keys"]
        if isinstance(table.key_col.rule, Username):  # the target is keyed by users.id
            keys = [int(ids[k]) for k in keys if k in ids.index]
        frame = clean[f"clean_{table.name}"]
        rowids = set(frame[SOURCE_ROWID].astype("int64")) | set(d["gone_rowids"])
        scopes[table.name] = {"keys": [int(k) for k in keys], "rowids": sorted(int(r) for r in rowids)}
    return scopes


def nothing_to_merge(scopes: dict, source_snapshot: dict) -> bool:
    """A change-only run that redid no row and changed no username: the target already holds it all."""
    users = source_snapshot["changes"][delta.USER_CHANGES]
    return (
        not users["added"]
        and not users["removed"]
        and not any(s["keys"] or s["rowids"] for s in scopes.values())
    )


def check_baseline(cur, baseline: str) -> None:
    """Refuse a change-only publish when another run published since this one compared its snapshot."""
    latest = delta.baseline(cur)
    if latest is None or latest["snapshot"] != baseline:
        raise merge.ConcurrentRun(
            "another run published to the target after this run compared its snapshot with the last "
            "published one; run again"
        )


def table_counts(cur) -> dict[str, int]:
    counts = {}
    for table in TARGET_TABLES:
        cur.execute(sql.SQL("SELECT count(*) FROM {}").format(merge.target(table)))
        counts[table.name] = cur.fetchone()[0]
    return counts
