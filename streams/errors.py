"""Errors of the streams package (see ``schemas.errors`` for the hierarchy)."""

from schemas.errors import LlmtelError


class ConfigError(LlmtelError):
    """Settings or policy are invalid; raised at start with the field and the reason."""
