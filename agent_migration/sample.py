"""A deterministic sample of the AI Breeding app's SQLite database (`db.sqlite`), with planted messy rows.

What the sample holds (the app's four tables, exactly as the app declares them):

- `agents` (name, owner, JSON traits, stats, rarity, sale flag, price, timestamps), `user_balance` (coins
  per username), `payments` (Stripe/PayPal purchases, REAL amounts) and `chat_messages` (20-400 characters;
  every clean one names an existing agent).
- Users are a pool of about agents/4 usernames (at least 10, and enough for the unique balances:
  `user_00042`, ...) plus a few real-looking ones with mixed
  case and unicode (`Alice` and `alice` are two users, `zoë_ü`, `李雷`). Some users appear ONLY in
  payments, some ONLY in chat messages and some ONLY in user_balance, never as an agent owner.
- Clean rows have contiguous ids from 1. Scales (`SCALES`): tiny, small (1/100 of medium), medium
  (100k agents, 20k balances, 50k payments, 1M chat messages) and large (4x medium).

Messy data (unless `messy=False` / `--clean`):

- The catalogue `CASES`: one extra row per case, appended AFTER the clean rows (ids after the clean ones;
  user_balance rows keyed by usernames no clean row uses). `write_sample` returns one `MessyCase` per
  planted row, in `CASES` order, with the outcome the migration must give it ("load" with the expected
  target value, or "reject"). Kinds: NULLs the target keeps, JSON ('' / NULL / invalid / NUL escape),
  boolean spellings, timestamp formats (offsets, epochs in s and ms, impossible dates), integers out of
  range / fractional / text, texts too long for their VARCHAR, money with float noise / sub-cent /
  negative / too large, unknown chat roles, missing or rejected parent agents, blank / spaced / too long
  usernames, and bad bytes (invalid UTF-8 text, a NUL inside text, a BLOB in a text column).
- A scatter: `messy_share` (default 2 %) of the clean rows of each table get one messy value each, drawn
  uniformly from the same catalogue (`SCATTER`: every case on a column that is neither a key nor a
  username, so the users "only in" one table stay so); about half of those kinds reject the row, the
  others are odd but loadable spellings (NULLs, 'true', ISO/epoch timestamps...). It modifies clean rows,
  adds none, and is not catalogued.

Run it: `agent-migration-sample [PATH] [--scale tiny|small|medium|large] [--seed N] [--clean] [--force]
[--agents N --balances N --payments N --messages N] [--messy-share F]` (default `./db.sqlite`, small,
seed 0). The same arguments always give the same table contents.
"""

from __future__ import annotations

import argparse
import errno
import os
import random
import sqlite3
import sys
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import NamedTuple

