"""`validate`: PostgreSQL proven against its source, value by value; differences named one by one."""

from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import psycopg2
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent_migration import jobs
from agent_migration.core.cleaning import SOURCE_ROWID, key_facts_of
from agent_migration.core.errors import MigrationError
from agent_migration.core.rules import Boolean, Json, Money, Text, Timestamp, Username
from agent_migration.core.tables import SOURCE_TABLES
from agent_migration.core.values import SURROGATES, show
from agent_migration.metadata import CUTOVER_TAG
from agent_migration.ops.validate import validate_job
from agent_migration.resources import PostgresTarget, SqliteSource
from agent_migration.sample import write_sample
from agent_migration.transform import fastpath
from agent_migration.validation import expected
from agent_migration.validation.run import validate
from agent_migration_tests.conftest import ASSETS, CHECKS, create_database, query, resources, run_migration
from agent_migration_tests.core.test_rules import sqlite_values
from agent_migration_tests.dagster_layer.test_bad_input import _write
from agent_migration_tests.source.test_delta import _edit, _migrate, edits, rows


def check(source: Path, url: str, tmp: Path, **kw):
    return validate(
        SqliteSource(path=str(source), backup_dir=str(tmp / "backups")),
        PostgresTarget(database_url=url),
        **kw,
    )


def run_job(source: Path, url: str, tmp: Path):
    """The `validate` job in process; (result, the run's log messages)."""
    home = tmp / "validate_home"
    home.mkdir(parents=True, exist_ok=True)
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        res = resources(source, url, tmp)
        result = validate_job.execute_in_process(
            resources={"source": res["source"], "target": res["target"]},
            instance=instance,
            raise_on_error=False,
        )
        logs = [e.user_message for e in instance.all_logs(result.run_id)]
    return result, logs


@pytest.fixture
def migrated(tmp_path, pg_url):
    source = tmp_path / "db.sqlite"
    write_sample(source, scale="tiny", seed=7)
    result = run_migration(source, pg_url, tmp_path)
    assert result.success
    return {"source": source, "url": pg_url, "tmp": tmp_path, "result": result}


def test_validate_passes_after_migrate_of_a_messy_source(migrated):
    report = check(migrated["source"], migrated["url"], migrated["tmp"])
    assert report.ok, report.lines()
    counts = {t.name: t for t in report.tables}
    for table in SOURCE_TABLES:
        (source_rows,) = query(
            migrated["url"],
            "SELECT source_rows FROM migration.source_stats WHERE source_table = %s",
            (table.source,),
        )[0]
        assert counts[table.name].compared == counts[table.name].matched == source_rows
    assert counts["users"].matched == query(migrated["url"], "SELECT count(*) FROM users")[0][0]
    # the sample check of the migrate run itself passed on every source table
    sampled = [
        e for e in migrated["result"].get_asset_check_evaluations() if e.check_name == "values_match_source"
    ]
    assert len(sampled) == len(SOURCE_TABLES) and all(e.passed for e in sampled)


