"""Rules over all tenants (``scope: global``): today ``cost_spike_global``.

Each worker forwards, per batch and partition, the spend it applied per minute of event
time, with the highest offset it covers. One agent (on a one-partition topic) folds these
deltas, skipping offsets it has already folded (a replayed batch forwards them again).

Event time across tenants advances at the pace of the slowest partition: the global
watermark is the oldest of the partitions' newest minutes (a partition that forwarded
nothing for ``IDLE_SECONDS`` of wall time stops holding it back), and the rules are
evaluated at every minute boundary up to it, so a backlog replayed in large batches yields
the alerts that live traffic would have.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from schemas.outputs import Alert
from streams.durations import format_duration
from streams.pricing import PICO
from streams.rules import RuleSpec, RuleState, step

RETENTION = 2 * 3600
IDLE_SECONDS = 60.0
MAX_STEPS = 180  # minute boundaries evaluated at most per delta


@dataclass(slots=True)
class GlobalState:
    """Spend per minute across tenants, the offsets folded per partition, and rule states."""

    offsets: dict[int, int] = field(default_factory=dict)
    minutes: dict[int, int] = field(default_factory=dict)  # minute -> pico-USD
    rules: dict[str, RuleState] = field(default_factory=dict)
    newest: dict[int, int] = field(default_factory=dict)  # partition -> newest minute
    last_eval: int = 0
    seen: dict[int, float] = field(default_factory=dict)  # partition -> wall time (not persisted)

    def to_json(self) -> dict[str, Any]:
        return {
            "offsets": {str(p): o for p, o in self.offsets.items()},
            "minutes": {str(m): c for m, c in self.minutes.items()},
            "rules": {n: s.to_json() for n, s in self.rules.items()},
            "newest": {str(p): m for p, m in self.newest.items()},
            "last_eval": self.last_eval,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any] | None) -> GlobalState:
        if not raw:
            return cls()
        return cls(
            offsets={int(p): o for p, o in raw["offsets"].items()},
            minutes={int(m): c for m, c in raw["minutes"].items()},
            rules={n: RuleState.from_json(s) for n, s in raw["rules"].items()},
            newest={int(p): m for p, m in raw["newest"].items()},
            last_eval=raw["last_eval"],
        )

    def fold(self, partition: int, offset: int, minutes: dict[int, int], now: float) -> bool:
        """Add one forwarded delta (``now``: wall time); False when it was folded before."""
        if offset <= self.offsets.get(partition, -1):
            return False
        self.offsets[partition] = offset
        self.seen[partition] = now
        if minutes:
            self.newest[partition] = max(self.newest.get(partition, 0), max(minutes))
        for minute, pico in minutes.items():
            self.minutes[minute] = self.minutes.get(minute, 0) + pico
        newest = max(self.minutes, default=0)
        for minute in [m for m in self.minutes if m < newest - RETENTION]:
            del self.minutes[minute]
        return True

    def watermark(self, now: float) -> int:
        """The minute every active partition has reached (0 when none has forwarded)."""
        active = [
            m for p, m in self.newest.items() if now - self.seen.setdefault(p, now) <= IDLE_SECONDS
        ]
        return min(active, default=0)

    def evaluate(self, rules: list[RuleSpec], now: float) -> list[Alert]:
        """Evaluate the rules at each minute boundary the global watermark has passed."""
        watermark = self.watermark(now)
        if not watermark or watermark <= self.last_eval:
            return []
        first = self.last_eval + 60 if self.last_eval else min(self.minutes) + 60
        first = max(first, watermark - 60 * (MAX_STEPS - 1))
        alerts: list[Alert] = []
        for at in range(first, watermark + 1, 60):
            alerts += self._evaluate_at(rules, at)
        self.last_eval = watermark
        return alerts

    def _evaluate_at(self, rules: list[RuleSpec], at: int) -> list[Alert]:
        alerts = []
        for rule in rules:
            spend = sum(c for m, c in self.minutes.items() if m + 60 > at - rule.window and m < at)
            new, t = step(rule, self.rules.get(rule.name), spend / PICO, 0, at, "all")
            if new is None:
                self.rules.pop(rule.name, None)
            else:
                self.rules[rule.name] = new
            if t is not None:
                alerts.append(
                    Alert(
                        alert_id=t.alert_id,
                        rule=rule.name,
                        state=t.state,
                        severity=rule.severity,  # type: ignore[arg-type]
                        tenant_id=None,
                        value=t.value,
                        threshold=rule.threshold,
                        window=format_duration(rule.window),
                        started_at=datetime.fromtimestamp(t.started_at, UTC),
                        event_time=datetime.fromtimestamp(t.at, UTC),
                        runbook=rule.runbook,
                        labels={"scope": "global"},
                    )
                )
        return alerts
