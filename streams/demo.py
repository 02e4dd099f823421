"""``llmtel demo``: a minute of realistic traffic from a few tenants, with incidents.

Six tenants send events through the SDK (``TelemetryProducer``), each on its own plan and
tier, and five of them get into trouble within about a minute of wall time:

- ``acme`` (pro, silver): healthy support-bot traffic; nothing fires.
- ``shop`` (starter, $5/day): spends fast on gpt-4o → ``budget_warning``, ``budget_exceeded``,
  degrade ``route_cheaper_model``.
- ``initech``: a hallucination surge. The rule needs 20+ scores over 1 h and 15 min of *event
  time* above 15 %, so this tenant replays the last 30 minutes: its events are stamped from
  30 min ago forward to now, in order (the worker accepts events up to 30 days old) →
  ``hallucination_rate_high``, degrade ``safe_answers``.
- ``hooli``: a prompt-injection attack, 80 blocked → ``prompt_injection_surge`` at once,
  degrade ``read_only_tools``.
- ``umbrella``: an agent stuck in a loop, 130 calls in one session → ``agent_loop``.
- ``globex`` (enterprise, gold): p95 latency regresses from ~400 ms to ~2 s against gold's
  800 ms → ``slo_latency`` at the SLA watchdog's next run, degrade ``route_cheaper_model``
  and ``reduce_top_k``.

Plans and tiers come from the policy: ``DEMO_POLICY`` (``llmtel demo --write-policy PATH``)
is ``deploy/policy.example.yaml`` with the watchdog every 10 s, so every incident shows within
the minute. With another policy the demo adapts its amounts and says what to expect.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from schemas.outputs import Alert, DegradeCommand
from streams.durations import format_duration
from streams.policy import Policy, load_policy
from streams.pricing import PICO, PriceTable

__all__ = [
    "DEMO_POLICY",
    "DemoResult",
    "add_arguments",
    "cmd_demo",
    "demo_policy",
    "main",
    "run_demo",
    "write_demo_policy",
]

DEMO_POLICY = """\
# llmtel demo policy: deploy/policy.example.yaml with the SLA watchdog every 10 s, so every
# incident of `llmtel demo` shows within a minute. Run the worker with it:
#   llmtel demo --write-policy demo-policy.yaml
#   LLMTEL_POLICY=demo-policy.yaml make run        (or: LLMTEL_POLICY=demo-policy.yaml llmtel up)
#   llmtel demo                                    (in a second terminal)
plans:                       # daily budgets in USD, reset at 00:00 UTC
  starter: {daily_budget_usd: 5}
  pro: {daily_budget_usd: 50}
  enterprise: {daily_budget_usd: 500, on_exceeded: [route_cheaper_model, reduce_top_k]}
default_plan: starter        # shop and umbrella are not listed: starter, tier bronze
tenants:
  acme: {plan: pro}
  globex: {plan: enterprise, tier: gold}
  initech: {plan: pro}
  hooli: {plan: pro}
budget:
  warn_at: 0.8
  on_exceeded: [route_cheaper_model]
allowed_lateness: 5m
rules:
  hallucination_rate_high: {threshold: 0.15, window: 1h, for: 15m, severity: critical, degrade: [safe_answers]}
  prompt_injection_surge: {threshold: 50, window: 1h, degrade: [read_only_tools]}
  token_efficiency_low: {enabled: false}
slo:
  interval: 10s              # the SLA watchdog; 5m in production
  evaluation_window: 30m
  exclude_provider_errors: true
  plan_tiers: {starter: bronze, pro: silver, enterprise: gold}
  degrade: {latency: [route_cheaper_model, reduce_top_k], json_valid: [strict_output], groundedness: [safe_answers], cost: [route_cheaper_model]}
"""

TICK = 0.25  # scenario seconds between two rounds of sending
FOLLOW_READY_TIMEOUT = 15.0  # seconds to wait for the alert subscriber's partitions


def demo_policy() -> Policy:
    """``DEMO_POLICY`` parsed."""
    import yaml

    return Policy.model_validate(yaml.safe_load(DEMO_POLICY))


def write_demo_policy(path: str | Path) -> Path:
    """Write ``DEMO_POLICY`` to ``path`` (for ``LLMTEL_POLICY``); return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(DEMO_POLICY, encoding="utf-8")
    return path


