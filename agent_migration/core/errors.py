"""The project's own failure: a message meant for the person running the migration."""


class MigrationError(Exception):
    """A failure with a message meant for the person running the migration (printed without a trace)."""
