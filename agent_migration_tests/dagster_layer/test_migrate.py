"""The whole graph, for real: a generated SQLite source with every messy case in, the embedded PostgreSQL out."""

import pickle
import sqlite3
import time
from pathlib import Path

import dagster as dg
import psycopg2
import pytest

from agent_migration.core.artifacts import CleanTable, SourceTable
from agent_migration.core.tables import BY_SOURCE, SOURCE_TABLES, TARGET_TABLES
from agent_migration.core.values import key_text
from agent_migration.sample import write_sample
from agent_migration_tests.conftest import ASSETS, CHECKS, create_database, query, resources, run_migration

APP_TABLES = [t.name for t in TARGET_TABLES]


@pytest.fixture(scope="module")
def migrated(tmp_path_factory, pg_admin_url):
    """One messy sample migrated once; the module's tests read the result."""
    tmp = tmp_path_factory.mktemp("pipeline")
    source = tmp / "db.sqlite"
    cases = write_sample(source, scale="tiny", seed=7)
    url = create_database(pg_admin_url)
    result = run_migration(source, url, tmp, raise_on_error=False)
    return {"source": source, "url": url, "cases": cases, "result": result, "tmp": tmp}


def sqlite_rows(path, sql):
    conn = sqlite3.connect(path)
    conn.text_factory = bytes
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def dump(url) -> dict[str, list]:
    """Every app table's content, by natural keys (usernames instead of surrogate user ids)."""
    out = {}
    for table in TARGET_TABLES:
        cols = [c.name for c in table.columns if c.name not in ("created_at", "updated_at") or table.source]
        out[table.name] = query(url, f"SELECT {', '.join(cols)} FROM {table.name} ORDER BY 1")
    out["rejected_rows"] = query(
        url,
        "SELECT source_table, source_key, reason, payload::text FROM migration.rejected_rows ORDER BY 1, 2, 3",
    )
    return out


def test_run_succeeds_and_only_reject_warnings_fail(migrated):
    result = migrated["result"]
    assert result.success
    evaluations = result.get_asset_check_evaluations()
    assert len(evaluations) >= 25
    failed = {(e.asset_key.to_user_string(), e.check_name) for e in evaluations if not e.passed}
    assert failed == {(t.name, "rejected_rows") for t in SOURCE_TABLES}
    for e in evaluations:
        if not e.passed:
            assert e.severity.value == "WARN"
            assert e.metadata["rows_rejected"].value > 0


def test_source_rows_equal_loaded_plus_rejected(migrated):
    for table in SOURCE_TABLES:
        (source,) = sqlite_rows(migrated["source"], f"SELECT count(*) FROM {table.source}")[0]
        (loaded,) = query(migrated["url"], f"SELECT count(*) FROM {table.name}")[0]
        (rejected,) = query(
            migrated["url"],
            "SELECT count(*) FROM migration.rejected_rows WHERE source_table = %s",
            (table.source,),
        )[0]
        assert source == loaded + rejected, table.name
        assert rejected > 0, table.name


def target_value(url, case):
    table = BY_SOURCE[case.table]
    col = next(c for c in table.columns if c.source == case.column)
    if case.table == "user_balance":
        where, key = "u.username = %s", case.key
        rows = query(
            url,
            f"SELECT b.{col.name}, u.username FROM user_balance b JOIN users u ON u.id = b.user_id WHERE {where}",
            (key,),
        )
        assert rows, case
        return rows[0][1] if col.name == "user_id" else rows[0][0]
    if col.references == "users(id)":
        rows = query(
            url,
            f"SELECT u.username FROM {table.name} t LEFT JOIN users u ON u.id = t.{col.name} WHERE t.id = %s",
            (case.key,),
        )
    else:
        rows = query(url, f"SELECT {col.name} FROM {table.name} WHERE id = %s", (case.key,))
    assert rows, f"{case} was not loaded"
    return rows[0][0]