def _plant(url: str) -> dict[str, str]:
    """Plant one difference of each kind; returns what each is, with the key validate must name."""
    agent_ids = [r[0] for r in query(url, "SELECT id FROM agents ORDER BY id LIMIT 3")]
    payment = query(url, "SELECT id FROM payments ORDER BY id LIMIT 1")[0][0]
    balance = query(
        url, "SELECT u.username FROM user_balance b JOIN users u ON u.id = b.user_id ORDER BY 1 LIMIT 1"
    )[0][0]
    message = query(url, "SELECT id FROM chat_messages ORDER BY id LIMIT 1")[0][0]
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("UPDATE agents SET name = name || ' (renamed)' WHERE id = %s", (agent_ids[0],))
        cur.execute(
            """UPDATE agents SET traits = traits || '{"planted": 1}' WHERE id = %s""", (agent_ids[1],)
        )
        cur.execute(
            "UPDATE agents SET created_at = created_at + interval '1 hour' WHERE id = %s", (agent_ids[2],)
        )
        cur.execute("UPDATE payments SET amount = amount + 0.01 WHERE id = %s", (payment,))
        cur.execute(
            "UPDATE user_balance SET coins = coins + 1 WHERE user_id = (SELECT id FROM users WHERE username = %s)",
            (balance,),
        )
        cur.execute("DELETE FROM chat_messages WHERE id = %s", (message,))
        cur.execute(
            "INSERT INTO chat_messages (id, agent_id, message, role) VALUES (987654, %s, 'planted', 'user')",
            (agent_ids[0],),
        )
    return {
        "name": f"agents id={agent_ids[0]} name:",
        "traits": f"agents id={agent_ids[1]} traits:",
        "created_at": f"agents id={agent_ids[2]} created_at:",
        "amount": f"payments id={payment} amount:",
        "coins": f"user_balance user_id='{balance}' coins:",
        "deleted": f"chat_messages id={message}: missing in PostgreSQL",
        "inserted": "chat_messages id=987654: extra in PostgreSQL",
    }


def test_planted_differences_fail_the_job_and_each_is_named(migrated):
    planted = _plant(migrated["url"])
    report = check(migrated["source"], migrated["url"], migrated["tmp"])
    assert not report.ok
    lines = report.lines()
    for what, start in planted.items():
        assert any(line.startswith(start) for line in lines), (what, lines)
    assert len(lines) == len(planted), lines
    moved = next(line for line in lines if line.startswith(planted["created_at"]))
    source_us, target_us = (int(v.strip()) for v in moved.split("source ")[1].split(", target "))
    assert target_us - source_us == 3600 * 10**6
    cent = next(line for line in lines if line.startswith(planted["amount"]))
    source_c, target_c = (int(v.strip()) for v in cent.split("source ")[1].split(", target "))
    assert target_c - source_c == 1
    by_table = {t.name: t for t in report.tables}
    assert (
        by_table["agents"].differing,
        by_table["payments"].differing,
        by_table["user_balance"].differing,
    ) == (3, 1, 1)
    assert (by_table["chat_messages"].missing, by_table["chat_messages"].extra) == (1, 1)

    result, logs = run_job(migrated["source"], migrated["url"], migrated["tmp"])
    assert not result.success  # `dagster job execute` exits non-zero
    for start in planted.values():
        assert sum(m.startswith(start) for m in logs) == 1, start
    assert any("rows compared" in m and "differing" in m for m in logs), "the summary table"
    evaluations = {
        e.event_specific_data.check_name: e.event_specific_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    }
    assert not evaluations["agents_matches_source"].passed
    assert evaluations["payments_matches_source"].metadata["differing"].value == 1
    assert evaluations["users_matches_source"].passed
    assert query(migrated["url"], "SELECT count(*) FROM chat_messages WHERE id = 987654") == [(1,)], (
        "nothing written"
    )


