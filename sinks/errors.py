"""Errors of the ClickHouse sink."""

from schemas.errors import LlmtelError


class SinkError(LlmtelError):
    """A ClickHouse call failed.

    ``retriable`` is true when the same call may succeed later (server down, timeout); the
    worker then retries without acking its batch, so nothing is committed that is not stored.
    """

    retriable = True


class SinkConfigError(SinkError):
    """The DSN cannot be used (wrong scheme, unknown database): retrying will not help."""

    retriable = False


class StoreBusy(SinkError):
    """The embedded store is open in another process (chDB admits one)."""

    retriable = True
