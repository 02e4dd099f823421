"""Event-time windows per tenant: per-minute aggregates, summed over a rule's window.

Minute buckets cover the longest minute window of the rules plus the allowed lateness (at most
``MINUTE_RETENTION``); feedback (the one signal with a 24 h default window) also goes into hour
buckets kept for 25 h. Latencies go into log buckets (2 % wide), so a p95 is within 1 % of the
exact value. Each window length keeps a running total that moves a minute at a time: a rule
evaluation adds the minutes that entered the window and subtracts those that left, instead of
summing the whole window again.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from types import MappingProxyType
from typing import Any, NamedTuple

from schemas.events import Evaluation, Feedback, Guardrail, LlmCall, ToolCall

GAMMA = 1.02
_LOG_GAMMA = math.log(GAMMA)
MINUTE_RETENTION = 2 * 3600
HOUR_RETENTION = 25 * 3600
HOURLY_ABOVE = 2 * 3600  # windows longer than this are summed from hour buckets


_INDEXES = tuple(range(1024))  # shared ints: a histogram key costs no int object of its own


def latency_bucket(ms: float) -> int:
    """Log bucket of a latency: bucket i holds (GAMMA**(i-1), GAMMA**i]."""
    if ms <= 1:
        return 0
    index = math.ceil(math.log(ms) / _LOG_GAMMA)
    return _INDEXES[index] if index < 1024 else index


def bucket_value(index: int) -> float:
    """The value a bucket stands for (its midpoint in relative terms)."""
    return 1.0 if index <= 0 else 2 * GAMMA**index / (GAMMA + 1)


def quantile(histogram: dict[int, int], q: float, total: int | None = None) -> float | None:
    """The ``q`` quantile of a latency histogram (``total``: its count, when known)."""
    if total is None:
        total = sum(histogram.values())
    if total == 0:
        return None
    # the value at position floor(q * (total - 1)) of the sorted samples; walked from the top,
    # where a high quantile is reached after a few buckets
    above = total - 1 - math.floor(q * (total - 1))  # samples after that position
    seen = 0
    for index in sorted(histogram, reverse=True):
        seen += histogram[index]
        if seen > above:
            return bucket_value(index)
    return bucket_value(min(histogram))  # not reached: seen ends at total > above


LATENCY_METRICS = frozenset({"latency_p95_ms"})
SESSION_METRICS = frozenset({"max_session_calls", "cost_per_session_usd"})


class Needs(NamedTuple):
    """Which of the costly parts (latency histograms, per-session maps) a window keeps."""

    latencies: bool = True
    sessions: bool = True

    @classmethod
    def of(cls, metrics: Iterable[str]) -> Needs:
        names = set(metrics)
        return cls(bool(names & LATENCY_METRICS), bool(names & SESSION_METRICS))


ALL = Needs()


class Retention(NamedTuple):
    """Seconds of event time, behind a tenant's newest event, that its buckets keep."""

    minutes: float = MINUTE_RETENTION
    latencies: float = MINUTE_RETENTION  # latency histograms
    sessions: float = MINUTE_RETENTION  # per-session maps


LONGEST = Retention()


NONE: Any = MappingProxyType({})
"""The latencies and session maps of an aggregate that has none (most minutes of a quiet
tenant): one shared read-only mapping, replaced by a dict of its own on the first write."""


def _none() -> Any:
    return NONE


@dataclass(slots=True)
class MinuteAgg:
    """What one tenant did in one minute of event time; also the running total of a window
    of minutes, whose score sums are set when it is read (``TenantWindow.summary``)."""

    calls: int = 0
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_pico: int = 0
    latencies: dict[int, int] = field(default_factory=_none)
    faith_sum: float = 0.0
    faith_n: int = 0
    halluc_n: int = 0
    halluc_hits: int = 0
    injections: int = 0
    feedback_sum: float = 0.0
    feedback_n: int = 0
    session_calls: dict[str, int] = field(default_factory=_none)
    session_cost_sum: int = 0  # pico-USD of the LLM calls that name a session
    # a running total only: how many sessions have made n calls, and the greatest such n
    session_counts: dict[int, int] | None = None
    session_most: int = 0

    def measure(self, metric: str) -> tuple[float | None, int, dict[str, str]]:
        """(value, samples, labels) of a rule metric; value None when there is nothing to measure."""
        value, samples = MEASURES[metric](self)
        labels = LABELS.get(metric)
        return value, samples, labels(self) if labels else NO_LABELS


