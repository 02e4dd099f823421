"""Prometheus metrics of a worker, built on a registry argument (tests use a fresh one).

Two families of series:

- **What the events say** (``llm_requests_total``, ``llm_cost_usd_total``, ``llm_latency_ms``,
  ``active_sessions``, ``rag_faithfulness``, ...): the names deploy/prometheus/alerts.yml and
  the Grafana dashboard use. Computed from each batch's accepted events, each counted once
  per process by its partition and offset: records read again after a rebalance are not
  counted twice. A restarted worker starts its counters from 0, as Prometheus expects.
- **How the pipeline is doing** (``llmtel_*``): records consumed and rejected, batch sizes and
  durations, ClickHouse inserts, consumer lag, alerts and degrade commands published.

Each worker exports the events of the partitions it owns; Prometheus sums over workers.
"""

from __future__ import annotations

import heapq
import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Summary
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString

from streams.pipeline import BatchResult, FreshEvent
from streams.pricing import PICO

ALL_TENANTS = "_all"
"""The ``tenant_id`` label of every series when tenant labels are off."""
OTHER_TENANTS = "_other"
"""The ``tenant_id`` label of tenants beyond ``max_tenants``."""

LLM_LATENCY_BUCKETS = (100, 300, 500, 1000, 2000, 5000, 10000)
RAG_LATENCY_BUCKETS = (10, 50, 100, 200, 500, 1000)
BATCH_SIZE_BUCKETS = (1, 10, 100, 1000, 5000, 10000, 50000)
SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

TOKEN_TYPES = ("input", "output", "cached_input")


class _CostCollector:
    """``llm_cost_usd_total``: exact pico-USD integers inside, USD floats only when scraped.

    A prometheus Counter would add float increments batch after batch (0.1 + 0.2 is not 0.3
    in binary floating point); summing integers keeps the exported value the correctly rounded
    float of the exact total.
    """

    NAME = "llm_cost_usd"
    HELP = "Cost of LLM calls in USD (from the event, else the price table)"
    LABELS = ("agent_id", "model", "tenant_id")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pico: dict[tuple[str, str, str], int] = {}

    def add(self, totals: dict[tuple[str, str, str], int]) -> None:
        with self._lock:
            pico = self._pico
            for key, amount in totals.items():
                pico[key] = pico.get(key, 0) + amount

    def describe(self) -> Iterable[Metric]:
        return [CounterMetricFamily(self.NAME, self.HELP, labels=self.LABELS)]

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self.NAME, self.HELP, labels=self.LABELS)
        with self._lock:
            items = list(self._pico.items())
        for key, amount in items:
            family.add_metric(key, amount / PICO)  # int / int: the correctly rounded float
        yield family


class _BulkHistogram:
    """A histogram fed a batch of values per label set at once.

    ``Histogram.observe`` takes locks and walks the buckets in Python for every value; here a
    batch costs one ``bisect`` per value and one lock. Exported exactly as a prometheus
    Histogram would be (``_bucket`` with ``le``, ``_sum``, ``_count``).
    """

    def __init__(self, name: str, doc: str, buckets: Iterable[float], labels: Iterable[str]):
        self.name = name
        self.doc = doc
        self.bounds = [float(b) for b in buckets]
        self.labels = tuple(labels)
        self._les = [floatToGoString(b) for b in self.bounds] + ["+Inf"]
        self._lock = threading.Lock()
        self._data: dict[tuple[str, ...], tuple[list[int], list[float]]] = {}
        if not self.labels:  # like Histogram: an unlabelled one is exported from the start
            self._data[()] = ([0] * len(self._les), [0.0])

    def observe_many(self, key: tuple[str, ...], values: list[float]) -> None:
        bounds = self.bounds
        with self._lock:
            entry = self._data.get(key)
            if entry is None:
                entry = self._data[key] = ([0] * len(self._les), [0.0])
            counts, total = entry
            for value in values:
                counts[bisect_left(bounds, value)] += 1
            total[0] += sum(values)

    def describe(self) -> Iterable[Metric]:
        return [HistogramMetricFamily(self.name, self.doc, labels=self.labels)]

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.name, self.doc, labels=self.labels)
        with self._lock:
            items = [(key, list(counts), total[0]) for key, (counts, total) in self._data.items()]
        for key, counts, total in items:
            cumulative, buckets = 0, []
            for le, n in zip(self._les, counts, strict=True):
                cumulative += n
                buckets.append((le, cumulative))
            family.add_metric(key, buckets, total)
        yield family


