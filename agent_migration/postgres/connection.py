"""The PostgreSQL target: its URL (or the embedded server), how it is described without a password, and
connections with timeouts set.

The Dagster resource `PostgresTarget` (in `resources.py`) is this class with its settings as fields; the
stages only ever see this class. Errors are `MigrationError`s that never contain a password.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import NullPool

from agent_migration.core.errors import MigrationError
from agent_migration.core.settings import TARGET, Setting, resolve
from agent_migration.postgres import embedded

_PASSWORD = re.compile(r"(://[^:/@]*:)[^@]*@")


def redact(text: str, url: URL | None = None) -> str:
    """`text` without any password (the URL's own, and any user:password@ form)."""
    if url is not None and url.password:
        text = text.replace(str(url.password), "***")
    return _PASSWORD.sub(r"\1***@", text)


class TargetDatabase:
    """What writing the target needs: the settings' fields (`database_url`, `embedded_dir`, `connections`,
    `statement_timeout_s`, `connect_timeout_s`, `lock_wait_s`, `max_reject_share`) come from the subclass."""

    def setting(self, field: str) -> Setting:
        """A field's value and where it came from (resource config, environment, default), read now."""
        return resolve(TARGET[field], getattr(self, field))

    @property
    def embedded_folder(self) -> str:
        return self.setting("embedded_dir").value

    def url(self) -> URL:
        given = self.setting("database_url")
        raw = given.value or embedded.ensure_database(self.embedded_folder)
        try:
            url = make_url(raw)
        except (ArgumentError, ValueError):
            raise MigrationError(
                "DATABASE_URL is malformed: expected postgresql://user:password@host:port/database "
                f"({given.where})."
            ) from None
        if url.get_backend_name() not in ("postgresql", "postgres"):
            raise MigrationError(
                f"DATABASE_URL must be a postgresql:// URL, not {url.drivername}:// ({given.where})."
            )
        # SQLAlchemy 2.1 maps plain postgresql:// to psycopg 3; this project ships psycopg2.
        return url.set(drivername="postgresql+psycopg2")

    def describe(self, url: URL | None = None) -> str:
        """Host, port and database of the target (of `url`, if given), never the password."""
        url = url or self.url()
        host = url.host or url.query.get("host") or "localhost"
        return f"{host}:{url.port or 5432}/{url.database}"

    @property
    def is_embedded(self) -> bool:
        return not self.setting("database_url").value

    @contextmanager
    def connect(self) -> Iterator:
        """A psycopg2 connection in a transaction, with statement timeouts set; committed by the caller."""
        url = self.url()
        engine = create_engine(
            url,
            poolclass=NullPool,
            connect_args={
                "connect_timeout": self.connect_timeout_s,
                "options": f"-c statement_timeout={self.statement_timeout_s * 1000} -c TimeZone=UTC",
                "application_name": "agent_migration",
            },
        )
        try:
            raw = engine.raw_connection()
        except Exception as exc:  # noqa: BLE001 - every driver error becomes one clear message
            detail = redact(str(getattr(exc, "orig", exc)).strip().splitlines()[0], url)
            raise MigrationError(f"Cannot connect to PostgreSQL at {self.describe(url)}: {detail}") from None
        conn = raw.dbapi_connection
        try:
            yield conn
        finally:
            raw.close()
            engine.dispose()