Measured = tuple[float | None, int]
NO_LABELS: dict[str, str] = {}


def _ratio(part: float, whole: float) -> float | None:
    return part / whole if whole else None


def _latency_p95(w: MinuteAgg) -> Measured:
    total = sum(w.latencies.values())
    return quantile(w.latencies, 0.95, total), total


def _cost_per_session(w: MinuteAgg) -> Measured:
    n = len(w.session_calls)
    return (w.session_cost_sum / 1e12 / n if n else None), n


def _busiest_session(w: MinuteAgg) -> dict[str, str]:
    most = w.session_most
    if not most:
        return NO_LABELS
    # a tie goes to the greatest id; looked for only when an alert changes state
    return {"session_id": max(s for s, n in w.session_calls.items() if n == most)}


MEASURES: dict[str, Callable[[MinuteAgg], Measured]] = {
    "spend_usd": lambda w: (w.cost_pico / 1e12, w.calls),
    "error_rate": lambda w: (_ratio(w.errors, w.calls), w.calls),
    "latency_p95_ms": _latency_p95,
    "faithfulness_mean": lambda w: (_ratio(w.faith_sum, w.faith_n), w.faith_n),
    "hallucination_rate": lambda w: (_ratio(w.halluc_hits, w.halluc_n), w.halluc_n),
    "injections_blocked": lambda w: (float(w.injections), w.injections),
    "max_session_calls": lambda w: (float(w.session_most), len(w.session_calls)),
    "cost_per_session_usd": _cost_per_session,
    "token_efficiency": lambda w: (_ratio(w.output_tokens, w.input_tokens), w.calls),
    "feedback_mean": lambda w: (_ratio(w.feedback_sum, w.feedback_n), w.feedback_n),
}
"""How each rule metric is read off a window's totals."""

LABELS: dict[str, Callable[[MinuteAgg], dict[str, str]]] = {
    "max_session_calls": _busiest_session,
}
"""The labels an alert of a metric carries, read off the window it fired or resolved in."""


def call_keys(event: LlmCall) -> tuple[int | None, str | None]:
    """The latency bucket and the session of an LLM call (None: it has none)."""
    latency, session = event.latency_ms, event.session_id
    # one string per session, not one per event: the minutes share it as their key
    return (
        latency_bucket(latency) if latency is not None else None,
        sys.intern(session) if session else None,
    )


def add_call(
    agg: MinuteAgg,
    event: LlmCall,
    cost_pico: int,
    bucket: int | None,
    session: str | None,
    needs: Needs,
) -> None:
    """Add an LLM call, its ``call_keys`` worked out once for every aggregate it joins."""
    agg.calls += 1
    agg.errors += event.status != "ok"
    agg.input_tokens += event.input_tokens
    agg.output_tokens += event.output_tokens
    agg.cost_pico += cost_pico
    if bucket is not None and needs.latencies:
        latencies = agg.latencies
        if latencies is NONE:
            latencies = agg.latencies = {}
        latencies[bucket] = latencies.get(bucket, 0) + 1
    if session is not None and needs.sessions:
        calls = agg.session_calls
        if calls is NONE:
            calls = agg.session_calls = {}
        n = calls[session] = calls.get(session, 0) + 1
        agg.session_cost_sum += cost_pico
        if agg.session_counts is not None:
            recount(agg, agg.session_counts, n - 1, n)


def add_other(agg: MinuteAgg, event: Any) -> None:
    """Add an event that is not an LLM call."""
    if isinstance(event, Evaluation):
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


def merge(total: MinuteAgg, agg: MinuteAgg, sign: int, needs: Needs) -> None:
    """Add (``sign`` 1) or take away (-1) one minute's counts; float sums are left alone (a
    summary sums them afresh, so taking away never leaves rounding residue)."""
    total.calls += sign * agg.calls
    total.errors += sign * agg.errors
    total.input_tokens += sign * agg.input_tokens
    total.output_tokens += sign * agg.output_tokens
    total.cost_pico += sign * agg.cost_pico
    total.faith_n += sign * agg.faith_n
    total.halluc_n += sign * agg.halluc_n
    total.halluc_hits += sign * agg.halluc_hits
    total.injections += sign * agg.injections
    total.feedback_n += sign * agg.feedback_n
    if needs.latencies:
        latencies = total.latencies
        for b, n in agg.latencies.items():
            left = latencies.get(b, 0) + sign * n
            if left:
                latencies[b] = left
            else:
                del latencies[b]
    if needs.sessions:
        total.session_cost_sum += sign * agg.session_cost_sum
        calls, counts = total.session_calls, total.session_counts
        for s, n in agg.session_calls.items():
            had = calls.get(s, 0)
            left = had + sign * n
            if left:
                calls[s] = left
            else:  # a session leaves the window with its last call, whatever it cost
                del calls[s]
            if counts is not None:
                recount(total, counts, had, left)