class _SessionWindow:
    """Distinct ``(agent_id, session_id)`` pairs seen within a window of event time.

    One-second resolution: a session is active while its latest event's second is after the
    cutoff (the watermark minus the window). Each pair is held once, in the bucket of its latest
    second; buckets expire oldest first, so memory is one entry per active session, and at
    most ``max_sessions`` entries (the oldest are dropped first beyond that).
    """

    def __init__(self, max_sessions: int) -> None:
        self.max_sessions = max_sessions
        self._last: dict[tuple[str, str], int] = {}
        self._buckets: dict[int, set[tuple[str, str]]] = {}
        self._heap: list[int] = []
        self.counts: dict[str, int] = {}

    def add(self, agent: str, session: str, second: int, changed: set[str]) -> None:
        key = (agent, session)
        old = self._last.get(key)
        if old is None:
            self.counts[agent] = self.counts.get(agent, 0) + 1
            changed.add(agent)
        elif second <= old:
            return
        else:
            self._buckets[old].discard(key)
        self._last[key] = second
        bucket = self._buckets.get(second)
        if bucket is None:
            bucket = self._buckets[second] = set()
            heapq.heappush(self._heap, second)
        bucket.add(key)

    def expire(self, cutoff: int, changed: set[str]) -> None:
        """Drop sessions last seen at or before ``cutoff``, then any beyond the cap."""
        heap = self._heap
        while heap and (heap[0] <= cutoff or len(self._last) > self.max_sessions):
            for key in self._buckets.pop(heapq.heappop(heap)):
                del self._last[key]
                agent = key[0]
                self.counts[agent] -= 1
                changed.add(agent)


class _FaithfulnessWindow:
    """``rag_faithfulness``: mean ``faithfulness`` score within a window of event time.

    Absent (no sample at all) while the window holds no score, so that a worker that has seen
    no RAG evaluation does not report 0 and trip RAGQualityDegraded. Per-second buckets of
    (sum, count): memory grows with the window, not with the event rate.
    """

    NAME = "rag_faithfulness"
    HELP = "Mean faithfulness evaluation score over the last hour of event time"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buckets: dict[int, list[float]] = {}
        self._heap: list[int] = []

    def add(self, scores: list[tuple[int, float]]) -> None:
        with self._lock:
            for second, score in scores:
                bucket = self._buckets.get(second)
                if bucket is None:
                    bucket = self._buckets[second] = [0.0, 0]
                    heapq.heappush(self._heap, second)
                bucket[0] += score
                bucket[1] += 1

    def expire(self, cutoff: int) -> None:
        with self._lock:
            heap = self._heap
            while heap and heap[0] <= cutoff:
                del self._buckets[heapq.heappop(heap)]

    def mean(self) -> float | None:
        with self._lock:
            buckets = list(self._buckets.values())
        count = sum(b[1] for b in buckets)
        return sum(b[0] for b in buckets) / count if count else None

    def describe(self) -> Iterable[Metric]:
        return [GaugeMetricFamily(self.NAME, self.HELP)]

    def collect(self) -> Iterator[Metric]:
        mean = self.mean()
        if mean is not None:
            yield GaugeMetricFamily(self.NAME, self.HELP, value=mean)


