"""The sample's contract: scales, the app's schema, table columns and keys, and the catalogue of messy cases."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import NamedTuple

SCALES: dict[str, dict[str, int]] = {
    "tiny": {"agents": 50, "balances": 20, "payments": 30, "messages": 200},
    "small": {"agents": 1_000, "balances": 200, "payments": 500, "messages": 10_000},
    "medium": {"agents": 100_000, "balances": 20_000, "payments": 50_000, "messages": 1_000_000},
    "large": {"agents": 400_000, "balances": 80_000, "payments": 200_000, "messages": 4_000_000},
    # (the benchmark's optional 10x medium: memory stays flat, time grows linearly; about 3 GB of SQLite)
    "xlarge": {"agents": 1_000_000, "balances": 200_000, "payments": 500_000, "messages": 10_000_000},
}
MESSY_SHARE = 0.02

SCHEMA = """
CREATE TABLE agents (id INTEGER PRIMARY KEY, name TEXT, owner TEXT, traits TEXT, energy INTEGER, xp INTEGER,
  gene INTEGER, rarity TEXT, rareTrait TEXT, power INTEGER, forSale BOOLEAN, price INTEGER,
  created_at DATETIME, updated_at DATETIME);
CREATE TABLE user_balance (user_id TEXT PRIMARY KEY, coins INTEGER, updated_at DATETIME);
CREATE TABLE payments (id INTEGER PRIMARY KEY, user_id TEXT, amount REAL, currency TEXT, status TEXT,
  payment_method TEXT, transaction_id TEXT, stripe_session_id TEXT, stripe_payment_intent_id TEXT,
  coins INTEGER, created_at DATETIME, updated_at DATETIME);
CREATE TABLE chat_messages (id INTEGER PRIMARY KEY, agent_id INTEGER, user_id TEXT, message TEXT, role TEXT,
  created_at DATETIME);