def recount(total: MinuteAgg, counts: dict[int, int], had: int, now: int) -> None:
    """A session of a running total went from ``had`` calls to ``now``: move it between the
    counts of sessions per number of calls, and keep the greatest number with a session."""
    if had:
        left = counts[had] - 1
        if left:
            counts[had] = left
        else:
            del counts[had]
    if now:
        counts[now] = counts.get(now, 0) + 1
    most = max(total.session_most, now)
    while most and most not in counts:  # the busiest session lost calls: step down
        most -= 1
    total.session_most = most


class Running:
    """The counts of the minutes ``lo``..``hi`` (inclusive) for one window length."""

    __slots__ = ("closed", "hi", "lo", "needs", "total")

    def __init__(self, lo: int, hi: int, needs: Needs, minutes: dict[int, MinuteAgg]) -> None:
        self.lo, self.hi, self.needs = lo, hi, needs
        self.total = MinuteAgg(
            latencies={}, session_calls={}, session_counts={} if needs.sessions else None
        )
        # (faithfulness, feedback) score sums of the minutes lo..hi-60, summed in minute order;
        # None: to be summed again (the run moved, or a late event joined one of them)
        self.closed: tuple[float, float] | None = None
        for minute in range(lo, hi + 60, 60):
            agg = minutes.get(minute)
            if agg is not None:
                merge(self.total, agg, 1, needs)

    def move(self, lo: int, hi: int, minutes: dict[int, MinuteAgg]) -> None:
        """Slide forward: take away the minutes before ``lo``, add those up to ``hi``."""
        for minute in range(self.lo, lo, 60):
            agg = minutes.get(minute)
            if agg is not None:
                merge(self.total, agg, -1, self.needs)
        for minute in range(self.hi + 60, hi + 60, 60):
            agg = minutes.get(minute)
            if agg is not None:
                merge(self.total, agg, 1, self.needs)
        self.lo, self.hi = lo, hi
        self.closed = None

    def float_sums(self, minutes: dict[int, MinuteAgg]) -> tuple[float, float]:
        """The faithfulness and feedback score sums of the minutes lo..hi, added in minute
        order (a running float total would keep rounding residue of what it took away)."""
        closed = self.closed
        if closed is None:
            faith = feedback = 0.0
            for minute in range(self.lo, self.hi, 60):
                agg = minutes.get(minute)
                if agg is not None:
                    faith += agg.faith_sum
                    feedback += agg.feedback_sum
            closed = self.closed = (faith, feedback)
        agg = minutes.get(self.hi)  # the open minute, read as it is now
        if agg is None:
            return closed
        return closed[0] + agg.faith_sum, closed[1] + agg.feedback_sum


