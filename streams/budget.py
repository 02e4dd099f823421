"""Daily budgets per tenant (UTC days), in exact pico-USD.

Pure: ``BudgetState.add`` applies one call's cost and says which levels it crossed; the
monitor turns crossings into alerts and degrade commands.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

OK, WARNING, EXCEEDED = 0, 1, 2
LEVEL_NAMES = ("ok", "warning", "exceeded")
DAY = 86400


def day_of(ts: float) -> int:
    """Epoch seconds of the UTC day ``ts`` falls in."""
    return int(ts) // DAY * DAY


def day_name(day: int) -> str:
    return datetime.fromtimestamp(day, UTC).date().isoformat()


@dataclass(slots=True)
class BudgetState:
    """Spend of the tenant's current UTC day and the level reached."""

    day: int = 0
    spend_pico: int = 0
    level: int = OK

    def add(self, cost_pico: int, limit_pico: int, warn_at: float) -> list[int]:
        """Add a cost of the current day; the levels newly reached, in order."""
        self.spend_pico += cost_pico
        reached = (
            EXCEEDED
            if self.spend_pico >= limit_pico
            else WARNING
            if self.spend_pico >= limit_pico * warn_at
            else OK
        )
        if reached <= self.level:
            return []
        crossed = list(range(self.level + 1, reached + 1))
        self.level = reached
        return crossed

    def remaining_pico(self, limit_pico: int) -> int:
        return max(0, limit_pico - self.spend_pico)
