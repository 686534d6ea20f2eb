"""The code location loads, and every asset carries what the UI needs (description, group, kinds, owner)."""

import dagster as dg
import pytest

from agent_migration import defs
from agent_migration.core.tables import SOURCE_TABLES, TARGET_TABLES


def test_definitions_load():
    dg.Definitions.validate_loadable(defs)


def test_every_asset_is_described_grouped_kinded_and_owned():
    graph = defs.resolve_asset_graph()
    keys = graph.get_all_asset_keys()
    assert {k.to_user_string() for k in keys} >= {
        "source_snapshot",
        "target_schema",
        "derived_users",
        "migration_report",
        "rejected_rows",
        *(f"raw_{t.source}" for t in SOURCE_TABLES),
        *(f"clean_{t.name}" for t in SOURCE_TABLES),
        *(t.name for t in TARGET_TABLES),
    }
    for key in keys:
        spec = graph.get(key)
        assert spec.description, key
        assert spec.group_name in {"extract", "transform", "load", "verify", "preflight", "rollback", "validation"}, key
        assert spec.kinds & {"sqlite", "pandas", "postgres"}, key
        assert spec.owners, key


def test_lineage_runs_from_each_sqlite_table_through_users_to_each_target_table():
    graph = defs.resolve_asset_graph()

    def parents(key: str) -> set[str]:
        return {k.to_user_string() for k in graph.get(dg.AssetKey(key)).parent_keys}

    assert parents("derived_users") >= {f"raw_{t.source}" for t in SOURCE_TABLES}
    for table in SOURCE_TABLES:
        assert {f"clean_{table.name}", "derived_users"} <= parents(table.name)
        assert {f"raw_{table.source}", "derived_users"} <= parents(f"clean_{table.name}")


def test_materialize_all_launches_exactly_the_migrate_job():
    """"Materialize all" launches every materializable asset of the code location: that must be `migrate`,
    and nothing of the side jobs (preflight, rollback), whose results are external assets."""
    job = defs.resolve_job_def("migrate")
    graph = defs.resolve_asset_graph()
    materializable = {k for k in graph.get_all_asset_keys() if graph.get(k).is_materializable}
    assert job.asset_layer.selected_asset_keys == materializable
    side = {k for k in graph.get_all_asset_keys() if graph.get(k).group_name in ("preflight", "rollback", "validation")}
    assert {k.to_user_string() for k in side} >= {"preflight_summary", "rollback_file", "validation_report"}
    assert not side & materializable
    assert all(not graph.get(k).is_materializable for k in side)
    # The checks of every materializable asset run with it; none belongs to a side job's asset.
    assert {k.asset_key for k in graph.asset_check_keys} <= materializable
    for name in ("preflight", "rollback_export", "validate"):
        assert not defs.resolve_job_def(name).asset_layer.selected_asset_keys, name  # op jobs


def test_migrate_job_selects_every_check():
    job = defs.resolve_job_def("migrate")
    checks = {k.name for k in job.asset_layer.asset_graph.asset_check_keys}
    assert {"row_accounting", "foreign_keys", "constraints", "sums_reconcile", "sequence_ahead"} <= checks
    assert "values_match_source" in checks


def test_validate_is_an_op_job_recording_on_an_external_asset():
    job = defs.resolve_job_def("validate")
    assert [n.name for n in job.nodes] == ["validate_target"]
    assert not job.asset_layer.selected_asset_keys, "not an asset job: Materialize all never runs it"
    report = defs.resolve_asset_graph().get(dg.AssetKey("validation_report"))
    assert not report.is_executable and report.group_name == "validation"
    assert {t.name for t in TARGET_TABLES} <= {k.to_user_string() for k in report.parent_keys}


def test_the_graph_reads_extract_transform_load_verify_with_no_edge_backwards():
    order = ["extract", "transform", "load", "verify"]
    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        if node.group_name not in order:  # preflight, rollback: groups of their own jobs
            continue
        for parent in node.parent_keys:
            assert order.index(graph.get(parent).group_name) <= order.index(node.group_name), (parent, key)
    # Each table's lineage is only what it is made of (no other table's cleaning, no extract step).
    chat = {p.to_user_string() for p in graph.get(dg.AssetKey("chat_messages")).parent_keys}
    assert chat == {"clean_chat_messages", "derived_users", "target_schema"}


def test_a_bad_resync_cron_names_the_variable_when_the_code_location_loads(monkeypatch):
    from agent_migration import jobs
    from agent_migration.core.settings import SettingError

    monkeypatch.setenv("RESYNC_CRON", "61 * * * *")
    with pytest.raises(SettingError, match=r"^RESYNC_CRON must be .* not '61 \* \* \* \*' \(from env RESYNC_CRON\)\.$"):
        jobs.resync_cron()
    monkeypatch.delenv("RESYNC_CRON")
    assert jobs.resync_cron() == "*/30 * * * *"