class TenantWindow:
    """One tenant's recent event-time aggregates (in memory; rebuilt from ClickHouse on start)."""

    __slots__ = (
        "evaluated",
        "evicted",
        "hours",
        "index",
        "minutes",
        "offset",
        "runs",
        "watermark",
    )

    def __init__(self) -> None:
        self.minutes: dict[int, MinuteAgg] = {}
        self.hours: dict[int, list[float]] = {}  # hour -> [feedback_sum, feedback_n]
        self.runs: dict[float, Running] = {}  # window length -> its running total
        self.watermark = 0.0
        self.offset = -1  # position (Kafka offset, array element) of the last event aggregated
        self.index = -1
        self.evicted = 0  # minutes before this one are gone
        self.evaluated = 0.0  # event time of the last rule evaluation

    def bucket(self, minute: int) -> MinuteAgg:
        agg = self.minutes.get(minute)
        if agg is None:
            agg = self.minutes[minute] = MinuteAgg()
        return agg

    def add(self, event: Any, cost_pico: int, ts: float, needs: Needs = ALL) -> None:
        """Fold one accepted event (event time ``ts``, epoch seconds) into its minute (and
        hour) of event time, and into the running totals whose minutes hold it."""
        minute = int(ts) // 60 * 60
        if isinstance(event, LlmCall):
            bucket, session = call_keys(event)
            add_call(self.bucket(minute), event, cost_pico, bucket, session, needs)
            for run in self.runs.values():
                if run.lo <= minute <= run.hi:
                    add_call(run.total, event, cost_pico, bucket, session, run.needs)
            if ts > self.watermark:
                self.watermark = ts
            return
        add_other(self.bucket(minute), event)
        for run in self.runs.values():
            if run.lo <= minute <= run.hi:
                add_other(run.total, event)
                if minute != run.hi:
                    run.closed = None
        if isinstance(event, Feedback):
            hour = self.hours.setdefault(int(ts) // 3600 * 3600, [0.0, 0])
            hour[0] += event.score
            hour[1] += 1
        if ts > self.watermark:
            self.watermark = ts

    def evict(self, keep: Retention = LONGEST) -> None:
        """Drop what no window can reach any more: minutes older than ``keep.minutes``, and
        the latency histograms and session maps of minutes older than the longest window
        that reads them."""
        oldest_minute = int(self.watermark - keep.minutes) // 60 * 60
        if oldest_minute <= self.evicted:
            return
        self.evicted = oldest_minute
        latency_cut = int(self.watermark - keep.latencies) // 60 * 60
        session_cut = int(self.watermark - keep.sessions) // 60 * 60
        gone = []
        for minute, agg in self.minutes.items():
            if minute < oldest_minute:
                gone.append(minute)
                continue
            if minute < latency_cut and agg.latencies:
                agg.latencies = NONE
            if minute < session_cut and agg.session_calls:
                agg.session_calls, agg.session_cost_sum = NONE, 0
        for minute in gone:
            del self.minutes[minute]
        # a total that still counts a trimmed minute could not take it away
        self.runs = {
            w: r
            for w, r in self.runs.items()
            if r.lo >= oldest_minute
            and (r.lo >= latency_cut or not r.needs.latencies)
            and (r.lo >= session_cut or not r.needs.sessions)
        }
        oldest_hour = self.watermark - HOUR_RETENTION
        for hour in [h for h in self.hours if h < oldest_hour]:
            del self.hours[hour]

    def summary(self, at: float, window: float, needs: Needs = ALL) -> MinuteAgg:
        """Totals of the buckets overlapping (at - window, at], read before the window changes
        again: for a window summed from minutes, its running total itself, score sums set."""
        if window > HOURLY_ABOVE:
            start = at - window
            fsum = fn = 0.0
            for hour, (s, n) in self.hours.items():
                if hour + 3600 > start and hour <= at:
                    fsum += s
                    fn += n
            return MinuteAgg(feedback_sum=fsum, feedback_n=int(fn))
        lo = int(at - window) // 60 * 60  # the minute holding the window's start
        hi = int(at) // 60 * 60
        minutes = self.minutes
        run = self.runs.get(window)
        if run is None or run.needs != needs or lo < run.lo or hi < run.hi or lo > run.hi:
            run = self.runs[window] = Running(lo, hi, needs, minutes)
        elif lo != run.lo or hi != run.hi:
            run.move(lo, hi, minutes)
        t = run.total
        if t.faith_n or t.feedback_n:
            t.faith_sum, t.feedback_sum = run.float_sums(minutes)
        else:
            t.faith_sum = t.feedback_sum = 0.0
        return t


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
        agg.latencies = {int(k): int(v) for k, v in zip(*lat, strict=True)} if lat else NONE
        # sums over a Nullable column come back NULL when no row matched
        agg.faith_sum, agg.faith_n = float(fsum or 0), int(fn)
        agg.halluc_n, agg.halluc_hits, agg.injections = int(hn), int(hh), int(inj)
        agg.feedback_sum, agg.feedback_n = float(fbsum or 0), int(fbn)
        w.watermark = max(w.watermark, int(latest_ms) / 1000)
    for tenant, minute, session, calls, cost in activity["sessions"]:
        agg = window(tenant).bucket(int(minute))
        if agg.session_calls is NONE:
            agg.session_calls = {}
        agg.session_calls[session] = int(calls)
        agg.session_cost_sum += int(Decimal(cost) * 10**12)
    for tenant, hour, fsum, fn in activity["hours"]:
        window(tenant).hours[int(hour)] = [float(fsum or 0), int(fn)]
    return windows