def _plant_beyond_loaded_rows(url: str) -> dict[str, str]:
    """One difference of each kind outside the loaded rows; what each is, with the line validate must give."""
    rejects = query(
        url,
        "SELECT source_table, source_key, source_rowid FROM migration.rejected_rows "
        "WHERE source_rowid IS NOT NULL AND source_key IS NOT NULL ORDER BY source_table, source_rowid LIMIT 3",
    )
    assert len(rejects) == 3, "the messy sample has rejects"
    (agent,) = query(url, "SELECT min(id) FROM agents WHERE rare_trait IS NULL")[0]
    (listing, price) = query(
        url, "SELECT id, price FROM marketplace_listings WHERE status = 'active' ORDER BY id LIMIT 1"
    )[0]
    (a, b) = query(url, "SELECT min(id), max(id) FROM agents")[0]
    name = {t.source: t.name for t in SOURCE_TABLES}
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        where = "source_table = %s AND source_rowid = %s"
        cur.execute(
            f"UPDATE migration.rejected_rows SET payload = (payload::jsonb || '{{\"planted\": 1}}')::json WHERE {where}",
            (rejects[0][0], rejects[0][2]),
        )
        cur.execute(f"UPDATE migration.rejected_rows SET reason = 'planted reason' WHERE {where}", rejects[1][::2])
        cur.execute(f"DELETE FROM migration.rejected_rows WHERE {where}", rejects[2][::2])
        cur.execute(
            "INSERT INTO migration.rejected_rows (source_table, source_key, reason, payload, source_rowid) "
            "VALUES ('payments', 'planted', 'planted', '{}', 987654321), ('nowhere', 'k', 'planted', '{}', 1)"
        )
        cur.execute("INSERT INTO users (username) VALUES ('planted_user')")
        cur.execute("UPDATE marketplace_listings SET price = price + 1 WHERE id = %s", (listing,))
        cur.execute("INSERT INTO battles (id, agent_a_id, agent_b_id) VALUES (424242, %s, %s)", (a, b))
        cur.execute("UPDATE agents SET rare_trait = 'null'::jsonb WHERE id = %s", (agent,))
    return {
        "payload": f"{name[rejects[0][0]]} rejected source_key={show(rejects[0][1])} payload:",
        "reason": f"{name[rejects[1][0]]} rejected source_key={show(rejects[1][1])} reason: source ",
        "missing reject": f"{name[rejects[2][0]]} rejected source_key={show(rejects[2][1])}: missing in PostgreSQL",
        "extra reject": "payments rejected source_key='planted' (rowid 987654321): extra in PostgreSQL",
        "reject of no source table": "rejected_rows source_table='nowhere' source_key='k' (rowid 1): extra",
        "extra user": "users username='planted_user': extra in PostgreSQL",
        "listing price": f"marketplace_listings id={listing} price: source {price}, target {price + 1}",
        "extra battle": "battles id=424242: extra in PostgreSQL",
        "JSON null": f"agents id={agent} rare_trait: source None, target JSON null",
    }


def test_every_table_is_proven_and_each_planted_difference_named_on_its_line(migrated):
    """Rejects (payload, reason, missing, extra, of no source table), users, listings (from the agents, not
    with the check's SQL), battles and JSON null apart from SQL NULL: each planted difference on its line."""
    planted = _plant_beyond_loaded_rows(migrated["url"])
    report = check(migrated["source"], migrated["url"], migrated["tmp"])
    lines = report.lines()
    for what, start in planted.items():
        assert sum(line.startswith(start) for line in lines) == 1, (what, lines)
    assert len(lines) == len(planted), lines
    failing = set(report.failing)
    assert {"users", "marketplace_listings", "battles", "rejected_rows"} <= failing


def test_a_removed_user_and_a_listing_of_an_agent_not_for_sale_are_named(migrated):
    url = migrated["url"]
    (seller,) = query(url, "SELECT min(seller_id) FROM marketplace_listings")[0]
    (user,) = query(
        url,
        "SELECT u.username FROM users u WHERE u.id NOT IN (SELECT owner_id FROM agents WHERE owner_id IS NOT NULL) "
        "AND u.id NOT IN (SELECT user_id FROM user_balance) AND u.id NOT IN (SELECT user_id FROM payments "
        "WHERE user_id IS NOT NULL) ORDER BY 1 LIMIT 1",
    )[0]
    (agent,) = query(url, "SELECT min(id) FROM agents WHERE NOT for_sale OR price IS NULL")[0]
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("DELETE FROM users WHERE username = %s", (user,))
        cur.execute(
            "INSERT INTO marketplace_listings (id, agent_id, seller_id, price, status) VALUES (777777, %s, %s, 5, 'active')",
            (agent, seller),
        )
    lines = check(migrated["source"], url, migrated["tmp"]).lines()
    assert f"users username={show(user)}: missing in PostgreSQL (the source references it)" in lines
    assert any(line.startswith("marketplace_listings id=777777: extra in PostgreSQL") for line in lines), lines


