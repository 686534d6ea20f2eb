"""The one declarative description of every table: source columns, target columns and types, rules, keys.

Everything else is driven by these specs: the target DDL (`postgres/ddl.py`), reading the source
(`source/sqlite_read.py`), the row rules (`core/rules.py`, `core/cleaning.py`), the COPY and merge
(`postgres/copy.py`, `postgres/merge.py`), and the checks (`postgres/audit.py`, `validation/`).
Adding a column is one `Col(...)` line here.

The target mirrors the app team's plan (`DATABASE_MIGRATION_PLAN.md`) exactly: names, types, defaults,
CHECKs, foreign keys with their ON DELETE actions, and index names.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent_migration.core import rules as r

NOW = "CURRENT_TIMESTAMP"


@dataclass(frozen=True)
class Col:
    """One target column, and the source column (if any) it is migrated from by `rule`."""

    name: str
    sql_type: str
    source: str | None = None
    rule: r.Rule | None = None
    not_null: bool = False
    default: str | None = None
    unique: bool = False
    primary_key: bool = False
    references: str | None = None  # "users(id)"
    on_delete: str | None = None  # "CASCADE" | "SET NULL"
    derived_from: tuple[str, ...] = ()  # "asset.column" this column is computed from (lineage)

    @property
    def check_sql(self) -> str | None:
        return self.rule.check_sql(self.name) if self.rule else None

    @property
    def is_serial(self) -> bool:
        return self.sql_type == "SERIAL"

    @property
    def pg_type(self) -> str:
        """The column's type as a value, e.g. for staging tables and casts (SERIAL is an INTEGER)."""
        return "INTEGER" if self.is_serial else self.sql_type


@dataclass(frozen=True)
class Index:
    name: str
    columns: tuple[str, ...]
    using: str | None = None  # "GIN"


@dataclass(frozen=True)
class Table:
    """A target table; `source` names the SQLite table it is migrated from (None: derived or created empty)."""

    name: str
    columns: tuple[Col, ...]
    indexes: tuple[Index, ...] = ()
    source: str | None = None
    key: str = "id"  # target key column used to merge re-syncs
    description: str = ""
    sums: tuple[str, ...] = ()  # columns whose totals must reconcile (source = loaded + rejected)

    @property
    def source_columns(self) -> list[str]:
        return [c.source for c in self.columns if c.source]

    @property
    def migrated(self) -> list[Col]:
        """Columns that come from the source through a rule."""
        return [c for c in self.columns if c.source]

    @property
    def key_col(self) -> Col:
        return self.col(self.key)

    def col(self, name: str) -> Col:
        return next(c for c in self.columns if c.name == name)

    @property
    def foreign_keys(self) -> list[Col]:
        return [c for c in self.columns if c.references]

    @property
    def parent_refs(self) -> list[tuple[Col, Table]]:
        """(column, parent) for each migrated column naming a row of another migrated table (users aside:
        usernames are remapped, never rejected for a missing parent)."""
        refs = []
        for col in self.migrated:
            parent = BY_NAME.get(col.references.split("(")[0]) if col.references else None
            if parent is not None and parent.source:
                refs.append((col, parent))
        return refs

    @property
    def serial(self) -> Col | None:
        return next((c for c in self.columns if c.is_serial), None)


def _ts(name: str, source: str | None = None) -> Col:
    return Col(name, "TIMESTAMP", source, r.Timestamp() if source else None, default=NOW)


def _int(name: str, source: str, default: str | None = "0", lo: int | None = 0, hi: int | None = None) -> Col:
    return Col(name, "INTEGER", source, r.Integer(lo, hi), default=default)


def _text(name: str, n: int | None, source: str, default: str | None = None, not_null: bool = False) -> Col:
    sql_type = f"VARCHAR({n})" if n else "TEXT"
    return Col(name, sql_type, source, r.Text(n, required=not_null), not_null=not_null, default=default)


def _user_ref(name: str, source: str, on_delete: str | None, **kw) -> Col:
    return Col(name, "INTEGER", source, r.Username(**kw), references="users(id)", on_delete=on_delete)


def _id(source: str | None) -> Col:
    return Col(
        "id", "SERIAL", source, r.Integer(None, None, required=True) if source else None, primary_key=True
    )


USERS = Table(
    "users",
    (
        Col("id", "SERIAL", primary_key=True, derived_from=("derived_users.id",)),
        Col("username", "VARCHAR(255)", not_null=True, unique=True, derived_from=("derived_users.username",)),
        Col("email", "VARCHAR(255)", unique=True),
        _ts("created_at"),
        _ts("updated_at"),
    ),
    (Index("idx_users_username", ("username",)),),
    description="One row per distinct username referenced anywhere in the source (rejected rows included).",
)

AGENTS = Table(
    "agents",
    (
        _id("id"),
        _text("name", 255, "name", not_null=True),
        _user_ref("owner_id", "owner", None),
        Col("traits", "JSONB", "traits", r.Json(empty="{}"), not_null=True, default="'{}'"),
        _int("energy", "energy", default="100", hi=100),
        _int("xp", "xp"),
        _int("gene", "gene"),
        _text("rarity", 50, "rarity", default="'common'"),
        Col("rare_trait", "JSONB", "rareTrait", r.Json(empty=None)),
        _int("power", "power"),
        Col("for_sale", "BOOLEAN", "forSale", r.Boolean(), default="FALSE"),
        _int("price", "price"),
        _ts("created_at", "created_at"),
        _ts("updated_at", "updated_at"),
    ),
    (
        Index("idx_agents_owner", ("owner_id",)),
        Index("idx_agents_for_sale", ("for_sale",)),
        Index("idx_agents_rarity", ("rarity",)),
        Index("idx_agents_traits", ("traits",), "GIN"),
    ),
    source="agents",
    description="Agents with their SQLite ids kept; owner text remapped to users.id.",
)