@dataclass(frozen=True)
class Expectation:
    """An alert the demo should cause: ``required`` when this policy makes it certain."""

    rule: str
    tenant: str
    required: bool = True
    note: str = ""


@dataclass
class DemoResult:
    """What ``run_demo`` sent and, when following the topics, what came back."""

    events: int = 0
    sent: int = 0
    failed: int = 0
    dropped: int = 0
    seconds: float = 0.0
    expected: list[Expectation] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    degrades: list[DegradeCommand] = field(default_factory=list)

    def seen(self, rule: str, tenant: str) -> bool:
        return any(
            a.rule == rule and a.tenant_id == tenant and a.state == "firing" for a in self.alerts
        )

    @property
    def missing(self) -> list[Expectation]:
        return [e for e in self.expected if e.required and not self.seen(e.rule, e.tenant)]


def _clamp(x: float) -> float:
    return min(1.0, max(0.0, x))


class _Scenario:
    """One tenant's traffic. ``emit(t, dt)`` sends what falls in scenario time [t, t + dt)."""

    tenant = ""
    start = 0.0  # scenario seconds

    def __init__(self, demo: _Demo) -> None:
        self.demo = demo
        self.rng = random.Random(f"{demo.seed}-{self.tenant}")
        self.plan, self.plan_spec = demo.policy.plan_of(self.tenant)
        self.tier, self.tier_spec = demo.policy.tier_of(self.tenant)
        self.counts: dict[str, int] = {}
        self.announced = False
        self.session = self.new_session()

    # -- helpers -----------------------------------------------------------------------
    def who(self) -> str:
        budget = self.plan_spec.daily_budget_usd
        return f"{self.tenant} ({self.plan} ${budget:g}/day, {self.tier})"

    def due(self, key: str, total: float, start: float, end: float, t: float) -> int:
        """How many of ``total`` events spread over [start, end) are due by ``t``."""
        progress = _clamp((t - start) / (end - start)) if end > start else 1.0
        target = math.ceil(total * progress - 1e-9)
        n = max(0, target - self.counts.get(key, 0))
        self.counts[key] = self.counts.get(key, 0) + n
        return n

    def steady(self, key: str, per_second: float, t: float) -> int:
        """Events at a steady rate from the scenario's start."""
        return self.due(key, per_second * max(0.0, t - self.start), 0.0, 0.0, t)

    def new_session(self) -> str:
        return f"{self.tenant}-s{self.rng.getrandbits(32):08x}"

    def latency(self, base: float, spread: float = 0.2) -> float:
        return round(max(20.0, base * self.rng.uniform(1 - spread, 1 + spread)), 1)

    def healthy_latency(self) -> float:
        """Well inside the tenant's tier target."""
        return self.latency(min(900.0, self.tier_spec.p95_latency_ms * 0.45))

    def now(self) -> datetime:
        return datetime.now(UTC)

    def call(self, model: str, input_tokens: int, output_tokens: int, **fields: Any) -> int:
        """One llm_call; returns its cost in pico-USD by the policy's price table."""
        cached = fields.pop("cached_input_tokens", 0)
        fields.setdefault("timestamp", self.now())
        fields.setdefault("session_id", self.session)
        fields.setdefault("trace_id", uuid.UUID(int=self.rng.getrandbits(128)).hex)
        self.demo.send(
            "llm_call",
            self.tenant,
            model,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cached_input_tokens=cached,
            status="ok",
            **fields,
        )
        return self.demo.prices.cost(model, input_tokens, cached, output_tokens)[0]

    def announce(self) -> str:
        raise NotImplementedError

    def expectations(self) -> list[Expectation]:
        return []

    def emit(self, t: float, dt: float) -> None:
        raise NotImplementedError