def test_every_messy_case_ends_as_catalogued(migrated):
    url = migrated["url"]
    rejects = query(url, "SELECT source_table, source_key, reason, payload FROM migration.rejected_rows")
    assert migrated["cases"], "the sample must plant messy cases"
    for case in migrated["cases"]:
        if case.outcome == "load":
            value = target_value(url, case)
            assert value == case.expected and type(value) is type(case.expected), (case, value)
        else:
            label = f"{case.table}.{case.column}"
            mine = [r for r in rejects if r[0] == case.table and label in r[2]]
            if case.key is not None:
                mine = [r for r in mine if r[1] == key_text(case.key)]
            assert mine, f"{case} not rejected (naming {label})"
            table = BY_SOURCE[case.table]
            assert set(mine[0][3]) == set(table.source_columns), "payload holds the whole source row"


def test_source_ids_are_kept_and_sequences_are_ahead(migrated):
    url = migrated["url"]
    for table in SOURCE_TABLES:
        if table.key != "id":
            continue
        source_ids = {r[0] for r in sqlite_rows(migrated["source"], f"SELECT id FROM {table.source}")}
        loaded = {r[0] for r in query(url, f"SELECT id FROM {table.name}")}
        rejected = {
            int(r[0])
            for r in query(
                url, "SELECT source_key FROM migration.rejected_rows WHERE source_table = %s", (table.source,)
            )
        }
        assert loaded | rejected == source_ids and not loaded & rejected
        (nxt,) = query(url, f"SELECT nextval(pg_get_serial_sequence('{table.name}', 'id'))")[0]
        assert nxt > max(loaded)


def test_chat_messages_point_at_the_same_agents_as_in_sqlite(migrated):
    source = dict(sqlite_rows(migrated["source"], "SELECT id, agent_id FROM chat_messages"))
    loaded = query(migrated["url"], "SELECT id, agent_id FROM chat_messages")
    assert loaded
    assert all(source[i] == agent for i, agent in loaded)


def _text(value):
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return None
    return None if value is None else str(value)


def test_users_are_every_username_referenced_anywhere(migrated):
    refs = sqlite_rows(
        migrated["source"],
        "SELECT owner FROM agents UNION ALL SELECT user_id FROM user_balance "
        "UNION ALL SELECT user_id FROM payments UNION ALL SELECT user_id FROM chat_messages",
    )
    expected = set()
    for (raw,) in refs:
        name = _text(raw)
        if name and name.strip() and "\x00" not in name and len(name) <= 255:
            expected.add(name)
    users = {u for (u,) in query(migrated["url"], "SELECT username FROM users")}
    assert users == expected
    only_in_chat = expected - {
        _text(r[0]) for r in sqlite_rows(migrated["source"], "SELECT owner FROM agents")
    }
    assert only_in_chat, "users that own no agent are migrated too"


def test_listings_are_one_active_per_agent_for_sale(migrated):
    url = migrated["url"]
    for_sale = set(query(url, "SELECT id, owner_id, price FROM agents WHERE for_sale AND price IS NOT NULL"))
    listed = set(
        query(url, "SELECT agent_id, seller_id, price FROM marketplace_listings WHERE status = 'active'")
    )
    assert for_sale and listed == for_sale
    assert query(url, "SELECT count(*) FROM battles") == [(0,)]


def test_a_second_run_leaves_the_target_identical_and_writes_nothing(migrated):
    url = migrated["url"]
    before = dump(url)
    stats = "SELECT relname, n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_user_tables WHERE schemaname = 'public' ORDER BY 1"
    writes_before = query(url, stats)
    (agents,) = query(url, "SELECT count(*) FROM agents")[0]
    assert ("agents", agents, 0, 0) in writes_before, "the first run's inserts are counted"
    result = run_migration(migrated["source"], url, migrated["tmp"] / "again")
    assert result.success
    assert dump(url) == before
    time.sleep(1.5)  # the writer's statistics are flushed when its backend ends
    assert query(url, stats) == writes_before


def tamper(url: str, *statements: str) -> None:
    """Change the target behind the migration's back (committed)."""
    conn = psycopg2.connect(url)
    with conn, conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement)
    conn.close()


