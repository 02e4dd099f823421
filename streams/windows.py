"""Event-time windows per tenant: per-minute aggregates, summed over a rule's window.

Minute buckets cover the last ``MINUTE_RETENTION`` seconds of a tenant's event time; feedback
(the one signal with a 24 h default window) also goes into hour buckets kept for 25 h.
Latencies go into log buckets (2 % wide), so a p95 is within 1 % of the exact value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, NamedTuple

from schemas.events import Evaluation, Feedback, Guardrail, LlmCall, ToolCall

GAMMA = 1.02
_LOG_GAMMA = math.log(GAMMA)
MINUTE_RETENTION = 2 * 3600
HOUR_RETENTION = 25 * 3600
HOURLY_ABOVE = 2 * 3600  # windows longer than this are summed from hour buckets


def latency_bucket(ms: float) -> int:
    """Log bucket of a latency: bucket i holds (GAMMA**(i-1), GAMMA**i]."""
    return 0 if ms <= 1 else math.ceil(math.log(ms) / _LOG_GAMMA)


def bucket_value(index: int) -> float:
    """The value a bucket stands for (its midpoint in relative terms)."""
    return 1.0 if index <= 0 else 2 * GAMMA**index / (GAMMA + 1)


def quantile(histogram: dict[int, int], q: float) -> float | None:
    total = sum(histogram.values())
    if total == 0:
        return None
    rank = q * (total - 1)
    seen = 0
    for index in sorted(histogram):
        seen += histogram[index]
        if seen > rank:
            return bucket_value(index)
    return bucket_value(max(histogram))


@dataclass(slots=True)
class MinuteAgg:
    """What one tenant did in one minute of event time."""

    calls: int = 0
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_pico: int = 0
    latencies: dict[int, int] = field(default_factory=dict)
    faith_sum: float = 0.0
    faith_n: int = 0
    halluc_n: int = 0
    halluc_hits: int = 0
    injections: int = 0
    feedback_sum: float = 0.0
    feedback_n: int = 0
    session_calls: dict[str, int] = field(default_factory=dict)
    session_cost: dict[str, int] = field(default_factory=dict)


class WindowSummary(NamedTuple):
    """A window's totals, from which each rule reads its metric."""

    calls: int
    errors: int
    input_tokens: int
    output_tokens: int
    cost_pico: int
    latencies: dict[int, int]
    faith_sum: float
    faith_n: int
    halluc_n: int
    halluc_hits: int
    injections: int
    feedback_sum: float
    feedback_n: int
    session_calls: dict[str, int]
    session_cost: dict[str, int]

    def measure(self, metric: str) -> tuple[float | None, int, dict[str, str]]:
        """(value, samples, labels) of a rule metric; value None when there is nothing to measure."""
        if metric == "spend_usd":
            return self.cost_pico / 1e12, self.calls, {}
        if metric == "error_rate":
            return (self.errors / self.calls if self.calls else None), self.calls, {}
        if metric == "latency_p95_ms":
            n = sum(self.latencies.values())
            return quantile(self.latencies, 0.95), n, {}
        if metric == "faithfulness_mean":
            return (self.faith_sum / self.faith_n if self.faith_n else None), self.faith_n, {}
        if metric == "hallucination_rate":
            return (self.halluc_hits / self.halluc_n if self.halluc_n else None), self.halluc_n, {}
        if metric == "injections_blocked":
            return float(self.injections), self.injections, {}
        if metric == "max_session_calls":
            if not self.session_calls:
                return 0.0, 0, {}
            session, calls = max(self.session_calls.items(), key=lambda kv: (kv[1], kv[0]))
            return float(calls), len(self.session_calls), {"session_id": session}
        if metric == "cost_per_session_usd":
            n = len(self.session_cost)
            return (sum(self.session_cost.values()) / 1e12 / n if n else None), n, {}
        if metric == "token_efficiency":
            value = self.output_tokens / self.input_tokens if self.input_tokens else None
            return value, self.calls, {}
        if metric == "feedback_mean":
            return (
                (self.feedback_sum / self.feedback_n if self.feedback_n else None),
                self.feedback_n,
                {},
            )
        raise KeyError(metric)