class _Healthy(_Scenario):
    """acme: a support bot with RAG, tools, evaluations and feedback; all within targets."""

    tenant = "acme"

    def announce(self) -> str:
        return f"{self.who()}: steady support-bot traffic on gpt-4o-mini → expect nothing"

    def emit(self, t: float, dt: float) -> None:
        for _ in range(self.steady("call", 2.0, t + dt)):
            if self.rng.random() < 0.25:
                self.session = self.new_session()
            self.demo.send(
                "rag_retrieval",
                self.tenant,
                chunks_retrieved=self.rng.randint(4, 8),
                top_score=round(self.rng.uniform(0.75, 0.95), 3),
                latency_ms=self.latency(40),
                session_id=self.session,
                agent_id="support-bot",
                timestamp=self.now(),
            )
            self.call(
                "gpt-4o-mini",
                self.rng.randint(1400, 2000),
                self.rng.randint(550, 800),
                cached_input_tokens=self.rng.choice([0, 0, 512]),
                latency_ms=self.healthy_latency(),
                json_valid=True,
                agent_id="support-bot",
                provider="openai",
            )
            if self.rng.random() < 0.3:
                self.demo.send(
                    "tool_call",
                    self.tenant,
                    "lookup_order",
                    status="ok",
                    latency_ms=self.latency(120),
                    agent_id="support-bot",
                    session_id=self.session,
                    timestamp=self.now(),
                )
            self.demo.send(
                "evaluation",
                self.tenant,
                "faithfulness",
                round(self.rng.uniform(0.86, 0.98), 3),
                session_id=self.session,
                timestamp=self.now(),
            )
            self.demo.send(
                "evaluation",
                self.tenant,
                "groundedness",
                round(self.rng.uniform(0.84, 0.96), 3),
                session_id=self.session,
                timestamp=self.now(),
            )
            if self.rng.random() < 0.2:
                self.demo.send(
                    "feedback",
                    self.tenant,
                    self.rng.choice([4, 4, 5, 5, 5]),
                    user_id=f"u-{self.rng.randint(1, 400)}",
                    timestamp=self.now(),
                )


class _Overspend(_Scenario):
    """shop: long-context gpt-4o calls until it is past its daily budget."""

    tenant = "shop"
    model = "gpt-4o"

    def __init__(self, demo: _Demo) -> None:
        super().__init__(demo)
        self.start = 0.05 * demo.duration
        self.end = 0.55 * demo.duration
        self.limit = float(self.plan_spec.daily_budget_usd)
        self.target = self.limit * 1.12
        self.spent_pico = 0
        price = demo.prices.lookup(self.model)
        typical = price.cost(6000, 1000, 2200) / PICO if price else 0.0
        self.per_call = typical
        self.capped = typical <= 0 or self.target / typical > 3000
        self.printed: set[str] = set()

    def announce(self) -> str:
        modes = ", ".join(self.demo.policy.exceeded_modes(self.plan_spec))
        if self.capped:
            return (
                f"{self.who()}: spending fast on {self.model}; its budget is too large for "
                "a one-minute demo → expect nothing"
            )
        extra = ""
        if self.per_call > self.tier_spec.cost_p95_usd:
            extra = f"; slo_cost too (${self.per_call:.3f} a call against {self.tier}'s ${self.tier_spec.cost_p95_usd:g})"
        return (
            f"{self.who()}: spending fast on {self.model} (≈${self.per_call:.3f} a call) → expect "
            f"budget_warning, budget_exceeded, degrade {modes}{extra}"
        )

    def expectations(self) -> list[Expectation]:
        if self.capped:
            return []
        out = [
            Expectation("budget_warning", self.tenant),
            Expectation("budget_exceeded", self.tenant),
        ]
        if self.per_call > self.tier_spec.cost_p95_usd:
            out.append(Expectation("slo_cost", self.tenant, required=False))
        return out

    def emit(self, t: float, dt: float) -> None:
        if self.capped or t + dt <= self.start:
            return
        goal = self.target * _clamp((t + dt - self.start) / (self.end - self.start))
        while self.spent_pico / PICO < goal:
            if self.counts.get("call", 0) % 4 == 0:
                self.session = self.new_session()
            self.counts["call"] = self.counts.get("call", 0) + 1
            self.demo.send(
                "rag_retrieval",
                self.tenant,
                chunks_retrieved=self.rng.randint(20, 40),
                top_score=round(self.rng.uniform(0.6, 0.9), 3),
                latency_ms=self.latency(60),
                session_id=self.session,
                agent_id="catalog-assistant",
                timestamp=self.now(),
            )
            self.spent_pico += self.call(
                self.model,
                self.rng.randint(5200, 6800),
                self.rng.randint(1900, 2500),
                cached_input_tokens=1000,
                latency_ms=self.healthy_latency(),
                agent_id="catalog-assistant",
                provider="openai",
            )
        spent = self.spent_pico / PICO
        for mark, name in (
            (self.limit * self.demo.policy.budget.warn_at, "warn"),
            (self.limit, "limit"),
        ):
            if spent >= mark and name not in self.printed:
                self.printed.add(name)
                self.demo.say(
                    t + dt,
                    f"{self.tenant}: ≈${spent:.2f} spent today of its ${self.limit:g} "
                    f"({spent / self.limit:.0%})",
                )


