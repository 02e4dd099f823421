"""Durations as operators write them: ``30s``, ``5m``, ``1h``, ``1d``."""

from __future__ import annotations

import re

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")


def parse_duration(value: object) -> float:
    """Seconds of a duration string (or a number of seconds); raises ValueError."""
    if isinstance(value, bool):
        raise ValueError("must be a duration like 30s, 5m, 1h or 1d")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("must not be negative")
        return float(value)
    match = _PATTERN.match(str(value))
    if not match:
        raise ValueError(f"{value!r} is not a duration like 30s, 5m, 1h or 1d")
    return float(match.group(1)) * _UNITS[match.group(2)]


def format_duration(seconds: float) -> str:
    """The shortest of ``1d``, ``2h``, ``5m``, ``30s`` that is exact."""
    for unit in ("d", "h", "m"):
        size = _UNITS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
