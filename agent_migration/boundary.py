"""The error boundary of the Dagster layer: how a failure of the stages becomes a Dagster failure."""

from __future__ import annotations

import dagster as dg
import psycopg2

from agent_migration.core.errors import MigrationError
from agent_migration.postgres.connection import TargetDatabase, redact

TRANSIENT = (psycopg2.OperationalError, psycopg2.InterfaceError)


def fail(exc: Exception, target: TargetDatabase) -> dg.Failure:
    """A clear, password-free failure; transient connection errors stay retryable."""
    text, where = str(exc).strip() or type(exc).__name__, "the target"
    try:
        url = target.url()
        text, where = redact(text, url), target.describe(url)
    except MigrationError:
        text = redact(text)
    # A dropped connection or a restarted server is worth another try; a statement timeout is not.
    retry = isinstance(exc, TRANSIENT) and not isinstance(exc, psycopg2.errors.QueryCanceled)
    return dg.Failure(description=f"PostgreSQL at {where}: {text}", allow_retries=retry)