class _Hallucinations(_Scenario):
    """initech: a bad prompt release 30 minutes ago, replayed from then to now in event time."""

    tenant = "initech"

    def __init__(self, demo: _Demo) -> None:
        super().__init__(demo)
        self.start = 0.10 * demo.duration
        self.end = 0.70 * demo.duration
        self.rule = demo.rule("hallucination_rate_high")
        window = self.rule.window if self.rule else 3600.0
        hold = self.rule.for_ if self.rule else 900.0
        self.backdate = min(max(2 * hold, 1200.0), max(window - 300.0, 600.0))
        threshold = self.rule.threshold if self.rule else 0.15
        self.rate = min(0.9, max(0.3, 2 * threshold))
        self.evals = max(240, 6 * (self.rule.min_samples if self.rule else 20))
        self.latest: datetime | None = None

    def now(self) -> datetime:
        """Event time: ``backdate`` behind at the start, catching up with now at ``end``."""
        behind = self.backdate * (1 - _clamp((self.demo.t - self.start) / (self.end - self.start)))
        stamp = datetime.now(UTC) - timedelta(seconds=behind)
        if self.latest is not None and stamp < self.latest:
            stamp = self.latest  # never backwards: later events must not be "late"
        self.latest = stamp
        return stamp

    def announce(self) -> str:
        if self.rule is None:
            return f"{self.who()}: hallucination surge → expect nothing (hallucination_rate_high is disabled)"
        modes = ", ".join(self.rule.degrade) or "none"
        return (
            f"{self.who()}: hallucination surge ({self.rate:.0%} of answers) since a prompt change "
            f"{format_duration(self.backdate)} ago, replayed in event time from then to now → expect "
            f"hallucination_rate_high once {format_duration(self.rule.for_)} of event time is over "
            f"{self.rule.threshold:.0%}, degrade {modes}"
        )

    def expectations(self) -> list[Expectation]:
        return [Expectation("hallucination_rate_high", self.tenant)] if self.rule else []

    def emit(self, t: float, dt: float) -> None:
        if t + dt <= self.start:
            return
        if t < self.end:
            n = self.due("eval", self.evals, self.start, self.end, t + dt)
        else:  # caught up with now: a slower trickle at real time
            n = self.due("trickle", 1.5 * (t + dt - self.end), 0.0, 0.0, t + dt)
        for _ in range(n):
            if self.rng.random() < 0.3:
                self.session = self.new_session()
            self.call(
                "gpt-4o-mini",
                self.rng.randint(1500, 2200),
                self.rng.randint(600, 900),
                latency_ms=self.healthy_latency(),
                agent_id="research-assistant",
                provider="openai",
            )
            hallucinated = self.rng.random() < self.rate
            self.demo.send(
                "evaluation",
                self.tenant,
                "hallucination",
                1.0 if hallucinated else 0.0,
                label="hallucinated" if hallucinated else "supported",
                session_id=self.session,
                timestamp=self.now(),
            )
            self.demo.send(
                "evaluation",
                self.tenant,
                "faithfulness",
                round(self.rng.uniform(0.72, 0.88), 3),
                session_id=self.session,
                timestamp=self.now(),
            )