"""
AGENTS, BALANCES, PAYMENTS, CHATS = "agents", "user_balance", "payments", "chat_messages"
COLUMNS = {
    AGENTS: ("id", "name", "owner", "traits", "energy", "xp", "gene", "rarity", "rareTrait", "power")
    + ("forSale", "price", "created_at", "updated_at"),
    BALANCES: ("user_id", "coins", "updated_at"),
    PAYMENTS: ("id", "user_id", "amount", "currency", "status", "payment_method", "transaction_id")
    + ("stripe_session_id", "stripe_payment_intent_id", "coins", "created_at", "updated_at"),
    CHATS: ("id", "agent_id", "user_id", "message", "role", "created_at"),
}
KEYS = {AGENTS: "id", BALANCES: "user_id", PAYMENTS: "id", CHATS: "id"}
COUNT_OF = {AGENTS: "agents", BALANCES: "balances", PAYMENTS: "payments", CHATS: "messages"}
LOAD, REJECT = "load", "reject"


@dataclass(frozen=True)
class MessyCase:
    table: str  # source table name
    key: object  # the source primary key value (int id, or the user_id text for user_balance)
    column: str  # the source column at fault (or that the case is about)
    description: str  # human readable, e.g. "energy 150 breaks CHECK 0-100"
    outcome: str  # "reject" or "load"
    expected: object = None  # for "load": the value expected in the TARGET column, else None


class BadText(bytes):
    """Bytes planted as TEXT (`CAST(? AS TEXT)`): a text value that is not valid UTF-8."""


@dataclass(frozen=True)
class AgentRef:
    """The id of the first planted agent case with this outcome (resolved when planting)."""

    outcome: str


class Plant(NamedTuple):
    """One catalogue case: the value planted, its SQLite storage class (typeof) and the expected outcome."""

    table: str
    column: str
    value: object
    stored: str
    outcome: str
    expected: object
    why: str


def _load(table, column, value, stored, expected, why="loads") -> Plant:
    return Plant(table, column, value, stored, LOAD, expected, why)


def _reject(table, column, value, stored, why) -> Plant:
    return Plant(table, column, value, stored, REJECT, None, why)


A, B, P, C = AGENTS, BALANCES, PAYMENTS, CHATS
_DT = datetime(2024, 3, 1, 12, 34, 56)
_NULLABLE = {
    A: ("energy", "xp", "gene", "power", "price", "rarity", "rareTrait", "forSale")
    + ("created_at", "updated_at"),
    B: ("coins", "updated_at"),
    P: ("user_id", "currency", "status", "payment_method", "transaction_id", "stripe_session_id")
    + ("stripe_payment_intent_id", "coins", "created_at", "updated_at"),
    C: ("created_at", "user_id", "agent_id"),
}
_BOOLS = {1: True, 0: False, "1": True, "0": False, "true": True, "FALSE": False, "t": True, "F": False}

# The catalogue: write_sample plants one row per entry (in this order) and returns one MessyCase for each.
CASES: tuple[Plant, ...] = (
    # Agents first: the first rejected one is the parent of the "rejected agent" chat case below.
    _reject(A, "energy", 150, "integer", "breaks CHECK 0-100"),
    _reject(A, "energy", -1, "integer", "breaks CHECK 0-100"),
    _reject(A, "xp", -5, "integer", "breaks CHECK >= 0"),
    _load(A, "energy", 50.0, "integer", 50, "is stored as the integer 50 (INTEGER affinity)"),
    _reject(A, "energy", 50.5, "real", "is not a whole number"),
    _reject(A, "energy", "abc", "text", "is not a number"),
    _reject(A, "power", 3_000_000_000, "integer", "overflows a PostgreSQL INTEGER"),
    _reject(A, "price", -10, "integer", "breaks CHECK >= 0"),
    *(_load(A, col, None, "null", None, "stays NULL") for col in _NULLABLE[A]),
    _load(A, "traits", None, "null", {}, "becomes {} (traits is NOT NULL)"),
    _load(A, "traits", "", "text", {}, "becomes {}"),
    _reject(A, "traits", "{bad", "text", "is not valid JSON"),
    _reject(A, "traits", '{"a": "\\u0000"}', "text", "is JSON with a NUL escape, which JSONB cannot hold"),
    _load(A, "rareTrait", "", "text", None, "becomes NULL"),
    _reject(A, "rareTrait", "{'glow': 1}", "text", "is not valid JSON"),
    *(
        _load(A, "forSale", v, "text" if v in ("true", "FALSE", "t", "F") else "integer", b, "is a boolean")
        for v, b in _BOOLS.items()
    ),
    _reject(A, "forSale", "yes", "text", "is not a boolean"),
    _reject(A, "forSale", 2, "integer", "is not a boolean"),
    _load(A, "created_at", "2024-03-01 12:34:56", "text", _DT, "is SQLite's format"),
    _load(A, "created_at", "2024-03-01 12:34:56.123456", "text", _DT.replace(microsecond=123456), "keeps µs"),
    _load(A, "created_at", "2024-03-01T12:34:56Z", "text", _DT, "is ISO 8601 in UTC"),
    _load(A, "created_at", "2024-03-01T14:34:56+02:00", "text", _DT, "is converted to UTC"),
    _load(A, "created_at", 1709296496, "integer", _DT, "is epoch seconds"),
    _load(A, "created_at", 1709296496789, "integer", _DT.replace(microsecond=789000), "is epoch ms"),
    _reject(A, "created_at", "yesterday", "text", "is not a timestamp"),
    _reject(A, "created_at", "12:34:56", "text", "is a time without a date"),
    _reject(A, "created_at", "2024-02-30 10:00:00", "text", "is an impossible date"),
    _reject(A, "name", "Nova-" + "x" * 251, "text", "is longer than VARCHAR(255)"),
    _load(A, "rarity", ("mythic-" * 8)[:50], "text", ("mythic-" * 8)[:50], "fits VARCHAR(50) exactly"),
    _reject(A, "name", None, "null", "is NULL but name is NOT NULL"),
    _reject(A, "name", BadText(b"Nova\xff"), "text", "is not valid UTF-8"),
    _reject(A, "owner", "u" * 256, "text", "is a username longer than VARCHAR(255)"),
    _load(A, "owner", None, "null", None, "means no owner"),
    _load(A, "owner", "", "text", None, "means no owner"),
    _load(A, "owner", "  spaced  ", "text", "  spaced  ", "is a username, spaces kept"),
    # user_balance: keyed by username
    *(_load(B, col, None, "null", None, "stays NULL") for col in _NULLABLE[B]),
    _reject(B, "coins", -1, "integer", "breaks CHECK >= 0"),
    _reject(B, "user_id", None, "null", "names no user"),
    _reject(B, "user_id", "   ", "text", "names no user (whitespace only)"),
    _reject(B, "user_id", BadText(b"bob\xff"), "text", "is not valid UTF-8"),
    # payments
    *(_load(P, col, None, "null", None, "stays NULL") for col in _NULLABLE[P]),
    _reject(P, "currency", "DOLLARS-US-X", "text", "is longer than VARCHAR(10)"),
    _load(P, "amount", 19.990000000000002, "real", Decimal("19.99"), "is float noise around 19.99"),
    _reject(P, "amount", 4.999, "real", "is not a whole cent"),
    _reject(P, "amount", -5.0, "real", "breaks CHECK >= 0"),
    _reject(P, "amount", None, "null", "is NULL but amount is NOT NULL"),
    _reject(P, "amount", 123456789.0, "real", "does not fit DECIMAL(10,2)"),
    _load(P, "amount", 0, "real", Decimal("0.00"), "is zero (REAL affinity stores 0.0)"),
    _reject(P, "transaction_id", b"\x00\x01txn", "blob", "is a BLOB, not text"),
    _load(P, "user_id", "Alice", "text", "Alice", "is its own user, distinct from 'alice'"),
    # chat_messages (their agent is a planted agent that loads, unless the case is about agent_id)
    *(_load(C, col, None, "null", None, "stays NULL") for col in _NULLABLE[C]),
    _reject(C, "role", "moderator", "text", "is not user/assistant/system"),
    _reject(C, "role", "User", "text", "is not user/assistant/system (case matters)"),
    _reject(C, "message", None, "null", "is NULL but message is NOT NULL"),
    _reject(C, "message", "hello\x00world, a NUL inside a chat message", "text", "contains a NUL"),
    _reject(C, "agent_id", 99_999_999, "integer", "names no agent"),
    _reject(C, "agent_id", AgentRef(REJECT), "integer", "names a rejected agent"),
    _load(C, "user_id", "alice", "text", "alice", "is its own user, distinct from 'Alice'"),
)
# The scatter draws from these: no keys and no usernames (so "users only in one table" stay so).
SCATTER = tuple(
    p for p in CASES if p.column not in ("id", "owner", "user_id") and type(p.value) is not AgentRef
)