def test_lost_rows_fail_the_verification(tmp_path, pg_url):
    source = tmp_path / "db.sqlite"
    write_sample(source, scale="tiny", seed=11)
    assert run_migration(source, pg_url, tmp_path).success
    tamper(
        pg_url,
        "DELETE FROM chat_messages WHERE id = (SELECT min(id) FROM chat_messages)",
        "UPDATE agents SET for_sale = FALSE WHERE id = (SELECT min(agent_id) FROM marketplace_listings)",
    )
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        result = dg.materialize(
            [*ASSETS, *CHECKS],
            selection=["migration_report"],
            resources=resources(source, pg_url, tmp_path / "verify"),
            instance=instance,
            raise_on_error=False,
        )
    assert not result.success
    failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert any(
        "rows lost or duplicated in chat_messages" in str(e.event_specific_data.error.message)
        for e in failures
    )
    checked = run_checks(source, pg_url, tmp_path / "checks")
    assert not checked.success
    accounting = [e for e in checked.get_asset_check_evaluations() if e.check_name == "row_accounting"]
    bad = [e for e in accounting if not e.passed]
    assert [e.asset_key.to_user_string() for e in bad] == ["chat_messages"]
    assert bad[0].metadata["difference"].value == 1
    listings = [e for e in checked.get_asset_check_evaluations() if e.check_name == "listings_follow_agents"][
        0
    ]
    assert not listings.passed and listings.metadata["active_but_not_for_sale"].value == 1


def test_timestamps_do_not_depend_on_the_machine_or_server_time_zone(tmp_path, pg_url, monkeypatch):
    source = tmp_path / "db.sqlite"
    cases = [
        c
        for c in write_sample(source, scale="tiny", seed=2)
        if c.column == "created_at" and c.outcome == "load"
    ]
    (name,) = query(pg_url, "SELECT current_database()")[0]
    conn = psycopg2.connect(pg_url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f"ALTER DATABASE {name} SET timezone TO 'Pacific/Kiritimati'")
    conn.close()
    monkeypatch.setenv("TZ", "America/St_Johns")
    time.tzset()
    try:
        assert run_migration(source, pg_url, tmp_path).success
    finally:
        monkeypatch.undo()
        time.tzset()
    assert any(c.expected is not None for c in cases)
    for case in cases:
        assert target_value(pg_url, case) == case.expected, case


def _metadata(result, key: str) -> dict:
    events = [e for e in result.get_asset_materialization_events() if e.asset_key == dg.AssetKey(key)]
    assert events, key
    return {k: v.value if hasattr(v, "value") else v for k, v in events[-1].materialization.metadata.items()}


def test_materializations_carry_what_a_migrator_needs(migrated):
    result, url = migrated["result"], migrated["url"]
    agents = _metadata(result, "agents")
    (count,) = query(url, "SELECT count(*) FROM agents")[0]
    assert agents["dagster/row_count"] == count
    assert [c.name for c in agents["dagster/column_schema"].columns][:3] == ["id", "name", "owner_id"]
    lineage = agents["dagster/column_lineage"].deps_by_column
    assert {(d.asset_key.to_user_string(), d.column_name) for d in lineage["owner_id"]} == {
        ("raw_agents", "owner"),
        ("derived_users", "username"),
    }
    owner_line = next(
        line for line in agents["column_lineage"].splitlines() if line.startswith("| owner_id |")
    )
    assert "raw_agents.owner" in owner_line and "derived_users.username" in owner_line
    assert agents["load_seconds"] > 0 and agents["rows_per_second"] > 0
    assert agents["rows_rejected"] > 0 and len(agents["rejected_by_reason"]) == 10  # the top 10 reasons
    assert any(reason.startswith("agents.energy: breaks CHECK") for reason in agents["rejected_by_reason"])
    assert agents["changes"]["inserted"] == count
    assert "@" not in agents["target"]  # host:port/database, no credentials
    assert agents["target"].endswith(f"/{url.split('?')[0].rsplit('/', 1)[1]}")
    assert Path(agents["source_backup"]).exists()

    clean = _metadata(result, "clean_chat_messages")
    assert clean["rows_rejected"] > 0 and "| source_key | reason |" in clean["rejected_preview"]
    assert any("names agent N, which is missing or rejected" in k for k in clean["rejected_by_reason"])
    snapshot = _metadata(result, "source_snapshot")
    assert Path(snapshot["backup_path"]).exists() and snapshot["rows_by_table"]["agents"] > 0
    report = _metadata(result, "migration_report")
    assert "| chat_messages |" in report["accounting"] and "| agents |" in report["changes_this_run"]

    checks = {(e.asset_key.to_user_string(), e.check_name): e for e in result.get_asset_check_evaluations()}
    warn = checks[("payments", "rejected_rows")].metadata
    assert warn["rows_rejected"].value > 0 and warn["table"].value == "payments"
    assert any("payments.amount" in k for k in warn["rejected_by_reason"].value)
    assert "source_key" in warn["rejected_sample"].value