class _Injections(_Scenario):
    """hooli: ordinary traffic, then a burst of prompt injections blocked by its guardrails."""

    tenant = "hooli"

    def __init__(self, demo: _Demo) -> None:
        super().__init__(demo)
        self.attack_start = 0.25 * demo.duration
        self.attack_end = 0.45 * demo.duration
        self.rule = demo.rule("prompt_injection_surge")
        self.blocked = int(self.rule.threshold if self.rule else 50) + 30

    def announce(self) -> str:
        if self.rule is None:
            return f"{self.who()}: prompt-injection attack → expect nothing (prompt_injection_surge is disabled)"
        modes = ", ".join(self.rule.degrade) or "none"
        return (
            f"{self.who()}: prompt-injection attack, {self.blocked} blocked by its guardrails → "
            f"expect prompt_injection_surge (over {self.rule.threshold:g} in "
            f"{format_duration(self.rule.window)}), degrade {modes}"
        )

    def expectations(self) -> list[Expectation]:
        return [Expectation("prompt_injection_surge", self.tenant)] if self.rule else []

    def emit(self, t: float, dt: float) -> None:
        for _ in range(self.steady("call", 0.8, t + dt)):
            self.session = self.new_session()
            self.demo.send(
                "guardrail", self.tenant, "prompt_injection", "allowed", timestamp=self.now()
            )
            self.call(
                "gpt-4o-mini",
                self.rng.randint(900, 1400),
                self.rng.randint(350, 600),
                latency_ms=self.healthy_latency(),
                agent_id="email-agent",
                provider="openai",
            )
        if t + dt <= self.attack_start:
            return
        for i in range(
            self.due("attack", self.blocked, self.attack_start, self.attack_end, t + dt)
        ):
            session = f"{self.tenant}-attacker-{self.rng.randint(1, 6)}"
            if i % 7 == 6:  # an injected instruction caught at the tool boundary
                self.demo.send(
                    "tool_call",
                    self.tenant,
                    "send_email",
                    status="blocked_injection",
                    latency_ms=self.latency(5),
                    agent_id="email-agent",
                    session_id=session,
                    timestamp=self.now(),
                )
            else:
                self.demo.send(
                    "guardrail",
                    self.tenant,
                    "prompt_injection",
                    "blocked",
                    session_id=session,
                    timestamp=self.now(),
                )
            if self.rng.random() < 0.2:
                self.demo.send(
                    "guardrail", self.tenant, "prompt_injection", "flagged", timestamp=self.now()
                )


class _Loop(_Scenario):
    """umbrella: an agent that keeps calling the model and the same tool in one session."""

    tenant = "umbrella"

    def __init__(self, demo: _Demo) -> None:
        super().__init__(demo)
        self.loop_start = 0.35 * demo.duration
        self.loop_end = 0.65 * demo.duration
        self.rule = demo.rule("agent_loop")
        self.calls = int(self.rule.threshold if self.rule else 100) + 30
        self.loop_session = f"{self.tenant}-run-{self.rng.getrandbits(24):06x}"

    def announce(self) -> str:
        if self.rule is None:
            return f"{self.who()}: agent loop → expect nothing (agent_loop is disabled)"
        return (
            f"{self.who()}: planner agent stuck in a loop, {self.calls} calls in session "
            f"{self.loop_session} → expect agent_loop"
        )

    def expectations(self) -> list[Expectation]:
        return [Expectation("agent_loop", self.tenant)] if self.rule else []

    def emit(self, t: float, dt: float) -> None:
        for _ in range(self.steady("call", 0.5, t + dt)):
            self.session = self.new_session()
            self.call(
                "gpt-4o-mini",
                self.rng.randint(1000, 1600),
                self.rng.randint(400, 700),
                latency_ms=self.healthy_latency(),
                agent_id="planner",
                provider="openai",
            )
        if t + dt <= self.loop_start:
            return
        for _ in range(self.due("loop", self.calls, self.loop_start, self.loop_end, t + dt)):
            self.call(
                "gpt-4o-mini",
                self.rng.randint(1300, 1700),
                self.rng.randint(500, 650),
                latency_ms=self.healthy_latency(),
                agent_id="planner",
                provider="openai",
                session_id=self.loop_session,
            )
            self.demo.send(
                "tool_call",
                self.tenant,
                "search_web",
                status="ok",
                latency_ms=self.latency(300),
                agent_id="planner",
                session_id=self.loop_session,
                timestamp=self.now(),
            )