class TenantWindow:
    """One tenant's recent event-time aggregates (in memory; rebuilt from ClickHouse on start)."""

    __slots__ = ("hours", "index", "minutes", "offset", "watermark")

    def __init__(self) -> None:
        self.minutes: dict[int, MinuteAgg] = {}
        self.hours: dict[int, list[float]] = {}  # hour -> [feedback_sum, feedback_n]
        self.watermark = 0.0
        self.offset = -1  # position (Kafka offset, array element) of the last event aggregated
        self.index = -1

    def bucket(self, minute: int) -> MinuteAgg:
        agg = self.minutes.get(minute)
        if agg is None:
            agg = self.minutes[minute] = MinuteAgg()
        return agg

    def add(self, event: Any, cost_pico: int) -> None:
        """Fold one accepted event into its minute (and hour) of event time."""
        ts = event.timestamp.timestamp()
        agg = self.bucket(int(ts) // 60 * 60)
        if isinstance(event, LlmCall):
            agg.calls += 1
            agg.errors += event.status != "ok"
            agg.input_tokens += event.input_tokens
            agg.output_tokens += event.output_tokens
            agg.cost_pico += cost_pico
            if event.latency_ms is not None:
                b = latency_bucket(event.latency_ms)
                agg.latencies[b] = agg.latencies.get(b, 0) + 1
            if event.session_id:
                agg.session_calls[event.session_id] = agg.session_calls.get(event.session_id, 0) + 1
                agg.session_cost[event.session_id] = (
                    agg.session_cost.get(event.session_id, 0) + cost_pico
                )
        elif isinstance(event, Evaluation):
            if event.name == "faithfulness":
                agg.faith_sum += event.score
                agg.faith_n += 1
            elif event.name == "hallucination":
                agg.halluc_n += 1
                agg.halluc_hits += event.score >= 0.5
        elif isinstance(event, Guardrail):
            agg.injections += event.kind == "prompt_injection" and event.action == "blocked"
        elif isinstance(event, ToolCall):
            agg.injections += event.status == "blocked_injection"
        elif isinstance(event, Feedback):
            agg.feedback_sum += event.score
            agg.feedback_n += 1
            hour = self.hours.setdefault(int(ts) // 3600 * 3600, [0.0, 0])
            hour[0] += event.score
            hour[1] += 1
        if ts > self.watermark:
            self.watermark = ts

    def evict(self) -> None:
        """Drop buckets no window can reach any more."""
        oldest_minute = self.watermark - MINUTE_RETENTION
        for minute in [m for m in self.minutes if m < oldest_minute]:
            del self.minutes[minute]
        oldest_hour = self.watermark - HOUR_RETENTION
        for hour in [h for h in self.hours if h < oldest_hour]:
            del self.hours[hour]

    def summary(self, at: float, window: float) -> WindowSummary:
        """Totals of the buckets overlapping (at - window, at]."""
        if window > HOURLY_ABOVE:
            start = at - window
            fsum = fn = 0.0
            for hour, (s, n) in self.hours.items():
                if hour + 3600 > start and hour <= at:
                    fsum += s
                    fn += n
            return WindowSummary(0, 0, 0, 0, 0, {}, 0.0, 0, 0, 0, 0, fsum, int(fn), {}, {})
        total = MinuteAgg()
        start = at - window
        first = (int(start) // 60) * 60  # the minute holding the window's start
        minutes = self.minutes
        for minute in range(first, int(at) + 1, 60):
            agg = minutes.get(minute)
            if agg is None or minute + 60 <= start:
                continue
            total.calls += agg.calls
            total.errors += agg.errors
            total.input_tokens += agg.input_tokens
            total.output_tokens += agg.output_tokens
            total.cost_pico += agg.cost_pico
            for b, n in agg.latencies.items():
                total.latencies[b] = total.latencies.get(b, 0) + n
            total.faith_sum += agg.faith_sum
            total.faith_n += agg.faith_n
            total.halluc_n += agg.halluc_n
            total.halluc_hits += agg.halluc_hits
            total.injections += agg.injections
            total.feedback_sum += agg.feedback_sum
            total.feedback_n += agg.feedback_n
            for s, n in agg.session_calls.items():
                total.session_calls[s] = total.session_calls.get(s, 0) + n
            for s, c in agg.session_cost.items():
                total.session_cost[s] = total.session_cost.get(s, 0) + c
        return WindowSummary(
            total.calls,
            total.errors,
            total.input_tokens,
            total.output_tokens,
            total.cost_pico,
            total.latencies,
            total.faith_sum,
            total.faith_n,
            total.halluc_n,
            total.halluc_hits,
            total.injections,
            total.feedback_sum,
            total.feedback_n,
            total.session_calls,
            total.session_cost,
        )


def windows_from_activity(activity: dict[str, list[tuple]], offset: int) -> dict[str, TenantWindow]:
    """Tenant windows rebuilt from ``ClickHouseSink.recent_activity`` rows.

    ``offset`` is the highest Kafka offset those rows hold: later events are added as usual.
    """
    windows: dict[str, TenantWindow] = {}

    def window(tenant: str) -> TenantWindow:
        w = windows.get(tenant)
        if w is None:
            w = windows[tenant] = TenantWindow()
            w.offset, w.index = offset, 2**31  # every element of that record is in the rows
        return w

    for row in activity["minutes"]:
        (
            tenant,
            minute,
            calls,
            errors,
            tin,
            tout,
            cost,
            lat,
            fsum,
            fn,
            hn,
            hh,
            inj,
            fbsum,
            fbn,
            latest_ms,
        ) = row
        w = window(tenant)
        agg = w.bucket(int(minute))
        agg.calls, agg.errors, agg.input_tokens, agg.output_tokens = (
            int(calls),
            int(errors),
            int(tin),
            int(tout),
        )
        agg.cost_pico = int(Decimal(cost) * 10**12)
        agg.latencies = {int(k): int(v) for k, v in zip(*lat, strict=True)} if lat else {}
        # sums over a Nullable column come back NULL when no row matched
        agg.faith_sum, agg.faith_n = float(fsum or 0), int(fn)
        agg.halluc_n, agg.halluc_hits, agg.injections = int(hn), int(hh), int(inj)
        agg.feedback_sum, agg.feedback_n = float(fbsum or 0), int(fbn)
        w.watermark = max(w.watermark, int(latest_ms) / 1000)
    for tenant, minute, session, calls, cost in activity["sessions"]:
        agg = window(tenant).bucket(int(minute))
        agg.session_calls[session] = int(calls)
        agg.session_cost[session] = int(Decimal(cost) * 10**12)
    for tenant, hour, fsum, fn in activity["hours"]:
        window(tenant).hours[int(hour)] = [float(fsum or 0), int(fn)]
    return windows
