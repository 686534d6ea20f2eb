"""Tests of `agent_migration.postgres.audit`: each check passes on a sound hand-made target and names a planted problem."""

from __future__ import annotations

import json

import psycopg2
import pytest

from agent_migration.core.tables import AGENTS, CHAT_MESSAGES, PAYMENTS, USER_BALANCE
from agent_migration.postgres import audit, ddl, merge

# A small sound target: two users, three agents (one for sale, listed), two payments, two chat messages.
SOUND = [
    "INSERT INTO users (id, username) VALUES (1, 'alice'), (2, 'bob')",
    """INSERT INTO agents (id, name, owner_id, energy, for_sale, price) VALUES
       (1, 'a', 1, 100, TRUE, 10), (2, 'b', 2, 0, FALSE, NULL), (3, 'c', NULL, 50, FALSE, 7)""",
    "INSERT INTO marketplace_listings (agent_id, seller_id, price) VALUES (1, 1, 10)",
    "INSERT INTO payments (id, user_id, amount, coins) VALUES (1, 1, 10.50, 100), (2, 2, 2.25, 20)",
    "INSERT INTO user_balance (user_id, coins) VALUES (1, 5), (2, 7)",
    """INSERT INTO chat_messages (id, agent_id, user_id, message, role) VALUES
       (1, 1, 1, 'hi', 'user'), (2, 2, NULL, 'yo', 'assistant')""",
]


@pytest.fixture
def cur(pg_url):
    """A cursor on the sound target, in a transaction rolled back at the end."""
    conn = psycopg2.connect(pg_url)
    cursor = conn.cursor()
    ddl.ensure_schema(cursor)
    for statement in SOUND:
        cursor.execute(statement)
    for table in (AGENTS, PAYMENTS, CHAT_MESSAGES):
        merge.advance_sequence(cursor, table)
    yield cursor
    conn.rollback()
    conn.close()


def reject(cur, table, key, reason, payload: dict, kind: str | None = None, rowid: int | None = None) -> None:
    cur.execute(
        "INSERT INTO migration.rejected_rows (source_table, source_key, reason, payload, reason_kind,"
        " source_rowid) VALUES (%s, %s, %s, %s, %s, %s)",
        (table.source, key, reason, json.dumps(payload), kind, rowid),
    )


def test_rows_are_accounted_for_and_rejects_grouped_by_reason(cur):
    """`accounting` passes when source rows = loaded + rejected with no reject key twice, and says by how
    much and why it fails otherwise; `rejects_by_reason` counts each kind of a combined reason, grouping
    rows of older runs by their reason with its values cut out."""
    negative = "payments.amount: negative"
    reject(cur, PAYMENTS, "3", f"{negative} (got -1)", {"amount": -1}, negative, 3)
    stats = {"payments": {"rows": 3}}
    assert audit.accounting(cur, PAYMENTS, stats) == {
        "source_rows": 3,
        "loaded_rows": 2,
        "rejected_rows": 1,
        "difference": 0,
        "duplicate_reject_keys": 0,
        "passed": True,
    }
    missing = audit.accounting(cur, PAYMENTS, {"payments": {"rows": 5}})
    assert (missing["difference"], missing["passed"]) == (2, False)
    unknown = audit.accounting(cur, PAYMENTS, {})  # no source stats recorded: cannot pass
    assert (unknown["source_rows"], unknown["difference"], unknown["passed"]) == (None, None, False)

    reject(cur, PAYMENTS, "3", f"{negative} (got -2)", {"amount": -2}, negative, 4)  # the same key again
    twice = audit.accounting(cur, PAYMENTS, {"payments": {"rows": 4}})
    assert (twice["difference"], twice["duplicate_reject_keys"], twice["passed"]) == (0, 1, False)

    both = f"{negative}; payments.currency: too long"
    reject(cur, PAYMENTS, "5", "…", {}, both, 5)
    reject(cur, PAYMENTS, "6", "payments.user_id: too long (got 'xxx')", {}, None, 6)  # an older run's row
    missing_agent = "chat_messages.agent_id: names agent {0}, which is missing (got {0})"
    reject(cur, CHAT_MESSAGES, "9", missing_agent.format(12), {}, None, 9)  # older runs' rows
    reject(cur, CHAT_MESSAGES, "8", missing_agent.format(4), {}, None, 8)
    assert audit.rejects_by_reason(cur, PAYMENTS) == {
        negative: 3,
        "payments.currency: too long": 1,
        "payments.user_id: too long": 1,
    }
    assert audit.rejects_by_reason(cur, PAYMENTS, top=1) == {negative: 3}
    assert audit.rejects_by_reason(cur, CHAT_MESSAGES) == {
        "chat_messages.agent_id: names agent N, which is missing": 2
    }
    assert audit.rejects_by_reason(cur, AGENTS) == {}


def test_orphans_are_proven_by_an_enforced_key_and_found_by_a_scan_without_one(cur):
    """A validated foreign key with its triggers enabled is the proof (no scan); a dropped key or one
    whose triggers are disabled is not trusted: the rows are scanned and the orphans' keys named."""
    assert audit.orphans(cur, PAYMENTS) == {
        "user_id": {"sample_keys": [], "enforced_by": "payments_user_id_fkey"}
    }
    cur.execute("ALTER TABLE payments DROP CONSTRAINT payments_user_id_fkey")
    assert audit.orphans(cur, PAYMENTS) == {"user_id": {"sample_keys": [], "enforced_by": None}}
    cur.execute("INSERT INTO payments (id, user_id, amount) VALUES (3, 99, 1)")
    assert audit.orphans(cur, PAYMENTS)["user_id"] == {"sample_keys": [3], "enforced_by": None}

    cur.execute("ALTER TABLE chat_messages DISABLE TRIGGER ALL")
    cur.execute(
        "INSERT INTO chat_messages (id, agent_id, user_id, message, role) VALUES (7, 42, 2, 'x', 'user')"
    )
    found = audit.orphans(cur, CHAT_MESSAGES)
    assert found["agent_id"] == {"sample_keys": [7], "enforced_by": None}
    assert found["user_id"] == {"sample_keys": [], "enforced_by": None}


