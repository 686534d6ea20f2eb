"""The reject budget's setting and messages, and preflight's column profiles: pure functions, no server."""

from collections import Counter

import pyarrow as pa
import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent_migration.core.contract import REJECT_SCHEMA
from agent_migration.core.errors import MigrationError
from agent_migration.core.rules import INT32_MAX, INT32_MIN
from agent_migration.core.tables import AGENTS
from agent_migration.postgres import budget
from agent_migration.preflight import profiling
from agent_migration.resources import PostgresTarget


@pytest.mark.parametrize(("raw", "share"), [("0.25", 0.25), (" 1 ", 1.0), ("0", 0.0), ("", 0.5), (None, 0.5)])
def test_the_budget_is_read_from_the_environment_at_run_time(monkeypatch, raw, share):
    if raw is None:
        monkeypatch.delenv(budget.ENV, raising=False)
    else:
        monkeypatch.setenv(budget.ENV, raw)
    assert budget.budget_of(PostgresTarget()).share == share


@pytest.mark.parametrize("raw", ["50%", "1.5", "-0.1", "nan", "half"])
def test_a_bad_budget_names_the_setting_and_the_value(monkeypatch, raw):
    monkeypatch.setenv(budget.ENV, raw)
    with pytest.raises(
        MigrationError,
        match=rf"^MIGRATION_MAX_REJECT_SHARE must be a fraction between 0 and 1 .* not '{raw}' "
        r"\(from env MIGRATION_MAX_REJECT_SHARE\)\.$",
    ):
        budget.budget_of(PostgresTarget())


def test_resource_config_wins_over_the_environment_and_is_validated(monkeypatch):
    monkeypatch.setenv(budget.ENV, "0.1")
    found = budget.budget_of(PostgresTarget(max_reject_share=0.9))
    assert found.share == 0.9 and "target.max_reject_share" in found.setting
    with pytest.raises(pydantic.ValidationError, match="max_reject_share"):
        PostgresTarget(max_reject_share=1.5)


def test_the_refusal_leads_with_the_root_cause_and_says_how_to_raise_the_budget():
    gene = "agents.gene: overflows a PostgreSQL INTEGER"
    orphan = "chat_messages.agent_id: names agent N, which is missing or rejected"
    agents = budget.Share("agents", 100_000, 40_000, {gene: 40_000}, {gene: 5})
    chats = budget.Share("chat_messages", 1_000, 700, {orphan: 690, "chat_messages.role: is not one of": 10})
    limit = budget.Budget(0.5, "MIGRATION_MAX_REJECT_SHARE=0.5")
    every = [agents, budget.Share("payments", 10, 0), chats]
    over = budget.over_budget(every, limit)
    assert over == [chats]  # agents are within the budget; their rejects cause the chat messages'
    message = budget.refusal(over, every, limit)
    assert message.startswith(
        "reject budget exceeded: chat_messages: 700 of 1,000 source rows would be rejected (70.0%), because "
        "40,000 of 100,000 agents are rejected (agents.gene: 39,995 values above INTEGER's 2147483647 and 5 values "
        "below INTEGER's -2147483648): chat_messages.agent_id: 690 rows name an agent that is missing or rejected"
    )
    assert "MIGRATION_MAX_REJECT_SHARE=1" in message and "{max_reject_share: 1}" in message
    assert (
        budget.describe("payments.amount: breaks CHECK (amount >= 0)", 1)
        == "payments.amount: breaks CHECK (amount >= 0) (1 row)"
    )


