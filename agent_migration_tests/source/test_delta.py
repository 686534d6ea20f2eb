"""Change-only re-syncs: redoing only what changed since the last published snapshot ends exactly as a full run."""

import sqlite3
import time
from pathlib import Path

import psycopg2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent_migration.core import contract
from agent_migration.core.rules import Integer, Username
from agent_migration.core.tables import SOURCE_TABLES, Table
from agent_migration.resources import PostgresTarget, SqliteSource
from agent_migration.sample import write_sample
from agent_migration_tests.conftest import create_database, query
from agent_migration_tests.core.test_rules import sqlite_values
from agent_migration_tests.dagster_layer.test_bad_input import _bind, _write, failures, run
from agent_migration_tests.dagster_layer.test_resync import WRITES, content

pytestmark = pytest.mark.slow  # every test here runs the job three times or more

# Keys and references drawn from a few values, some stored unlike the rule keeps them ('3', 2.0, NULL),
# so duplicates, rows naming each other across types, and agents coming and going are common.
ids = st.one_of(st.integers(1, 6), st.sampled_from(["3", "4", 2.0, None, "x", 2**40]))
names = st.sampled_from(["alice", "bob", "carol", "", " ", None, 7, "bob "])


def column_values(table: Table, source_column: str):
    col = next(c for c in table.migrated if c.source == source_column)
    if isinstance(col.rule, Username):
        return names
    if isinstance(col.rule, Integer) and (col.name == table.key or col.references):
        return ids
    return st.one_of(sqlite_values, st.sampled_from([1, "user", "2024-01-02 03:04:05", '{"a": 1}', 9.99]))


def row(table: Table):
    return st.tuples(*[column_values(table, c) for c in table.source_columns])


def rows(table: Table, max_size: int):
    return st.lists(row(table), max_size=max_size)


edits = st.fixed_dictionaries(
    {
        t.source: st.fixed_dictionaries(
            {
                "delete": st.lists(st.integers(1, 8), max_size=3),
                "update": st.lists(st.tuples(st.integers(1, 8), row(t)), max_size=3),
                "insert": rows(t, 3),
            }
        )
        for t in SOURCE_TABLES
    }
)


def _edit(path: Path, changes: dict) -> None:
    conn = sqlite3.connect(path)
    for table in SOURCE_TABLES:
        cols = ", ".join(f'"{c}"' for c in table.source_columns)
        marks = ", ".join("?" for _ in table.source_columns)
        todo = changes[table.source]
        for rowid in todo["delete"]:
            conn.execute(f"DELETE FROM {table.source} WHERE rowid = ?", (rowid,))
        for rowid, values in todo["update"]:
            conn.execute(
                f"UPDATE {table.source} SET ({cols}) = ({marks}) WHERE rowid = ?",
                [*map(_bind, values), rowid],
            )
        for values in todo["insert"]:
            conn.execute(f"INSERT INTO {table.source} ({cols}) VALUES ({marks})", [_bind(v) for v in values])
    conn.commit()
    conn.close()


def _migrate(tmp: Path, path: Path, url: str, **kw):
    source = SqliteSource(path=str(path), backup_dir=str(tmp / "backups"))
    # Random edits may reject a whole table: no reject budget here (it is tested in test_preflight.py).
    result, _ = run(tmp, source, PostgresTarget(database_url=url, max_reject_share=1), **kw)
    assert result.success, failures(result)
    return result


def mode(result) -> str:
    return result.asset_materializations_for_node("source_snapshot")[0].metadata["mode"].value


@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
@given(before=st.fixed_dictionaries({t.source: rows(t, 8) for t in SOURCE_TABLES}), changes=edits)
def test_a_change_only_resync_ends_exactly_as_a_full_run(before, changes, tmp_path_factory, pg_admin_url):
    tmp = tmp_path_factory.mktemp("delta")
    path = tmp / "db.sqlite"
    _write(path, before)
    url = create_database(pg_admin_url)
    assert mode(_migrate(tmp / "first", path, url)) == "full"
    _edit(path, changes)
    # The baseline is the first run's snapshot, in its own backup folder: still kept.
    assert mode(_migrate(tmp / "second", path, url)) == "change-only re-sync"
    fresh = create_database(pg_admin_url)
    _migrate(tmp / "fresh", path, fresh)
    assert content(url) == content(fresh)
    # Every source row is accounted for once: loaded, or rejected under its own rowid.
    for table in SOURCE_TABLES:
        rowids = query(
            url, "SELECT source_rowid FROM migration.rejected_rows WHERE source_table = %s", (table.source,)
        )
        assert len(rowids) == len(set(rowids))


def _redo(result) -> dict:
    return result.asset_materializations_for_node("source_snapshot")[0].metadata["changes_by_table"].value