def test_the_validate_job_passes_records_its_report_and_writes_nothing(migrated):
    before = query(migrated["url"], "SELECT count(*), max(finished_at) FROM migration.runs")
    result, logs = run_job(migrated["source"], migrated["url"], migrated["tmp"])
    assert result.success
    (materialization,) = result.asset_materializations_for_node("validate_target")
    assert materialization.asset_key == dg.AssetKey("validation_report")
    assert materialization.metadata["passed"].value is True
    evaluations = result.get_asset_check_evaluations()
    assert len(evaluations) == len(SOURCE_TABLES) + 4 and all(e.passed for e in evaluations)
    assert any("every row matches" in m for m in logs)
    assert query(migrated["url"], "SELECT count(*), max(finished_at) FROM migration.runs") == before


def test_a_broken_fast_path_loads_a_wrong_value_and_validate_catches_it(tmp_path, pg_url, monkeypatch):
    def inverted(column: pa.Array) -> fastpath.FastColumn:  # a wrong cast: 1 read as false, 0 as true
        known = pc.fill_null(pc.is_in(column, pa.array([0, 1])), False).to_numpy(zero_copy_only=False)
        return fastpath.FastColumn(
            pc.equal(column, 0), ~known & ~pc.is_null(column).to_numpy(zero_copy_only=False)
        )

    monkeypatch.setattr(fastpath, "booleans", inverted)
    source = tmp_path / "db.sqlite"
    write_sample(source, scale="tiny", seed=3)
    result = run_migration(source, pg_url, tmp_path)
    assert result.success, "the load path's own checks do not see it"
    sampled = {
        e.asset_key.to_user_string(): e
        for e in result.get_asset_check_evaluations()
        if e.check_name == "values_match_source"
    }
    assert not sampled["agents"].passed, "the sample check of the migrate run catches it"
    report = check(source, pg_url, tmp_path)
    agents = next(t for t in report.tables if t.name == "agents")
    assert agents.differing > 0 and all(d.column == "for_sale" for d in agents.differences)


def test_a_missing_baseline_snapshot_fails_naming_it(migrated):
    (snapshot,) = query(migrated["url"], "SELECT snapshot FROM migration.runs")[0]
    Path(snapshot).unlink()
    with pytest.raises(MigrationError, match="run migrate first") as err:
        check(migrated["source"], migrated["url"], migrated["tmp"])
    assert snapshot in str(err.value)
    result, _ = run_job(migrated["source"], migrated["url"], migrated["tmp"])
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert snapshot in failure.event_specific_data.error.message


def test_after_a_cutover_it_says_first_that_the_app_writes_to_postgresql(migrated):
    with psycopg2.connect(migrated["url"]) as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO migration.cutover (run_id, row_counts) VALUES ('r1', '{}')")
    report = check(migrated["source"], migrated["url"], migrated["tmp"])
    assert report.ok and "the app now writes to PostgreSQL" in report.notes[0]


def test_a_sample_compares_that_many_rows(migrated):
    report = check(migrated["source"], migrated["url"], migrated["tmp"], sample=10)
    assert report.ok and [t.compared for t in report.tables] == [10] * len(SOURCE_TABLES)


@pytest.mark.slow
def test_cutover_is_refused_when_a_row_differs(migrated):
    url, tmp = migrated["url"], migrated["tmp"]
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("UPDATE agents SET xp = xp + 1 WHERE id = (SELECT min(id) FROM agents)")
    defs = dg.Definitions(
        assets=ASSETS,
        asset_checks=CHECKS,
        jobs=[jobs.cutover],
        resources=resources(migrated["source"], url, tmp),
    )
    (tmp / "cut").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp / "cut")) as instance:
        done = defs.resolve_job_def("cutover").execute_in_process(instance=instance, raise_on_error=False)
        assert done.dagster_run.tags[CUTOVER_TAG] == "true"
    assert not done.success
    failure = next(e for e in done.all_events if e.event_type_value == "STEP_FAILURE")
    assert "cutover refused" in failure.event_specific_data.error.message
    assert query(url, "SELECT count(*) FROM migration.cutover") == [(0,)]