REASONS = [
    "agents.gene: overflows a PostgreSQL INTEGER",
    "agents.xp: overflows a PostgreSQL INTEGER",
    "agents.energy: breaks CHECK (energy >= 0 AND energy <= 100)",
    "agents.name: is NULL but the target column is NOT NULL",
]
big = st.one_of(st.integers(INT32_MAX + 1, 2**62), st.integers(-(2**62), INT32_MIN - 1))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.lists(st.tuples(st.sampled_from(REASONS), big), min_size=1, max_size=3, unique_by=lambda t: t[0]),
        max_size=40,
    )
)
def test_reasons_are_counted_per_kind_and_overflows_split_by_sign(rows):
    """`count_reasons` (what preflight counts and the budget's message says) against a per-row reference."""
    reasons = ["; ".join(f"{k} (got {v})" for k, v in row) for row in rows]
    kinds = ["; ".join(k for k, _ in row) for row in rows]
    table = pa.table(
        {
            "source_key": pa.array([str(i) for i in range(len(rows))], pa.large_string()),
            "reason": pa.array(reasons, pa.large_string()),
            "payload": pa.array(["{}"] * len(rows), pa.large_string()),
            "source_rowid": pa.array(range(len(rows)), pa.int64()),
            "reason_kind": pa.array(kinds, pa.large_string()),
        },
        schema=REJECT_SCHEMA,
    )
    counted, below = budget.count_reasons(table)
    assert counted == Counter(k for row in rows for k, _ in row)
    expected = Counter(k for row in rows for k, v in row if v < 0 and k.endswith(budget.OVERFLOW))
    assert +below == expected
    for kind, n in counted.items():
        text = budget.describe(kind, n, below.get(kind, 0))
        assert text.startswith(kind.split(": ")[0] + ": ")
        if kind.endswith(budget.OVERFLOW):
            assert ("above INTEGER's" in text) == (n > below.get(kind, 0)) and ("below" in text) == bool(
                below.get(kind)
            )


stamps = st.sampled_from(
    [
        ("2024-01-02 03:04:05", "YYYY-MM-DD HH:MM:SS"),
        ("2024-01-02 03:04:05.123", "YYYY-MM-DD HH:MM[:SS.ffffff]"),
        ("2024-01-02 03:04", "YYYY-MM-DD HH:MM[:SS.ffffff]"),
        ("2024-01-02T03:04:05", "ISO 8601 with T"),
        ("2024-01-02T03:04:05Z", "ISO 8601 with Z or offset (to UTC)"),
        ("2024-01-02 03:04:05+02:00", "ISO 8601 with Z or offset (to UTC)"),
        ("1700000000", profiling.EPOCH_S),
        ("1700000000000", profiling.EPOCH_MS),
        ("yesterday", profiling.NOT_TIME),
        ("2024-01-02", profiling.NOT_TIME),
    ]
)
values = st.one_of(st.integers(-(2**63), 2**63 - 1), st.none())


@settings(max_examples=60, deadline=None)
@given(
    st.lists(values, max_size=30),
    st.lists(st.one_of(values, st.text(max_size=3), st.floats(allow_nan=False)), max_size=10),
    st.lists(st.one_of(stamps, st.none()), max_size=30),
)
def test_column_profiles_see_both_paths(typed, odd, times):
    """An integer column's min and max over the fast path's typed values and the exact path's, and each
    timestamp counted under the one accepted form it came in."""
    gene = profiling.ColumnProfile(AGENTS, AGENTS.col("gene"))
    gene.typed(pa.array(typed, pa.int64()))
    gene.exact(odd)
    numbers = [v for v in typed if v is not None] + [v for v in odd if isinstance(v, (int, float))]
    found = gene.result()
    if numbers:
        assert (found["min"], found["max"]) == (min(numbers), max(numbers))
        assert found["fits"] == (min(numbers) >= INT32_MIN and max(numbers) <= INT32_MAX)
    assert sum(found["seen"].values()) == len(typed) + len(odd)
    created = profiling.ColumnProfile(AGENTS, AGENTS.col("created_at"))
    created.typed(pa.array([t[0] if t else None for t in times], pa.string()))
    expected = Counter(t[1] for t in times if t)
    assert +Counter(created.result().get("formats", {})) == +expected