def test_constraint_breaks_name_the_rows_breaking_a_check_or_not_null(cur):
    """Every column with a CHECK or NOT NULL is re-proven; rows breaking one (possible only once the
    constraint is gone) are named under their column, and the other columns stay clean."""
    sound = audit.constraint_breaks(cur, AGENTS)
    assert {"name", "traits", "energy", "xp", "price"} <= set(sound)
    assert "owner_id" not in sound and all(keys == [] for keys in sound.values())
    cur.execute("ALTER TABLE agents DROP CONSTRAINT agents_energy_check")
    cur.execute("ALTER TABLE agents ALTER COLUMN name DROP NOT NULL")
    cur.execute("INSERT INTO agents (id, name, energy) VALUES (8, 'hot', 150), (9, NULL, 100)")
    broken = audit.constraint_breaks(cur, AGENTS)
    assert broken["energy"] == [8]
    assert broken["name"] == [9]
    assert all(keys == [] for column, keys in broken.items() if column not in ("energy", "name"))


def test_sums_reconcile_loaded_and_rejected_totals_with_the_source(cur):
    """Money reconciles in cents: loaded DECIMALs plus rejected payload amounts (numbers, or text holding a
    number; anything else counts nothing) equal the source total, and a cent off fails; whole-unit columns
    likewise."""
    reject(cur, PAYMENTS, "3", "r", {"amount": 1.005})  # 100.5 cents: rounds to 101
    reject(cur, PAYMENTS, "4", "r", {"amount": "3"})
    reject(cur, PAYMENTS, "5", "r", {"amount": "abc"})
    reject(cur, PAYMENTS, "6", "r", {"amount": None})
    found = audit.sums(cur, PAYMENTS, {"payments": {"sums": {"amount": "1676"}}})
    assert found == {
        "amount": {"unit": "cents", "source": "1676", "loaded": "1275", "rejected": "401", "passed": True}
    }
    assert not audit.sums(cur, PAYMENTS, {"payments": {"sums": {"amount": "1675"}}})["amount"]["passed"]
    assert not audit.sums(cur, PAYMENTS, {})["amount"]["passed"]  # no source total: NaN never reconciles

    reject(cur, USER_BALANCE, "carol", "r", {"coins": 30})
    coins = audit.sums(cur, USER_BALANCE, {"user_balance": {"sums": {"coins": "42"}}})["coins"]
    assert (coins["unit"], coins["loaded"], coins["rejected"], coins["passed"]) == ("units", "12", "30", True)
    assert audit.sums(cur, AGENTS, {}) == {}  # nothing to reconcile


def test_sequence_lag_requires_the_next_id_past_every_row_and_source_id(cur):
    """The next SERIAL value must pass both the largest loaded id and the largest source id (a reject a
    rollback would restore); a source id beyond INTEGER is capped, since nothing can collide with it."""
    assert audit.sequence_lag(cur, PAYMENTS) == {
        "max_id": 2,
        "max_source_id": None,
        "next_value": 3,
        "passed": True,
    }
    assert audit.sequence_lag(cur, PAYMENTS, max_source_id=5)["passed"] is False
    cur.execute("INSERT INTO payments (id, amount) VALUES (9, 1)")  # an id the sequence has not passed
    assert audit.sequence_lag(cur, PAYMENTS)["passed"] is False
    merge.advance_sequence(cur, PAYMENTS, past=5)
    assert audit.sequence_lag(cur, PAYMENTS, max_source_id=5)["passed"] is True
    beyond = audit.sequence_lag(cur, PAYMENTS, max_source_id=2**40)
    assert (beyond["max_source_id"], beyond["passed"]) == (2**31 - 1, False)
    assert audit.sequence_lag(cur, USER_BALANCE) is None  # keyed by user, no SERIAL


def test_listing_mismatches_count_each_kind_of_wrong_listing(cur):
    """A sound target has no mismatch; an agent for sale without its listing, an active listing of an
    agent off sale, a listing at a stale price, and an agent for sale without a price are each counted."""
    nothing = {"for_sale_without_one_listing": 0, "active_but_not_for_sale": 0, "for_sale_without_price": 0}
    assert audit.listing_mismatches(cur) == nothing
    cur.execute("UPDATE agents SET price = 11 WHERE id = 1")  # its listing still says 10
    cur.execute("UPDATE agents SET for_sale = TRUE WHERE id = 3")  # for sale, no listing
    # agent 2 is off sale; agent 4 is for sale without a price
    cur.execute("INSERT INTO marketplace_listings (agent_id, seller_id, price) VALUES (2, 2, 5)")
    cur.execute("INSERT INTO agents (id, name, for_sale, price) VALUES (4, 'd', TRUE, NULL)")
    assert audit.listing_mismatches(cur) == {
        "for_sale_without_one_listing": 2,
        "active_but_not_for_sale": 1,
        "for_sale_without_price": 1,
    }
    assert merge.sync_listings(cur)["inserted"] == 1
    assert audit.listing_mismatches(cur) == nothing | {"for_sale_without_price": 1}