USER_BALANCE = Table(
    "user_balance",
    (
        Col(
            "user_id",
            "INTEGER",
            "user_id",
            r.Username(required=True),
            primary_key=True,
            references="users(id)",
            on_delete="CASCADE",
        ),
        _int("coins", "coins"),
        _ts("updated_at", "updated_at"),
    ),
    (Index("idx_user_balance_user", ("user_id",)),),
    source="user_balance",
    key="user_id",
    sums=("coins",),
    description="Coin balances keyed by users.id (the source keys them by username).",
)

PAYMENTS = Table(
    "payments",
    (
        _id("id"),
        _user_ref("user_id", "user_id", "SET NULL"),
        Col("amount", "DECIMAL(10, 2)", "amount", r.Money(10, 2), not_null=True),
        _text("currency", 10, "currency", default="'USD'"),
        _text("status", 50, "status", default="'pending'"),
        _text("payment_method", 50, "payment_method"),
        _text("transaction_id", 255, "transaction_id"),
        _text("stripe_session_id", 255, "stripe_session_id"),
        _text("stripe_payment_intent_id", 255, "stripe_payment_intent_id"),
        _int("coins", "coins"),
        _ts("created_at", "created_at"),
        _ts("updated_at", "updated_at"),
    ),
    (
        Index("idx_payments_user", ("user_id",)),
        Index("idx_payments_status", ("status",)),
        Index("idx_payments_stripe_session", ("stripe_session_id",)),
        Index("idx_payments_created", ("created_at",)),
    ),
    source="payments",
    sums=("amount",),
    description="Payments with their SQLite ids kept; REAL amounts become exact DECIMAL(10,2) cents.",
)

CHAT_MESSAGES = Table(
    "chat_messages",
    (
        _id("id"),
        Col(
            "agent_id",
            "INTEGER",
            "agent_id",
            r.Integer(None, None),
            references="agents(id)",
            on_delete="CASCADE",
        ),
        _user_ref("user_id", "user_id", "SET NULL"),
        Col("message", "TEXT", "message", r.Text(None, required=True), not_null=True),
        Col("role", "VARCHAR(50)", "role", r.OneOf(("user", "assistant", "system"), 50), not_null=True),
        _ts("created_at", "created_at"),
    ),
    (
        Index("idx_chat_agent", ("agent_id",)),
        Index("idx_chat_user", ("user_id",)),
        Index("idx_chat_created", ("created_at",)),
    ),
    source="chat_messages",
    description="Chat messages with their SQLite ids kept, pointing at the same agents as in SQLite.",
)


def _agent_ref(name: str) -> Col:
    return Col(name, "INTEGER", references="agents(id)", on_delete="SET NULL")


BATTLES = Table(
    "battles",
    (
        _id(None),
        _agent_ref("agent_a_id"),
        _agent_ref("agent_b_id"),
        _agent_ref("winner_id"),
        Col("result", "JSONB"),
        _ts("created_at"),
    ),
    (
        Index("idx_battles_agent_a", ("agent_a_id",)),
        Index("idx_battles_agent_b", ("agent_b_id",)),
        Index("idx_battles_winner", ("winner_id",)),
    ),
    description="Battle history: new in PostgreSQL, created empty.",
)

MARKETPLACE_LISTINGS = Table(
    "marketplace_listings",
    (
        _id(None),
        Col("agent_id", "INTEGER", references="agents(id)", on_delete="CASCADE", derived_from=("agents.id",)),
        Col(
            "seller_id",
            "INTEGER",
            references="users(id)",
            on_delete="SET NULL",
            derived_from=("agents.owner_id",),
        ),
        Col("price", "INTEGER", rule=r.Integer(0, None), not_null=True, derived_from=("agents.price",)),
        Col(
            "status",
            "VARCHAR(50)",
            rule=r.OneOf(("active", "sold", "cancelled"), 50, required=False),
            default="'active'",
            derived_from=("agents.for_sale",),
        ),
        _ts("created_at"),
        _ts("updated_at"),
    ),
    (
        Index("idx_listings_agent", ("agent_id",)),
        Index("idx_listings_seller", ("seller_id",)),
        Index("idx_listings_status", ("status",)),
    ),
    description="Derived: one active listing per migrated agent that is for sale.",
)

# In the plan's order, which is also parent-before-child order for foreign keys.
TARGET_TABLES: tuple[Table, ...] = (
    USERS,
    AGENTS,
    USER_BALANCE,
    PAYMENTS,
    CHAT_MESSAGES,
    BATTLES,
    MARKETPLACE_LISTINGS,
)
SOURCE_TABLES: tuple[Table, ...] = tuple(t for t in TARGET_TABLES if t.source)
BY_NAME = {t.name: t for t in TARGET_TABLES}
BY_SOURCE = {t.source: t for t in SOURCE_TABLES}