SCALES: dict[str, dict[str, int]] = {
    "tiny": {"agents": 50, "balances": 20, "payments": 30, "messages": 200},
    "small": {"agents": 1_000, "balances": 200, "payments": 500, "messages": 10_000},
    "medium": {"agents": 100_000, "balances": 20_000, "payments": 50_000, "messages": 1_000_000},
    "large": {"agents": 400_000, "balances": 80_000, "payments": 200_000, "messages": 4_000_000},
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

# ---------------------------------------------------------------- clean data

T0, SPAN = 1_672_531_200, 2 * 365 * 86_400  # 2023-01-01, two years
REALISTIC_USERS = ("Alice", "alice", "zoë_ü", "李雷")
NAMES = ("Nova", "Echo", "Pixel", "Atlas", "Luna", "Orion", "Zephyr", "Byte", "Ember", "Quill")
COLORS = ("red", "blue", "green", "gold", "violet", "silver")
TEMPERS = ("calm", "bold", "curious", "grumpy", "playful")
RARE_TRAITS = ("glow", "shadow", "twin-core", "phoenix")
ROLES, ROLE_WEIGHTS = ("user", "assistant", "system"), (48, 96, 100)
TIERS = ((0.99, 100), (4.99, 550), (9.99, 1_200), (19.99, 2_500), (49.99, 6_500), (99.99, 14_000))
_CHAT_TEXT = (
    "the agent is hungry, can we train it today? please breed my nova with a rare one and show its "
    "traits. energy is low so let it rest. how much xp does a legendary need? I love this café vibe 🙂 "
    "¿qué tal? naïve question: why is power capped? 日本 tournament tomorrow, wish us luck! sure, here "
    "is a plan: feed, train, battle, repeat. sell it on the market for a good price. okay thanks!"
)
WORDS = tuple(_CHAT_TEXT.split())
CHUNK = 50_000


class _Stamp:
    """Cheap 'YYYY-MM-DD HH:MM:SS' text for epoch seconds (one cached date string per day)."""

    def __init__(self):
        self.hms = [f"{h:02d}:{m:02d}:{s:02d}" for h in range(24) for m in range(60) for s in range(60)]
        self.days: dict[int, str] = {}

    def __call__(self, t: int) -> str:
        d, s = divmod(t, 86_400)
        if (day := self.days.get(d)) is None:
            day = self.days[d] = (date(1970, 1, 1) + timedelta(days=d)).isoformat() + " "
        return day + self.hms[s]


@dataclass
class _World:
    """Everything the row generators share: the random stream, the users and the chat text."""

    rng: random.Random
    counts: dict[str, int]
    owners: list[str]
    pay_only: list[str]
    chat_only: list[str]
    balance_only: list[str]
    stamp: _Stamp
    corpus: str
    starts: tuple[int, ...]

    @classmethod
    def make(cls, seed: int, counts: dict[str, int]) -> _World:
        rng = random.Random(seed)
        n = max(10, counts["agents"] // 4)
        k = max(1, n // 50)
        n += max(0, counts["balances"] - (n - 3 * k + len(REALISTIC_USERS)))  # enough for unique balances
        names = [f"user_{i:0{max(5, len(str(n - 1)))}d}" for i in range(n)]
        rng.shuffle(names)
        owners = names[3 * k :] + list(REALISTIC_USERS)
        # Chat messages are slices of one pseudo-random text, starting at a word.
        words = rng.choices(WORDS, k=12_000)
        corpus = " ".join(words)
        starts, at = [], 0
        for word in words:
            if at + 400 <= len(corpus):
                starts.append(at)
            at += len(word) + 1
        groups = names[:k], names[k : 2 * k], names[2 * k : 3 * k]
        return cls(rng, counts, owners, *groups, _Stamp(), corpus, tuple(starts))

    def forced(self, users: list[str], n: int) -> dict[int, str]:
        """Put each of `users` on one random row id in 1..n (so each appears in that table at least once)."""
        users = users[:n]
        return dict(zip(self.rng.sample(range(1, n + 1), len(users)), users, strict=True))

    def agents(self, ids):
        rng, rnd, owners, stamp = self.rng, self.rng.random, self.owners, self.stamp
        for i in ids:
            r = rnd()
            rarity = "common" if r < 0.6 else "rare" if r < 0.85 else "epic" if r < 0.95 else "legendary"
            rare = (
                None
                if rarity == "common"
                else f'{{"name": "{rng.choice(RARE_TRAITS)}", "level": {1 + int(r * 5)}}}'
            )
            for_sale = 1 if rnd() < 0.2 else 0
            created = T0 + int(rnd() * SPAN)
            traits = f'{{"speed": {1 + int(rnd() * 10)}, "color": "{rng.choice(COLORS)}", "temper": "{rng.choice(TEMPERS)}"}}'
            yield (
                i,
                f"{rng.choice(NAMES)}-{int(rnd() * 1000)}",
                owners[int(rnd() * len(owners))],
                traits,
                int(rnd() * 101),
                int(rnd() * 50_000),
                rng.getrandbits(30),
                rarity,
                rare,
                1 + int(rnd() * 10_000),
                for_sale,
                100 + int(rnd() * 99_900) if for_sale else 0,
                stamp(created),
                stamp(created + int(rnd() * 30 * 86_400)),
            )

    def balances(self, users):
        rnd = self.rng.random
        for user in users:
            yield user, int(rnd() ** 3 * 100_000), self.stamp(T0 + int(rnd() * SPAN))

    def payments(self, ids, pool, forced):
        rng, rnd, stamp = self.rng, self.rng.random, self.stamp
        for i in ids:
            amount, coins = TIERS[int(rnd() * len(TIERS))]
            r = rnd()
            status = "completed" if r < 0.85 else "pending" if r < 0.95 else "failed"
            created = T0 + int(rnd() * SPAN)
            if rnd() < 0.75:
                ids_ = ("card", f"txn_{rng.getrandbits(64):016x}", f"cs_test_{rng.getrandbits(96):024x}")
                ids_ += (f"pi_{rng.getrandbits(96):024x}",)
            else:
                ids_ = ("paypal", f"PAYID-{rng.getrandbits(64):016X}", None, None)
            user = forced.get(i) or pool[int(rnd() * len(pool))]
            currency = "USD" if rnd() < 0.8 else "EUR"
            yield (i, user, amount, currency, status, *ids_, coins, stamp(created), stamp(created + 60))

    def chats(self, ids, pool, forced):
        rng, corpus, stamp = self.rng, self.corpus, self.stamp
        agent_ids = range(1, self.counts["agents"] + 1) or range(1, 2)
        step = SPAN // max(1, self.counts["messages"])
        for lo in range(0, len(ids), CHUNK):
            part = ids[lo : lo + CHUNK]
            m = len(part)
            agents, users = rng.choices(agent_ids, k=m), rng.choices(pool, k=m)
            roles = rng.choices(ROLES, cum_weights=ROLE_WEIGHTS, k=m)
            starts, sizes = rng.choices(self.starts, k=m), rng.choices(range(20, 401), k=m)
            for i, a, u, r, s, z in zip(part, agents, users, roles, starts, sizes, strict=True):
                yield i, a, forced.get(i, u), corpus[s : s + z], r, stamp(T0 + i * step)

    def write_clean(self, conn: sqlite3.Connection) -> dict[str, list]:
        """Insert the clean rows; returns each table's clean keys."""
        n = self.counts
        if n["messages"] and not n["agents"]:
            raise ValueError("chat messages need at least one agent (--agents >= 1)")
        agents, payments, chats = (range(1, n[what] + 1) for what in ("agents", "payments", "messages"))
        must = self.balance_only[: n["balances"]]
        users = must + self.rng.sample(self.owners, n["balances"] - len(must))
        self.rng.shuffle(users)
        rows = {  # generators: rows are made while SQLite inserts them
            AGENTS: self.agents(agents),
            BALANCES: self.balances(users),
            PAYMENTS: self.payments(
                payments, self.owners + self.pay_only, self.forced(self.pay_only, len(payments))
            ),
            CHATS: self.chats(chats, self.owners + self.chat_only, self.forced(self.chat_only, len(chats))),
        }
        for table, generator in rows.items():
            conn.executemany(
                f"INSERT INTO {table} VALUES ({', '.join('?' * len(COLUMNS[table]))})", generator
            )
        return {AGENTS: agents, BALANCES: users, PAYMENTS: payments, CHATS: chats}

    def fresh_row(self, table: str, key: object) -> list:
        """One clean row of `table` with primary key `key` (users from the owners, so none is 'only in')."""
        if table == AGENTS:
            return list(next(self.agents([key])))
        if table == BALANCES:
            return list(next(self.balances([key])))
        if table == PAYMENTS:
            return list(next(self.payments([key], self.owners, {})))
        return list(next(self.chats([key], self.owners, {})))


# ---------------------------------------------------------------- messy data


def _slot(value: object) -> str:
    return "CAST(? AS TEXT)" if type(value) is BadText else "?"


def _param(value: object) -> object:
    return bytes(value) if type(value) is BadText else value


def _show(value: object) -> str:
    if type(value) is BadText:
        return f"text x'{value.hex()}'"
    if isinstance(value, bytes):
        return f"BLOB x'{value.hex()}'"
    if isinstance(value, str) and len(value) > 40:
        return f"{value[:12]!r}... ({len(value)} characters)"
    return "NULL" if value is None else repr(value)


def plant_cases(conn: sqlite3.Connection, world: _World) -> list[MessyCase]:
    """Append one row per catalogue case after the clean rows; returns the catalogue, in `CASES` order."""
    next_id = {t: world.counts[COUNT_OF[t]] + 1 for t in COLUMNS}
    keys = []
    for p in CASES:
        if p.table != BALANCES:
            keys.append(next_id[p.table])
        elif p.column == "user_id":  # the key is the planted value (as the migration reads it)
            keys.append(p.value.decode("utf-8", "surrogateescape") if type(p.value) is BadText else p.value)
        else:  # a username no clean row uses
            keys.append(f"messy_balance_{next_id[p.table]:03d}")
        next_id[p.table] += 1
    agent_of = {
        o: next(k for p, k in zip(CASES, keys, strict=True) if p.table == AGENTS and p.outcome == o)
        for o in (LOAD, REJECT)
    }
    found = []
    for p, key in zip(CASES, keys, strict=True):
        cols = COLUMNS[p.table]
        row = world.fresh_row(p.table, key)
        if p.table == CHATS:
            row[cols.index("agent_id")] = agent_of[LOAD]
        at = cols.index(p.column)
        row[at] = agent_of[p.value.outcome] if type(p.value) is AgentRef else p.value
        slots = ["?"] * len(cols)
        slots[at] = _slot(row[at])
        conn.execute(f"INSERT INTO {p.table} VALUES ({', '.join(slots)})", [_param(v) for v in row])
        text = f"{p.table}.{p.column} {_show(p.value)} {p.why}"
        if type(p.value) is AgentRef:
            text = f"{p.table}.agent_id {agent_of[REJECT]} (a planted agent that is rejected) {p.why}"
        found.append(MessyCase(p.table, key, p.column, text, p.outcome, p.expected))
    return found


def scatter(conn: sqlite3.Connection, world: _World, clean_keys: dict[str, list], share: float) -> int:
    """Give `share` of each table's clean rows one bad value from `SCATTER`; returns how many rows."""
    updates: dict[str, list] = {}
    for table, keys in clean_keys.items():
        kinds = [p for p in SCATTER if p.table == table]
        for key in world.rng.sample(keys, round(len(keys) * share)):
            p = world.rng.choice(kinds)
            sql = f'UPDATE {table} SET "{p.column}" = {_slot(p.value)} WHERE {KEYS[table]} = ?'
            updates.setdefault(sql, []).append((_param(p.value), key))
    for sql, params in updates.items():
        conn.executemany(sql, params)
    return sum(map(len, updates.values()))


def resolve_counts(scale: str, **explicit: int | None) -> dict[str, int]:
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}: choose one of {', '.join(SCALES)}")
    counts = {k: v if explicit.get(k) is None else explicit[k] for k, v in SCALES[scale].items()}
    if bad := [k for k, v in counts.items() if not isinstance(v, int) or v < 0]:
        raise ValueError(f"row counts must be whole numbers >= 0: {', '.join(bad)}")
    return counts


def write_sample(
    path: str | os.PathLike,
    *,
    scale: str = "small",
    seed: int = 0,
    messy: bool = True,
    agents: int | None = None,
    balances: int | None = None,
    payments: int | None = None,
    messages: int | None = None,
    messy_share: float = MESSY_SHARE,
    overwrite: bool = False,
) -> list[MessyCase]:
    """Write a new sample database at `path`; returns the planted messy cases (empty when `messy=False`).

    Explicit counts override the scale's. The file is built next to `path` and moved into place at the end,
    so a failure never leaves a half-written database. Raises FileExistsError (path exists and not
    `overwrite`), FileNotFoundError (missing folder) or ValueError (bad scale, counts or share).
    """
    counts = resolve_counts(scale, agents=agents, balances=balances, payments=payments, messages=messages)
    if not 0 <= messy_share <= 1:
        raise ValueError(f"messy_share must be between 0 and 1, got {messy_share}")
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(errno.EEXIST, "already exists (use overwrite=True / --force)", str(path))
    if not path.parent.is_dir():
        raise FileNotFoundError(errno.ENOENT, "folder does not exist", str(path.parent))
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    world = _World.make(seed, counts)
    try:
        conn = sqlite3.connect(tmp, isolation_level=None)
        try:
            for pragma in (
                "journal_mode=OFF",
                "synchronous=OFF",
                "cache_size=-65536",
                "locking_mode=EXCLUSIVE",
            ):
                conn.execute(f"PRAGMA {pragma}")
            conn.execute("BEGIN")  # one transaction (executescript would commit: run the DDL one by one)
            for ddl in filter(str.strip, SCHEMA.split(";")):
                conn.execute(ddl)
            clean_keys = world.write_clean(conn)
            cases = []
            if messy:
                scatter(conn, world, clean_keys, messy_share)
                cases = plant_cases(conn, world)
            conn.execute("COMMIT")
        finally:
            conn.close()
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return cases


# ---------------------------------------------------------------- CLI


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="agent-migration-sample", description="Write a deterministic sample db.sqlite with messy rows."
    )
    parser.add_argument(
        "path",
        nargs="?",
        default=os.environ.get("SQLITE_PATH", "db.sqlite"),
        help="the file to create (default $SQLITE_PATH, else ./db.sqlite)",
    )
    parser.add_argument(
        "--if-missing", action="store_true", help="leave an existing file alone and exit 0 (for first runs)"
    )
    parser.add_argument("--scale", choices=SCALES, default="small", help="row counts (default small)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--clean", action="store_true", help="clean rows only, no messy cases or scatter")
    parser.add_argument("--force", action="store_true", help="overwrite an existing file")
    parser.add_argument(
        "--messy-share", type=float, default=MESSY_SHARE, help="share of clean rows made messy"
    )
    for name, what in COUNT_OF.items():
        parser.add_argument(f"--{what}", type=_count, help=f"rows of {name} (overrides the scale)")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed the message naming the option
        return int(exc.code or 0)
    if args.if_missing and Path(args.path).exists():
        print(f"agent-migration-sample: using the existing source {args.path}")
        return 0
    started = time.perf_counter()
    try:
        cases = write_sample(
            args.path,
            scale=args.scale,
            seed=args.seed,
            messy=not args.clean,
            overwrite=args.force,
            messy_share=args.messy_share,
            **{what: getattr(args, what) for what in COUNT_OF.values()},
        )
    except FileExistsError:
        print(
            f"agent-migration-sample: {args.path} already exists (use --force to overwrite)", file=sys.stderr
        )
        return 2
    except (OSError, sqlite3.Error) as exc:
        print(f"agent-migration-sample: cannot write {args.path}: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"agent-migration-sample: {exc}", file=sys.stderr)
        return 2
    with sqlite3.connect(f"file:{Path(args.path).resolve()}?mode=ro", uri=True) as conn:
        rows = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in COLUMNS}
    conn.close()
    messy = (
        "clean"
        if args.clean
        else f"{len(cases)} messy cases + {args.messy_share:.0%} of clean rows scattered"
    )
    print(
        f"wrote {args.path} (scale {args.scale}, seed {args.seed}): "
        + ", ".join(f"{t} {n:,}" for t, n in rows.items())
        + f" rows; {messy}; {time.perf_counter() - started:.1f}s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