def test_nothing_changed_means_nothing_redone_and_nothing_written(tmp_path, pg_admin_url):
    path = tmp_path / "db.sqlite"
    write_sample(path, scale="tiny")
    url = create_database(pg_admin_url)
    first = _migrate(tmp_path / "first", path, url)
    writes = query(url, WRITES)[0][0]
    # The same bytes (header counters aside): no copy, nothing to compare, nothing redone.
    result = _migrate(tmp_path / "second", path, url)
    assert mode(result) == "change-only re-sync"
    backup = [
        r.asset_materializations_for_node("source_snapshot")[0].metadata["backup_path"].value
        for r in (first, result)
    ]
    assert backup[0] == backup[1]
    assert _redo(result) == {t.source: {"changed": 0, "deleted": 0, "redo": 0} for t in SOURCE_TABLES} | {
        "users": {"added": 0, "removed": 0}
    }
    assert (
        result.asset_materializations_for_node("raw_chat_messages")[0].metadata["dagster/row_count"].value
        == 0
    )
    # The same rows in other bytes (VACUUM rewrites every page): compared row by row, and only rows whose
    # key or agent is not stored as the rule keeps it (the planted messy ones) are redone.
    conn = sqlite3.connect(path)
    conn.execute("VACUUM")
    conn.close()
    result = _migrate(tmp_path / "third", path, url)
    redo = _redo(result)
    conn = sqlite3.connect(path)
    for table in SOURCE_TABLES:
        where = [f"typeof(\"{table.key_col.source}\") <> '{table.key_col.rule.keeps}'"]
        where += [f"typeof(\"{c.source}\") NOT IN ('{c.rule.keeps}', 'null')" for c, _ in table.parent_refs]
        (messy,) = conn.execute(f"SELECT count(*) FROM {table.source} WHERE {' OR '.join(where)}").fetchone()
        assert redo[table.source] == {"changed": 0, "deleted": 0, "redo": messy}, table.source
    assert sum(r["redo"] for r in redo.values() if "redo" in r) > 0
    conn.close()
    time.sleep(1.5)  # statistics are flushed when a backend ends
    assert query(url, WRITES)[0][0] == writes


def test_a_full_run_when_the_baseline_is_gone_or_asked_for(tmp_path, pg_admin_url):
    path = tmp_path / "db.sqlite"
    write_sample(path, scale="tiny")
    url = create_database(pg_admin_url)
    first = _migrate(tmp_path / "first", path, url)
    snapshot = first.asset_materializations_for_node("source_snapshot")[0].metadata["backup_path"].value
    config = {"ops": {"source_snapshot": {"config": {"full_refresh": True}}}}
    assert mode(_migrate(tmp_path / "asked", path, url, run_config=config)) == "full"
    # The baseline is now the last run's snapshot; remove it and the next run redoes everything.
    latest = query(url, "SELECT snapshot FROM migration.runs ORDER BY finished_at DESC LIMIT 1")[0][0]
    assert latest != snapshot
    Path(latest).unlink()
    assert mode(_migrate(tmp_path / "gone", path, url)) == "full"
    # A baseline published under other table specs is not trusted.
    with psycopg2.connect(url) as conn, conn.cursor() as cur:  # commits on leaving
        cur.execute("UPDATE migration.runs SET spec = 'older'")
    assert mode(_migrate(tmp_path / "specs", path, url)) == "full"
    assert query(url, "SELECT DISTINCT spec FROM migration.runs WHERE spec <> 'older'") == [
        (contract.spec_fingerprint(),)
    ]


def test_a_target_changed_behind_the_migrations_back_is_reported_and_a_full_run_repairs_it(
    tmp_path, pg_admin_url
):
    path = tmp_path / "db.sqlite"
    write_sample(path, scale="tiny")
    url = create_database(pg_admin_url)
    _migrate(tmp_path / "first", path, url)
    with psycopg2.connect(url) as conn, conn.cursor() as cur:  # commits on leaving
        cur.execute("DELETE FROM chat_messages WHERE id = (SELECT min(id) FROM chat_messages)")
    source = SqliteSource(path=str(path), backup_dir=str(tmp_path / "second" / "backups"))
    result, _ = run(tmp_path / "second", source, PostgresTarget(database_url=url))
    assert mode(result) == "change-only re-sync"  # it trusts the target: the checks do not
    message = failures(result)["migration_checks"]
    assert "rows lost or duplicated in: chat_messages" in message and "full_refresh: true" in message
    config = {"ops": {"source_snapshot": {"config": {"full_refresh": True}}}}
    _migrate(tmp_path / "third", path, url, run_config=config)
    fresh = create_database(pg_admin_url)
    _migrate(tmp_path / "fresh", path, fresh)
    assert content(url) == content(fresh)