class _LatencyRegression(_Scenario):
    """globex: healthy, then p95 latency far over its tier's target."""

    tenant = "globex"

    def __init__(self, demo: _Demo) -> None:
        super().__init__(demo)
        self.regress_at = 0.45 * demo.duration
        self.target = self.tier_spec.p95_latency_ms
        self.slow = min(4000.0, self.target * 2.5)
        self.regressed = False
        self.interval = demo.policy.slo.interval

    def announce(self) -> str:
        return (
            f"{self.who()}: healthy at ≈{self.target * 0.45:.0f} ms; its p95 latency regresses at "
            f"t+{self.regress_at:.0f}s"
        )

    def expectations(self) -> list[Expectation]:
        soon = self.interval <= 30
        return [
            Expectation(
                "slo_latency",
                self.tenant,
                required=soon,
                note=""
                if soon
                else f"comes at the SLA watchdog's next run (every {format_duration(self.interval)})",
            )
        ]

    def emit(self, t: float, dt: float) -> None:
        if not self.regressed and t + dt > self.regress_at:
            self.regressed = True
            modes = ", ".join(self.demo.policy.slo.degrade.get("latency", [])) or "none"
            self.demo.say(
                self.regress_at,
                f"{self.who()}: p95 latency regresses to ≈{self.slow / 1000:.1f} s (target "
                f"{self.target:.0f} ms) → expect slo_latency at the SLA watchdog's next run "
                f"(every {format_duration(self.interval)}), degrade {modes}",
            )
        for _ in range(self.steady("call", 2.5, t + dt)):
            if self.rng.random() < 0.3:
                self.session = self.new_session()
            slow = self.regressed
            self.demo.send(
                "rag_retrieval",
                self.tenant,
                chunks_retrieved=self.rng.randint(3, 6),
                top_score=round(self.rng.uniform(0.8, 0.95), 3),
                latency_ms=self.latency(45),
                session_id=self.session,
                agent_id="analyst",
                timestamp=self.now(),
            )
            self.call(
                "gpt-4o",
                self.rng.randint(900, 1100),
                self.rng.randint(330, 380),
                cached_input_tokens=300,
                latency_ms=self.latency(self.slow, 0.1) if slow else self.healthy_latency(),
                json_valid=True,
                agent_id="analyst",
                provider="openai",
            )
            self.demo.send(
                "evaluation",
                self.tenant,
                "groundedness",
                round(self.rng.uniform(0.9, 0.97), 3),
                session_id=self.session,
                timestamp=self.now(),
            )


SCENARIOS = (_Healthy, _LatencyRegression, _Overspend, _Hallucinations, _Injections, _Loop)


class _Demo:
    """Runs the scenarios on one producer and prints the timeline."""

    def __init__(
        self,
        telemetry: Any,
        policy: Policy,
        duration: float,
        speed: float,
        seed: int,
        out: TextIO,
    ) -> None:
        self.telemetry = telemetry
        self.policy = policy
        self.prices = PriceTable.shipped({k: v.as_fields() for k, v in policy.prices.items()})
        self.duration = duration
        self.speed = speed
        self.seed = seed
        self.out = out
        self.t = 0.0
        self.events = 0
        self.lock = threading.Lock()
        self.rules = {r.name: r for r in policy.rule_specs()}

    def rule(self, name: str) -> Any:
        return self.rules.get(name)

    def say(self, t: float, text: str) -> None:
        with self.lock:
            self.out.write(f"{f't+{t:.0f}s':<6} {text}\n")
            self.out.flush()

    def send(self, kind: str, tenant: str, *args: Any, **fields: Any) -> None:
        method = getattr(self.telemetry, kind)
        method(tenant, *args, **fields)
        self.events += 1


