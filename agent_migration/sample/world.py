"""Clean rows: the users, the chat text and one generator per table, all from one seeded random stream."""

from __future__ import annotations

import random
import sqlite3
from dataclasses import dataclass
from datetime import date, timedelta

from agent_migration.sample.catalogue import AGENTS, BALANCES, CHATS, COLUMNS, PAYMENTS

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
# Words as people type them in chats: quoted, with a backslash, over several lines, with emoji. They make
# the hard case of every text path (a reject's JSON payload escapes each; a CSV export quotes them).
RICH = ('"really?"', "C:\\agents\\nova", "ok\nso", "done.\r\nnext", "tab\there", "it's", "🐉🔥", "\n\n-", "\\o/")
WORDS = tuple(_CHAT_TEXT.split()) + RICH
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
