"""`core/settings.py`: every setting is read at run time, and every error says where its value came from."""

from __future__ import annotations

import pytest

from agent_migration.core.settings import LOG_LEVEL, SOURCE, TARGET, SettingError, resolve
from agent_migration.postgres import budget
from agent_migration.resources import PostgresTarget, SqliteSource

# A value each setting that parses its text refuses.
BAD = {
    "MIGRATION_CHUNK_ROWS": "0",
    "MIGRATION_KEEP_BACKUPS": "many",
    "MIGRATION_KEEP_RUNS": "-1",
    "MIGRATION_MIN_FREE_MB": "1.5",
    "MIGRATION_VALIDATE_SAMPLE": "-3",
    "MIGRATION_PG_CONNECTIONS": "zero",
    "MIGRATION_MAX_REJECT_SHARE": "50%",
    "MIGRATION_LOG_LEVEL": "LOUD",
}
CHECKED = [s for s in [*SOURCE.values(), *TARGET.values(), LOG_LEVEL] if s.env in BAD]


def test_every_setting_that_parses_its_text_has_a_bad_value_here():
    parsed = {s.env for s in [*SOURCE.values(), *TARGET.values(), LOG_LEVEL] if s.parse is not str}
    assert parsed == set(BAD)


@pytest.mark.parametrize("spec", CHECKED, ids=lambda s: s.env)
def test_a_bad_value_in_the_environment_names_the_variable_and_its_origin(monkeypatch, spec):
    monkeypatch.setenv(spec.env, BAD[spec.env])
    with pytest.raises(SettingError) as found:
        resolve(spec, None)
    message = str(found.value)
    assert message.startswith(f"{spec.env} must be {spec.rule}, not ")
    assert BAD[spec.env] in message  # the value as given (quoted when it did not parse)
    assert message.endswith(f"(from env {spec.env}).")


@pytest.mark.parametrize("spec", CHECKED, ids=lambda s: s.env)
def test_the_run_config_wins_and_the_default_says_how_to_set_it(monkeypatch, spec):
    monkeypatch.delenv(spec.env, raising=False)
    default = resolve(spec, None)
    assert default.value == spec.default and default.origin == "default"
    assert default.where == f"the default; set env {spec.env} or the resource config {spec.field}"
    monkeypatch.setenv(spec.env, BAD[spec.env])
    configured = resolve(spec, spec.default)  # the run config's value: the environment is not read
    assert configured.origin == "run config" and configured.where == f"from the resource config {spec.field}"


def test_a_bad_value_from_the_run_config_names_the_field(monkeypatch):
    with pytest.raises(SettingError, match=r"^MIGRATION_LOG_LEVEL must be one of DEBUG, .* not 'loud' "
                       r"\(from the resource config loggers\.console\.config\.log_level\)\.$"):
        resolve(LOG_LEVEL, "loud")
    with pytest.raises(SettingError, match=r"from the resource config source\.validate_sample\)\.$"):
        SqliteSource(validate_sample=-1).setting("validate_sample")


def test_the_sample_size_and_the_budget_are_resource_fields_over_the_environment(monkeypatch):
    monkeypatch.setenv("MIGRATION_VALIDATE_SAMPLE", "25")
    monkeypatch.setenv("MIGRATION_MAX_REJECT_SHARE", "0.2")
    assert SqliteSource().setting("validate_sample").value == 25
    assert SqliteSource(validate_sample=0).setting("validate_sample").value == 0
    assert budget.budget_of(PostgresTarget()).setting == "MIGRATION_MAX_REJECT_SHARE=0.2"
    assert budget.budget_of(PostgresTarget(max_reject_share=1)).setting == "target.max_reject_share = 1"