def run_demo(
    bootstrap: str,
    *,
    speed: float = 1.0,
    duration: float = 60.0,
    out: TextIO = sys.stdout,
    seed: int = 7,
    topic: str = "llm.events",
    alerts_topic: str = "llm.alerts",
    degrade_topic: str = "llm.degrade",
    policy: Policy | None = None,
    follow: bool = True,
    tail: float = 30.0,
    dashboard_url: str | None = None,
    batch_max: int = 1,
) -> DemoResult:
    """Send ``duration`` scenario seconds of demo traffic to ``topic`` at ``bootstrap``.

    ``speed`` 2 runs it in half the wall time (the amounts stay the same). ``policy`` is the
    one the workers run (default: ``DEMO_POLICY``): it gives the tenants' plans, tiers and
    rule thresholds, so the demo sends enough to cross them. With ``follow``, the alert and
    degrade topics are followed and printed in the timeline; after the traffic, the demo
    waits up to ``tail`` seconds for the alerts it expects. ``batch_max`` is the SDK's
    events per record.
    """
    from streams.sdk import AlertSubscriber, TelemetryProducer

    if speed <= 0 or duration <= 0:
        raise ValueError("speed and duration must be positive")
    policy = policy or demo_policy()
    result = DemoResult()
    # One event per record: budgets and rule windows are applied per Kafka offset, and the
    # demo's amounts are meant to count event by event.
    telemetry = TelemetryProducer(bootstrap, topic=topic, batch_max=batch_max)
    demo = _Demo(telemetry, policy, duration, speed, seed, out)
    scenarios = [cls(demo) for cls in SCENARIOS]
    result.expected = [e for s in scenarios for e in s.expectations()]
    tenants = {s.tenant for s in scenarios}
    wall_start = time.monotonic()

    def elapsed() -> float:
        return (time.monotonic() - wall_start) * speed

    def on_alert(alert: Alert) -> None:
        result.alerts.append(alert)
        if alert.tenant_id in tenants or alert.tenant_id is None:
            arrow = "FIRING  " if alert.state == "firing" else "RESOLVED"
            demo.say(
                elapsed(),
                f"  {arrow} {alert.severity:<8} {alert.rule} tenant={alert.tenant_id} "
                f"value={alert.value:.4g} threshold={alert.threshold:.4g} ({alert.window})",
            )

    def on_degrade(command: DegradeCommand) -> None:
        result.degrades.append(command)
        if command.tenant_id in tenants:
            demo.say(
                elapsed(),
                f"  DEGRADE  {command.state} {command.mode} tenant={command.tenant_id} "
                f"reason={command.reason}: {command.recommendation}",
            )

    subscriber = None
    wall = duration / speed
    demo.say(
        0,
        f"llmtel demo: {len(scenarios)} tenants, {duration:g} s of traffic "
        f"({wall:g} s of wall time at speed {speed:g}) to {topic} at {bootstrap}",
    )
    if policy.slo.interval > 60:
        demo.say(
            0,
            f"note: the SLA watchdog runs every {format_duration(policy.slo.interval)} in this "
            "policy: SLO alerts come at its next run. For all of them within a minute, run the "
            "worker with the demo policy (llmtel demo --write-policy demo-policy.yaml; "
            "LLMTEL_POLICY=demo-policy.yaml llmtel up)",
        )
    try:
        if follow:
            subscriber = AlertSubscriber(
                bootstrap,
                alerts_topic=alerts_topic,
                degrade_topic=degrade_topic,
                on_alert=on_alert,
                on_degrade=on_degrade,
            ).start()
            if not subscriber.ready.wait(FOLLOW_READY_TIMEOUT):
                demo.say(0, f"(still joining {alerts_topic}; alerts may show late)")
            wall_start = time.monotonic()
        steps = max(1, math.ceil(duration / TICK))
        for i in range(steps):
            t = i * TICK
            demo.t = t
            for scenario in scenarios:
                if not scenario.announced and t + TICK > scenario.start:
                    scenario.announced = True
                    demo.say(max(t, scenario.start), scenario.announce())
                scenario.emit(t, TICK)
            if i % max(1, round(10 / TICK)) == 0 and i:
                demo.say(t, f"… {demo.events:,} events sent")
            pause = wall_start + (t + TICK) / speed - time.monotonic()
            if pause > 0:
                time.sleep(pause)
        demo.t = duration
        left = telemetry.flush(30)
        result.events = demo.events
        demo.say(
            elapsed(),
            f"traffic done: {demo.events:,} events"
            + (f" ({left} still unsent)" if left else "")
            + (" · waiting for the alerts" if follow else ""),
        )
        if follow:
            deadline = time.monotonic() + tail
            while result.missing and time.monotonic() < deadline:
                time.sleep(0.5)
            time.sleep(min(2.0, max(0.0, deadline - time.monotonic())))  # late degrades
    finally:
        if subscriber is not None:
            subscriber.stop()
        telemetry.close()
    result.sent, result.failed, result.dropped = (
        telemetry.sent,
        telemetry.failed,
        telemetry.dropped,
    )
    result.seconds = time.monotonic() - wall_start
    _summary(demo, result, follow, dashboard_url)
    return result


