"""agent_migration: the AI Breeding app's SQLite database -> PostgreSQL, as Dagster assets."""

from agent_migration.definitions import defs

__all__ = ["defs"]