def test_one_asset_can_be_rematerialized_alone_from_the_kept_values(migrated):
    """A later run of one asset reads its inputs from disk: small typed values pointing at the run's
    snapshot and Arrow files, never the rows themselves."""
    tmp = migrated["tmp"]
    storage = tmp / "storage"
    raw = pickle.loads((storage / "raw_chat_messages").read_bytes())
    clean = pickle.loads((storage / "clean_chat_messages").read_bytes())
    assert isinstance(raw, SourceTable) and isinstance(clean, CleanTable)
    assert Path(raw.snapshot).is_file() and Path(clean.loaded_path).is_file()
    assert clean.rows == raw.rows == clean.loaded + clean.rejected
    assert (storage / "raw_chat_messages").stat().st_size < 4096  # a plan of chunks, not the rows
    with dg.instance_for_test(temp_dir=str(tmp / "dagster_home")) as instance:
        again = dg.materialize(
            [*ASSETS, *CHECKS],
            selection=["clean_agents"],
            resources=resources(migrated["source"], migrated["url"], tmp),
            instance=instance,
        )
    assert again.success
    first = _metadata(migrated["result"], "clean_agents")
    second = _metadata(again, "clean_agents")
    assert (second["dagster/row_count"], second["rows_rejected"]) == (
        first["dagster/row_count"],
        first["rows_rejected"],
    )


def run_checks(source, url, tmp: Path):
    """Every asset check alone, against the target as it is."""
    tmp.mkdir(parents=True, exist_ok=True)
    with dg.instance_for_test(temp_dir=str(tmp)) as instance:
        return dg.materialize(
            [*ASSETS, *CHECKS],
            selection=dg.AssetSelection.all_asset_checks(),
            resources=resources(source, url, tmp / "checks"),
            instance=instance,
            raise_on_error=False,
        )


def _fk_checks(source, url, tmp: Path):
    result = run_checks(source, url, tmp)
    return {
        e.asset_key.to_user_string(): e
        for e in result.get_asset_check_evaluations()
        if e.check_name == "foreign_keys"
    }


def test_foreign_keys_are_proven_by_enforced_constraints_and_scanned_when_not(tmp_path, pg_url):
    source = tmp_path / "db.sqlite"
    write_sample(source, scale="tiny", seed=12)
    assert run_migration(source, pg_url, tmp_path).success
    chat = _fk_checks(source, pg_url, tmp_path / "a")["chat_messages"]
    assert chat.passed
    assert chat.metadata["orphans"].value["agent_id"]["enforced_by"] == "chat_messages_agent_id_fkey"
    # With its triggers disabled PostgreSQL no longer enforces the key: the check scans and finds the orphan.
    tamper(
        pg_url,
        "ALTER TABLE chat_messages DISABLE TRIGGER ALL",
        "INSERT INTO chat_messages (id, agent_id, message, role) VALUES (999999, 888888, 'orphan', 'user')",
    )
    chat = _fk_checks(source, pg_url, tmp_path / "b")["chat_messages"]
    assert not chat.passed
    assert chat.metadata["orphans"].value["agent_id"] == {"sample_keys": [999999], "enforced_by": None}