class Metrics:
    """Every series the worker exports; the agents call the ``observe_*`` hooks.

    Everything is registered on ``registry`` (never the process-global one).

    High cardinality: a ``tenant_id`` label multiplies series by the number of tenants.

    - ``tenant_labels``: when False, every ``tenant_id`` label is ``"_all"`` (per-tenant
      figures then come from ClickHouse's ``rollups_1m``, which has no such limit).
    - ``max_tenants``: the first ``max_tenants`` distinct tenants a worker sees keep their own
      label; later ones share ``"_other"``. The tenants seen are remembered for the life of the
      process. ``daily_budget_remaining_usd`` of a shared label (``_all``, ``_other``) is the
      smallest remaining budget among the tenants sharing it.

    Time windows are in event time, to the second. The watermark is the latest event time seen
    (of each batch: every partition's last event and the events feeding a window), never ahead
    of the worker's clock, so one event stamped in the future cannot expire everything.
    ``active_sessions`` counts distinct ``session_id`` per agent over the last
    ``SESSION_WINDOW`` seconds, holding at most ``MAX_SESSIONS`` sessions (the least recently
    seen go first); ``rag_faithfulness`` is the mean ``faithfulness`` score over the last
    ``FAITHFULNESS_WINDOW`` seconds, absent while there is none. While no events arrive the
    watermark does not move, so both keep their last values.

    Events without an ``agent_id`` carry ``agent_id=""`` (as in ``rollups_1m``).
    """

    SESSION_WINDOW = 300
    MAX_SESSIONS = 200_000
    FAITHFULNESS_WINDOW = 3600

    def __init__(
        self, registry: CollectorRegistry, *, tenant_labels: bool = True, max_tenants: int = 1000
    ) -> None:
        if max_tenants < 0:
            raise ValueError(f"max_tenants must be 0 or more, got {max_tenants}")
        self.registry = registry
        self.tenant_labels = tenant_labels
        self.max_tenants = max_tenants
        self._tenants: set[str] = set()
        self._budgets: dict[str, dict[str, float]] = {}  # shared label -> tenant -> usd
        self._budget_min: dict[str, float] = {}  # shared label -> lowest of its tenants
        self._firing: dict[tuple[str, str], set[str]] = {}  # (rule, severity) -> alert ids
        self._degraded: dict[str, set[str]] = {}  # mode -> tenants
        self._clock: Callable[[], float] = time.time
        self._watermark: int | None = None  # epoch seconds
        self._counted: dict[int, int] = {}  # partition -> highest offset counted
        self._sessions = _SessionWindow(self.MAX_SESSIONS)
        self._children: dict[Any, dict[tuple[str, ...], Any]] = {}

        def counter(name: str, doc: str, labels: Iterable[str] = ()) -> Counter:
            return Counter(name, doc, list(labels), registry=registry)

        def gauge(name: str, doc: str, labels: Iterable[str] = ()) -> Gauge:
            return Gauge(name, doc, list(labels), registry=registry)

        def histogram(name: str, doc: str, buckets: Any, labels: Iterable[str] = ()) -> Histogram:
            return Histogram(name, doc, list(labels), buckets=buckets, registry=registry)

        # What the events say.
        self.llm_requests = counter(
            "llm_requests", "LLM calls", ("agent_id", "model", "tenant_id", "status")
        )
        self.llm_tokens = counter(
            "llm_tokens",
            "LLM tokens; input counts all prompt tokens, cached_input the part of them billed "
            "at the cached rate",
            ("agent_id", "model", "token_type"),
        )
        self.llm_cost = _CostCollector()
        registry.register(self.llm_cost)
        self.tool_executions = counter(
            "tool_executions", "Tool executions", ("tool_name", "agent_id", "status")
        )
        self.cache_hits = counter("cache_hits", "LLM calls answered from a cache", ("cache_type",))
        self.llm_latency = _BulkHistogram(
            "llm_latency_ms", "LLM call latency, ms", LLM_LATENCY_BUCKETS, ("model", "agent_id")
        )
        registry.register(self.llm_latency)
        self.rag_latency = _BulkHistogram(
            "rag_retrieval_latency_ms", "RAG retrieval latency, ms", RAG_LATENCY_BUCKETS, ()
        )
        registry.register(self.rag_latency)
        self.active_sessions = gauge(
            "active_sessions",
            f"Distinct sessions with an event in the last {self.SESSION_WINDOW} s of event time",
            ("agent_id",),
        )
        self.budget_remaining = gauge(
            "daily_budget_remaining_usd", "USD left of the tenant's daily budget", ("tenant_id",)
        )
        self.hallucinations = counter(
            "hallucinations", "hallucination evaluations scoring 0.5 or more"
        )
        self.evaluations = counter("llm_evaluations", "Evaluation scores received", ("name",))
        self.faithfulness = _FaithfulnessWindow()
        registry.register(self.faithfulness)
        self.injections_blocked = counter(
            "prompt_injections_blocked",
            "Prompt injections blocked (guardrail verdicts and blocked tool calls)",
        )
        self.feedback = Summary("user_feedback_score", "User feedback, 1 to 5", registry=registry)

        # How the pipeline is doing.
        self.events_consumed = counter(
            "llmtel_events_consumed", "Records consumed from the events topic"
        )
        self.events_rejected = counter(
            "llmtel_events_rejected", "Records or elements sent to the DLQ", ("reason",)
        )
        self.events_duplicate = counter(
            "llmtel_events_duplicate", "Resent events (an event_id already accepted) counted once"
        )
        self.alerts_published = counter(
            "llmtel_alerts_published", "Alert state changes published", ("rule", "state")
        )
        self.degrades_published = counter(
            "llmtel_degrades_published", "Degrade commands published", ("mode", "state")
        )
        self.alerts_firing = gauge(
            "llmtel_alerts_firing", "Alert episodes currently firing", ("rule", "severity")
        )
        self.degraded_tenants = gauge(
            "llmtel_degraded_tenants", "Tenants currently in a degraded mode", ("mode",)
        )
        self.insert_seconds = histogram(
            "llmtel_clickhouse_insert_seconds",
            "Duration of ClickHouse insert attempts, failed ones included",
            SECONDS_BUCKETS,
            ("table",),
        )
        self.insert_failures = counter(
            "llmtel_clickhouse_insert_failures", "Failed ClickHouse insert attempts", ("table",)
        )
        self.consumer_lag = gauge(
            "llmtel_consumer_lag", "Records behind the end of the events topic", ("partition",)
        )
        self.batch_size = histogram(
            "llmtel_batch_size", "Records per processed batch", BATCH_SIZE_BUCKETS
        )
        self.batch_seconds = histogram(
            "llmtel_batch_seconds", "Time to process and store one batch", SECONDS_BUCKETS
        )

    def _tenant(self, tenant_id: str) -> str:
        """The ``tenant_id`` label of a tenant (see the class docstring)."""
        if not self.tenant_labels:
            return ALL_TENANTS
        if tenant_id in self._tenants:
            return tenant_id
        if len(self._tenants) < self.max_tenants:
            self._tenants.add(tenant_id)
            return tenant_id
        return OTHER_TENANTS

    def _child(self, metric: Any, key: tuple[str, ...]) -> Any:
        """``metric.labels(*key)``, cached: ``labels()`` validates its arguments on every call."""
        children = self._children.get(metric)
        if children is None:
            children = self._children[metric] = {}
        child = children.get(key)
        if child is None:
            child = children[key] = metric.labels(*key)
        return child

    def observe_batch(self, result: BatchResult, seconds: float) -> None:
        """After a batch is stored: count what it consumed, accepted and rejected.

        ``result.accepted`` may hold events read again (after a rebalance, or a batch that
        failed half-way): an event is counted once per process, by its partition and offset.
        """
        self.events_consumed.inc(result.consumed)
        self.events_duplicate.inc(result.duplicates)
        self.batch_size.observe(result.consumed)
        self.batch_seconds.observe(seconds)
        reasons: dict[str, int] = {}
        for _, rejection in result.rejected:
            reasons[rejection.reason] = reasons.get(rejection.reason, 0) + 1
        for reason, n in reasons.items():
            self._child(self.events_rejected, (reason,)).inc(n)
        accepted = result.accepted
        counted = self._counted
        if counted and accepted:
            accepted = [f for f in accepted if f.offset > counted.get(f.partition, -1)]
        if accepted:
            self._observe_events(accepted)

    def _observe_events(self, accepted: list[FreshEvent]) -> None:
        # Fold the batch into plain dicts first, then one child lookup and one .inc() per label
        # set. LLM calls fold per (agent, model, tenant, status) into
        # [requests, input, output, cached input, cost pico, cache hits by type, latencies].
        llm: dict[tuple[str, str, str, str], list[Any]] = {}
        tools: dict[tuple[str, str, str], int] = {}
        rag_latency: list[float] = []
        evaluations: dict[str, int] = {}
        faithfulness: list[tuple[float, float]] = []
        feedback: list[float] = []
        hallucinations = 0
        injections = 0
        # a session's events share its tenant, hence a partition, and arrive in the order they
        # were produced: the last one stands for it
        sessions: dict[tuple[str, str], float] = {}
        last_of: dict[int, FreshEvent] = {}  # partition -> its last event in the batch

        for fresh in accepted:
            event: Any = fresh.item.event
            last_of[fresh.partition] = fresh
            kind = event.event_type
            agent = event.agent_id or ""
            if event.session_id:
                sessions[(agent, event.session_id)] = fresh.item.ts
            if kind == "llm_call":
                key = (agent, event.model, event.tenant_id, event.status)
                acc = llm.get(key)
                if acc is None:
                    acc = llm[key] = [0, 0, 0, 0, 0, None, []]
                acc[0] += 1
                acc[1] += event.input_tokens
                acc[2] += event.output_tokens
                acc[3] += event.cached_input_tokens
                acc[4] += fresh.item.cost_pico
                if event.cache != "none":
                    hits = acc[5]
                    if hits is None:
                        hits = acc[5] = {}
                    hits[event.cache] = hits.get(event.cache, 0) + 1
                if event.latency_ms is not None:
                    acc[6].append(event.latency_ms)
            elif kind == "tool_call":
                key3 = (event.tool_name, agent, event.status)
                tools[key3] = tools.get(key3, 0) + 1
                if event.status == "blocked_injection":
                    injections += 1
            elif kind == "rag_retrieval":
                if event.latency_ms is not None:
                    rag_latency.append(event.latency_ms)
            elif kind == "evaluation":
                name = event.name
                evaluations[name] = evaluations.get(name, 0) + 1
                if name == "hallucination":
                    if event.score >= 0.5:
                        hallucinations += 1
                elif name == "faithfulness":
                    faithfulness.append((fresh.item.ts, event.score))
            elif kind == "feedback":
                feedback.append(event.score)
            elif (
                kind == "guardrail"
                and event.kind == "prompt_injection"
                and event.action == "blocked"
            ):
                injections += 1

        if llm:
            self._observe_llm(llm)
        for (tool, agent, status), n in tools.items():
            self._child(self.tool_executions, (tool, agent, status)).inc(n)
        if rag_latency:
            self.rag_latency.observe_many((), rag_latency)
        for name, n in evaluations.items():
            self._child(self.evaluations, (name,)).inc(n)
        if hallucinations:
            self.hallucinations.inc(hallucinations)
        if injections:
            self.injections_blocked.inc(injections)
        for score in feedback:
            self.feedback.observe(score)

        session_seconds = [(agent, session, int(ts)) for (agent, session), ts in sessions.items()]
        faith_seconds = [(int(ts), score) for ts, score in faithfulness]
        counted = self._counted
        for partition, fresh in last_of.items():
            if fresh.offset > counted.get(partition, -1):
                counted[partition] = fresh.offset

        newest = max(int(f.item.ts) for f in last_of.values())
        for _, _, second in session_seconds:
            if second > newest:
                newest = second
        for second, _ in faith_seconds:
            if second > newest:
                newest = second
        self._observe_windows(newest, session_seconds, faith_seconds)

    def _observe_llm(self, llm: dict[tuple[str, str, str, str], list[Any]]) -> None:
        tokens: dict[tuple[str, str], list[int]] = {}
        cost: dict[tuple[str, str, str], int] = {}
        cache: dict[str, int] = {}
        latency: dict[tuple[str, str], list[float]] = {}
        tenant_of: dict[str, str] = {}
        requests: dict[tuple[str, str, str, str], int] = {}
        for (agent, model, tenant_id, status), acc in llm.items():
            tenant = tenant_of.get(tenant_id)
            if tenant is None:
                tenant = tenant_of[tenant_id] = self._tenant(tenant_id)
            key = (agent, model, tenant, status)
            requests[key] = requests.get(key, 0) + acc[0]
            counts = tokens.setdefault((agent, model), [0, 0, 0])
            counts[0] += acc[1]
            counts[1] += acc[2]
            counts[2] += acc[3]
            cost[(agent, model, tenant)] = cost.get((agent, model, tenant), 0) + acc[4]
            if acc[5]:
                for cache_type, n in acc[5].items():
                    cache[cache_type] = cache.get(cache_type, 0) + n
            if acc[6]:
                latency.setdefault((model, agent), []).extend(acc[6])
        for (agent, model, tenant, status), n in requests.items():
            self._child(self.llm_requests, (agent, model, tenant, status)).inc(n)
        for (agent, model), counts in tokens.items():
            for token_type, n in zip(TOKEN_TYPES, counts, strict=True):
                if n:
                    self._child(self.llm_tokens, (agent, model, token_type)).inc(n)
        self.llm_cost.add(cost)
        for cache_type, n in cache.items():
            self._child(self.cache_hits, (cache_type,)).inc(n)
        for key2, values in latency.items():
            self.llm_latency.observe_many(key2, values)

    def _observe_windows(
        self,
        newest: int,
        sessions: list[tuple[str, str, int]],
        faithfulness: list[tuple[int, float]],
    ) -> None:
        """Advance the event-time watermark; update active sessions and mean faithfulness."""
        newest = min(newest, int(self._clock()))
        if self._watermark is None or newest > self._watermark:
            self._watermark = newest
        watermark = self._watermark
        changed: set[str] = set()
        session_cutoff = watermark - self.SESSION_WINDOW
        window = self._sessions
        for agent, session, second in sessions:
            if second > session_cutoff:
                window.add(agent, session, second, changed)
        window.expire(session_cutoff, changed)
        for agent in changed:
            self._child(self.active_sessions, (agent,)).set(window.counts[agent])
        faith_cutoff = watermark - self.FAITHFULNESS_WINDOW
        self.faithfulness.add([(s, v) for s, v in faithfulness if s > faith_cutoff])
        self.faithfulness.expire(faith_cutoff)

    def observe_insert(self, table: str, seconds: float, ok: bool) -> None:
        """After each ClickHouse insert attempt."""
        self.insert_seconds.labels(table).observe(seconds)
        if not ok:
            self.insert_failures.labels(table).inc()

    def observe_alert(self, alert: Any) -> None:
        """After an alert (schemas.Alert) is published.

        ``llmtel_alerts_firing`` counts episodes (``alert_id``) between their firing and their
        resolved event: a repeated state change is not counted twice, and a resolved event for
        an episode this process never saw firing does not go below 0.
        """
        self.alerts_published.labels(alert.rule, alert.state).inc()
        key = (alert.rule, alert.severity)
        firing = self._firing.setdefault(key, set())
        if alert.state == "firing":
            firing.add(alert.alert_id)
        else:
            firing.discard(alert.alert_id)
        self.alerts_firing.labels(*key).set(len(firing))

    def observe_degrade(self, command: Any) -> None:
        """After a degrade command (schemas.DegradeCommand) is published.

        ``llmtel_degraded_tenants`` counts the tenants between ``enter`` and ``exit`` of each
        mode (a repeated command is not counted twice).
        """
        self.degrades_published.labels(command.mode, command.state).inc()
        tenants = self._degraded.setdefault(command.mode, set())
        if command.state == "enter":
            tenants.add(command.tenant_id)
        else:
            tenants.discard(command.tenant_id)
        self.degraded_tenants.labels(command.mode).set(len(tenants))

    def set_budget_remaining(self, tenant_id: str, usd: float) -> None:
        """When a tenant's daily budget state changes."""
        label = self._tenant(tenant_id)
        if label == tenant_id and label not in (ALL_TENANTS, OTHER_TENANTS):
            self.budget_remaining.labels(label).set(usd)
            return
        shared = self._budgets.setdefault(label, {})
        previous = shared.get(tenant_id)
        shared[tenant_id] = usd
        lowest = self._budget_min.get(label)
        if lowest is None or usd <= lowest:
            lowest = usd
        elif previous is not None and previous <= lowest:
            lowest = min(shared.values())  # the lowest tenant went up: look again
        self._budget_min[label] = lowest
        self.budget_remaining.labels(label).set(lowest)

    def set_lag(self, partition: int, lag: int) -> None:
        """Consumer lag of one partition of the events topic."""
        self.consumer_lag.labels(str(partition)).set(lag)