@pytest.mark.slow
@settings(max_examples=4, deadline=None, suppress_health_check=list(HealthCheck))
@given(before=st.fixed_dictionaries({t.source: rows(t, 8) for t in SOURCE_TABLES}), changes=edits)
def test_validate_passes_after_migrate_and_resync_of_random_messy_sources(
    before, changes, tmp_path_factory, pg_admin_url
):
    tmp = tmp_path_factory.mktemp("validate")
    path = tmp / "db.sqlite"
    _write(path, before)
    url = create_database(pg_admin_url)
    _migrate(tmp / "first", path, url)
    report = check(path, url, tmp)
    assert report.ok, report.lines()
    _edit(path, changes)
    _migrate(tmp / "second", path, url)
    report = check(path, url, tmp)
    assert report.ok, report.lines()
    assert sum(t.compared for t in report.tables[: len(SOURCE_TABLES)]) == sum(
        query(url, "SELECT coalesce(sum(source_rows), 0) FROM migration.source_stats")[0]
    )
    assert np.all([t.missing == t.extra == 0 for t in report.tables])


def _plain_values(col) -> list:
    """Values a column's rule keeps as they are, and near misses (out of range, blank, bad date, sub-cent)."""
    rule = col.rule
    if isinstance(rule, Username):
        return ["alice", "bob", " ", "", None, "x" * 256]
    if isinstance(rule, Json):
        return ['{"a": 1}', "[1, 2.50]", "", None, '{"a": "\\u0000"}', "{bad"]
    if isinstance(rule, Timestamp):
        return ["2024-01-02 03:04:05", "2024-02-30 10:00:00", "0000-01-01 00:00:00", None]
    if isinstance(rule, Money):
        return [9.99, 0.0, 19.990000000001, 0.001, -1.0, 10**8 * 1.0, 5, None]
    if isinstance(rule, Boolean):
        return [0, 1, 2, None]
    if isinstance(rule, Text):
        return ["user", "assistant", "x" * 256, "a\x00b", "", None]
    return [1, 7, 3, 100, 101, -1, 2**31, None]  # integers (1 and 7 are the loaded parents)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_the_vectorized_plain_rows_agree_with_the_exact_rules(data):
    """Every table, any SQLite values (plain ones, planted often): `expect` with plain rows vectorized
    makes exactly what the exact rules alone make of the same rows."""
    for table in SOURCE_TABLES:
        plain = [st.sampled_from(_plain_values(c)) for c in table.migrated]
        mixed = [st.one_of(st.sampled_from(_plain_values(c)), sqlite_values) for c in table.migrated]
        rows = data.draw(st.lists(st.one_of(st.tuples(*plain), st.tuples(*mixed)), max_size=12))
        assert table.source_columns == [c.source for c in table.migrated]
        raw = pd.DataFrame(
            {
                SOURCE_ROWID: pd.Series(range(1, len(rows) + 1), dtype=object),
                **{
                    c: pd.Series([r[i] for r in rows], dtype=object)
                    for i, c in enumerate(table.source_columns)
                },
            }
        )
        raw.attrs["utf8"] = data.draw(st.booleans()) and not any(
            isinstance(v, str) and SURROGATES.search(v) for r in rows for v in r
        )
        facts = key_facts_of(table, raw)
        parents = {col.name: np.array([1, 7], dtype=np.int64) for col, _ in table.parent_refs}
        fast = expected.expect(table, raw, facts, parents)
        exact = expected.expect(table, raw, facts, parents, vectorized=False)
        key = expected.KEY
        ordered = [
            f.loaded.sort_values(key, key=lambda s: s.map(repr), ignore_index=True) for f in (fast, exact)
        ]
        assert ordered[0].columns.tolist() == ordered[1].columns.tolist()
        for col in ordered[0].columns:
            assert [repr(v) for v in ordered[0][col]] == [repr(v) for v in ordered[1][col]], (table.name, col)
        assert fast.rejected[["rowid", "source_key"]].equals(exact.rejected[["rowid", "source_key"]])
