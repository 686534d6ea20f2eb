"""The one error boundary of the Dagster layer: every asset, check and op body runs inside
`expected_failures`.

A failure the project expects becomes a `dg.Failure` whose description is one clean line, printed
without a trace (`runlog.CleanFailures`): the project's own refusals (`MigrationError` and its kinds: a
bad setting, the reject budget, a concurrent run, the cutover gate) and the PostgreSQL errors a user
causes (`USER_CAUSED`). Anything else, such as an SQL error in the project's own SQL or a TypeError,
passes through unchanged, so Dagster and the console keep its stack trace.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
import psycopg2
import psycopg2.errors

from agent_migration.core.errors import MigrationError
from agent_migration.postgres.connection import TargetDatabase, redact

# What a user's server, role or disk causes: unreachable or dropped (08xxx), disk full and out of
# memory (53xxx), lock and statement timeouts (55P03, 57014), shutdown (57P01): all OperationalError;
# a closed connection (InterfaceError); no privilege (42501), authentication (28xxx), a read-only
# server (25006).
USER_CAUSED = (
    psycopg2.OperationalError,
    psycopg2.InterfaceError,
    psycopg2.errors.InsufficientPrivilege,
    psycopg2.errors.InvalidAuthorizationSpecification,
    psycopg2.errors.InvalidPassword,
    psycopg2.errors.ReadOnlySqlTransaction,
)
TRANSIENT = (psycopg2.OperationalError, psycopg2.InterfaceError)


@contextmanager
def expected_failures(target: TargetDatabase | None = None) -> Iterator[None]:
    """Expected failures out as a clean `dg.Failure`; anything else unchanged, with its trace."""
    try:
        yield
    except MigrationError as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from None
    except USER_CAUSED as exc:
        raise fail(exc, target) from None


def fail(exc: Exception, target: TargetDatabase | None) -> dg.Failure:
    """A clear, password-free failure; transient connection errors stay retryable."""
    text, where = str(exc).strip() or type(exc).__name__, "the target"
    try:
        if target is not None:
            url = target.url()
            text, where = redact(text, url), target.describe(url)
        else:
            text = redact(text)
    except MigrationError:
        text = redact(text)
    # A dropped connection or a restarted server is worth another try; a statement timeout is not.
    retry = isinstance(exc, TRANSIENT) and not isinstance(exc, psycopg2.errors.QueryCanceled)
    return dg.Failure(description=f"PostgreSQL at {where}: {text}", allow_retries=retry)
