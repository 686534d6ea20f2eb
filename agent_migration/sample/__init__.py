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
  (100k agents, 20k balances, 50k payments, 1M chat messages), large (4x medium) and xlarge (10x medium).

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

The reject-heavy variant (`write_reject_heavy(src, dst)`, for the benchmark): a copy of a source with
every agent's `gene` moved above PostgreSQL's INTEGER range, so the migration rejects every agent and, in
turn, every chat message of those agents.

Modules: `catalogue` (scales, schema, columns, keys and the messy cases), `world` (clean rows), `messy`
(planting and scattering), `write` (the files), `cli` (the command).
"""

from agent_migration.sample.catalogue import (
    _BOOLS,
    _DT,
    _NULLABLE,
    AGENTS,
    BALANCES,
    CASES,
    CHATS,
    COLUMNS,
    COUNT_OF,
    KEYS,
    LOAD,
    MESSY_SHARE,
    PAYMENTS,
    REJECT,
    SCALES,
    SCATTER,
    SCHEMA,
    AgentRef,
    BadText,
    MessyCase,
    Plant,
)
from agent_migration.sample.cli import main
from agent_migration.sample.messy import plant_cases, scatter
from agent_migration.sample.world import CHUNK, REALISTIC_USERS, T0, _Stamp, _World
from agent_migration.sample.write import REJECT_GENE_OFFSET, resolve_counts, write_reject_heavy, write_sample

__all__ = [
    "AGENTS",
    "BALANCES",
    "CASES",
    "CHATS",
    "CHUNK",
    "COLUMNS",
    "COUNT_OF",
    "KEYS",
    "LOAD",
    "MESSY_SHARE",
    "PAYMENTS",
    "REALISTIC_USERS",
    "REJECT",
    "REJECT_GENE_OFFSET",
    "SCALES",
    "SCATTER",
    "SCHEMA",
    "T0",
    "AgentRef",
    "BadText",
    "MessyCase",
    "Plant",
    "_BOOLS",
    "_DT",
    "_NULLABLE",
    "_Stamp",
    "_World",
    "main",
    "plant_cases",
    "resolve_counts",
    "scatter",
    "write_reject_heavy",
    "write_sample",
]
