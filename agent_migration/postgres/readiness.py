"""Whether the target can take the migration, read only (for preflight): a recorded cutover, app tables of
another shape, and the privileges migrate needs. Every query here reads the catalog; nothing is written."""

from __future__ import annotations

import psycopg2

from agent_migration.core.errors import MigrationError
from agent_migration.core.tables import TARGET_TABLES
from agent_migration.postgres import cutover, ddl, history
from agent_migration.postgres.connection import TargetDatabase

_ROLE = """
SELECT current_user AS user, current_database() AS database, current_setting('server_version') AS version,
       coalesce((SELECT rolsuper FROM pg_roles WHERE rolname = current_user), false) AS superuser,
       to_regnamespace('public') IS NOT NULL AS public,
       coalesce(has_schema_privilege(to_regnamespace('public'), 'CREATE'), false) AS public_create,
       to_regnamespace('migration') IS NOT NULL AS book,
       coalesce(has_schema_privilege(to_regnamespace('migration'), 'CREATE'), false)
         AND coalesce(has_schema_privilege(to_regnamespace('migration'), 'USAGE'), false) AS book_ok,
       has_database_privilege(current_database(), 'CREATE') AS db_create,
       has_database_privilege(current_database(), 'TEMP') AS temp
"""
# Tables the migration alters, rebuilds indexes of, analyzes or advances the sequence of: it must own them.
_NOT_OWNED = """
SELECT n.nspname || '.' || c.relname, pg_get_userbyid(c.relowner)
FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND NOT pg_has_role(c.relowner, 'USAGE')
  AND ((n.nspname = 'public' AND c.relname = ANY(%s)) OR n.nspname = 'migration')
ORDER BY 1
"""


def assess(cur) -> dict:
    """Facts about the target and the `problems` that would make migrate fail there (empty: none)."""
    cur.execute(_ROLE)
    role = dict(zip([d[0] for d in cur.description], cur.fetchone(), strict=True))
    shape = ddl.existing_shape(cur)
    missing = [t.name for t in TARGET_TABLES if t.name not in shape]
    problems = []
    if differences := ddl.shape_differences(shape):
        problems.append(f"the target already holds app tables of another shape: {'; '.join(differences)}")
    cut = cutover.recorded(cur) if role["book"] else None
    if cut is not None:
        problems.append(cutover.refusal(cut))
    if not role["superuser"]:
        problems += _privileges(cur, role, missing)
    found = history.baseline(cur) if role["book"] else None
    return {
        "user": role["user"],
        "server_version": role["version"],
        "app_tables_present": [t.name for t in TARGET_TABLES if t.name in shape],
        "app_tables_to_create": missing,
        "migration_schema": "present" if role["book"] else "to create",
        "next_migrate": f"re-sync after run {found['run_id']}" if found else "first load",
        "cutover_recorded": cut is not None,
        "problems": problems,
    }


def _privileges(cur, role: dict, missing: list[str]) -> list[str]:
    """What the role lacks for what migrate does here, each with the GRANT that fixes it."""
    user, database, found = role["user"], role["database"], []
    if not role["public"]:
        found.append(f"schema public does not exist in database {database}")
    elif missing and not role["public_create"]:
        found.append(
            f"role {user} cannot create the app tables {', '.join(missing)} in schema public "
            f"(GRANT CREATE ON SCHEMA public TO {user})"
        )
    if not role["book"] and not role["db_create"]:
        found.append(
            f"role {user} cannot create the schema migration (GRANT CREATE ON DATABASE {database} TO {user})"
        )
    if role["book"] and not role["book_ok"]:
        found.append(
            f"role {user} lacks USAGE and CREATE on schema migration (GRANT ALL ON SCHEMA migration TO {user})"
        )
    if not role["temp"]:
        found.append(
            f"role {user} cannot create temporary tables, which a re-sync stages its rows in "
            f"(GRANT TEMP ON DATABASE {database} TO {user})"
        )
    cur.execute(_NOT_OWNED, ([t.name for t in TARGET_TABLES],))
    for table, owner in cur.fetchall():
        found.append(
            f"table {table} is owned by {owner}: migrate rebuilds its indexes and keys, analyzes it and advances "
            f"its sequence, so run it as {owner} (or a member of that role)"
        )
    return found


def check_target(target: TargetDatabase) -> None:
    """Fail before anything is read or written when the target is unreachable, holds app tables of
    another shape, or has recorded the cutover (read-only: `target_schema` creates what is missing)."""
    try:
        with target.connect() as conn, conn.cursor() as cur:
            cutover.refuse_after_cutover(cur)
            problems = ddl.shape_differences(ddl.existing_shape(cur))
    except cutover.CutoverDone as exc:
        raise MigrationError(str(exc)) from None
    except psycopg2.Error as exc:
        raise MigrationError(f"PostgreSQL at {target.describe()}: {str(exc).strip()}") from None
    if problems:
        raise MigrationError(
            f"the target {target.describe()} already holds app tables of another shape: {'; '.join(problems)}. "
            "Nothing was changed; migrate into an empty database or fix those tables."
        )