def _summary(demo: _Demo, result: DemoResult, follow: bool, dashboard_url: str | None) -> None:
    lines = [
        f"sent {result.sent:,} of {result.events:,} events "
        f"(failed {result.failed}, dropped {result.dropped}) in {result.seconds:.0f} s"
    ]
    if follow:
        required = [e for e in result.expected if e.required]
        seen = [e for e in required if result.seen(e.rule, e.tenant)]
        lines.append(f"incidents: {len(seen)} of {len(required)} expected alerts seen")
        for e in result.expected:
            mark = "ok " if result.seen(e.rule, e.tenant) else ("-- " if e.required else ".. ")
            note = f"  ({e.note})" if e.note else ("" if e.required else "  (may come)")
            lines.append(f"  {mark} {e.rule:<24} {e.tenant}{note}")
    lines.append("replay them: llmtel alerts --from-beginning --idle-exit 5")
    lines.append("look closer: llmtel query --preset budget | quality | loops | slo")
    lines.append("report:      llmtel report --since 1h --out report.html")
    if dashboard_url:
        lines.append(f"dashboard:   {dashboard_url}")
    with demo.lock:
        demo.out.write("\n".join(lines) + "\n")
        demo.out.flush()


# -- command line ---------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of ``llmtel demo``."""
    parser.add_argument(
        "--duration", type=float, default=60.0, help="seconds of traffic (default 60)"
    )
    parser.add_argument(
        "--speed", type=float, default=1.0, help="2 sends the same traffic twice as fast"
    )
    parser.add_argument("--seed", type=int, default=7, help="random seed of the traffic")
    parser.add_argument(
        "--tail",
        type=float,
        default=30.0,
        help="seconds to wait for the expected alerts after the traffic (default 30)",
    )
    parser.add_argument(
        "--no-follow", action="store_true", help="do not follow the alert and degrade topics"
    )
    parser.add_argument(
        "--write-policy",
        metavar="PATH",
        help="write the demo's policy file (for LLMTEL_POLICY) to PATH and exit",
    )
    return parser


def cmd_demo(settings: Any, args: argparse.Namespace) -> int:
    """``llmtel demo``: traffic to the configured broker and topics, with the worker's policy."""
    if args.write_policy:
        path = write_demo_policy(args.write_policy)
        print(
            f"wrote {path}\nrun the worker with it: LLMTEL_POLICY={path} llmtel up "
            "(or make run), then: llmtel demo"
        )
        return 0
    from streams.kafka import cluster_id

    cluster_id(settings.bootstrap, timeout=10)  # a clear error now if no broker answers
    policy = load_policy(settings.policy) if settings.policy else Policy()
    if settings.policy is None:
        print(
            "note: LLMTEL_POLICY is unset, so the demo assumes the default policy, as the "
            "worker does without one: every tenant on the starter plan and the bronze tier",
            flush=True,
        )
    result = run_demo(
        settings.bootstrap,
        speed=args.speed,
        duration=args.duration,
        seed=args.seed,
        topic=settings.events_topic,
        alerts_topic=settings.alerts_topic,
        degrade_topic=settings.degrade_topic,
        policy=policy,
        follow=not args.no_follow,
        tail=args.tail,
        dashboard_url=f"http://{settings.web_host}:{settings.web_port}/",
    )
    return 0 if result.failed == 0 and result.dropped == 0 else 1


def main(argv: list[str] | None = None) -> int:
    """``python -m streams.demo [options]``, with the ``LLMTEL_*`` settings."""
    from schemas.errors import LlmtelError
    from streams.settings import load_settings

    args = add_arguments(argparse.ArgumentParser(prog="llmtel demo")).parse_args(argv)
    try:
        return cmd_demo(load_settings(), args)
    except LlmtelError as exc:
        print(f"llmtel demo: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
