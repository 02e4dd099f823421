"""Alert rules: what each measures, its defaults, and the firing/resolved state machine.

Pure: a rule is evaluated on a window's totals (``MinuteAgg``) at an event time; ``step`` moves
one rule's state for one tenant and says whether an alert fires or resolves. Fires once per
episode: ``pending`` while the condition holds for less than ``for``, ``firing`` after, and
resolved only once the value is back past the threshold by the hysteresis margin.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal, NamedTuple

Op = Literal[">", "<"]


@dataclass(frozen=True, slots=True)
class RuleSpec:
    """One alert rule as configured."""

    name: str
    metric: str  # a key of windows.MEASURES
    op: Op
    threshold: float
    window: float  # seconds
    for_: float = 0.0  # seconds the condition must hold before firing
    severity: str = "warning"
    min_samples: int = 0  # fewer samples in the window: the rule stays silent
    hysteresis: float = 0.1  # resolve only when the value is this fraction past the threshold
    enabled: bool = True
    degrade: tuple[str, ...] = ()  # degrade modes entered while firing
    runbook: str = ""
    scope: Literal["tenant", "global"] = "tenant"

    def breached(self, value: float) -> bool:
        return value > self.threshold if self.op == ">" else value < self.threshold

    def cleared(self, value: float) -> bool:
        if self.op == ">":
            return value <= self.threshold * (1 - self.hysteresis)
        return value >= self.threshold * (1 + self.hysteresis)


RUNBOOKS = "deploy/runbooks/"

DEFAULT_RULES: dict[str, RuleSpec] = {
    r.name: r
    for r in (
        RuleSpec(
            "cost_spike",
            "spend_usd",
            ">",
            50,
            3600,
            300,
            "critical",
            runbook=RUNBOOKS + "llm-cost-spike-high.md",
        ),
        RuleSpec(
            "error_rate_high",
            "error_rate",
            ">",
            0.10,
            300,
            300,
            "critical",
            min_samples=20,
            runbook=RUNBOOKS + "agent-error-rate-high.md",
        ),
        RuleSpec(
            "latency_p95_high",
            "latency_p95_ms",
            ">",
            5000,
            300,
            600,
            "warning",
            min_samples=20,
            runbook=RUNBOOKS + "llm-latency-high.md",
        ),
        RuleSpec(
            "faithfulness_low",
            "faithfulness_mean",
            "<",
            0.75,
            3600,
            1800,
            "warning",
            min_samples=10,
            runbook=RUNBOOKS + "rag-quality-degraded.md",
        ),
        RuleSpec(
            "hallucination_rate_high",
            "hallucination_rate",
            ">",
            0.15,
            3600,
            900,
            "critical",
            min_samples=20,
            degrade=("safe_answers",),
            runbook=RUNBOOKS + "hallucination-rate-high.md",
        ),
        RuleSpec(
            "prompt_injection_surge",
            "injections_blocked",
            ">",
            50,
            3600,
            0,
            "critical",
            degrade=("read_only_tools",),
            runbook=RUNBOOKS + "prompt-injection-surge.md",
        ),
        RuleSpec(
            "agent_loop",
            "max_session_calls",
            ">",
            100,
            3600,
            0,
            "critical",
            runbook=RUNBOOKS + "README.md#agent-loop",
        ),
        RuleSpec(
            "cost_per_session_high",
            "cost_per_session_usd",
            ">",
            0.50,
            3600,
            0,
            "warning",
            min_samples=5,
            runbook=RUNBOOKS + "README.md#cost-per-session",
        ),
        RuleSpec(
            "token_efficiency_low",
            "token_efficiency",
            "<",
            0.3,
            3600,
            0,
            "warning",
            min_samples=20,
            runbook=RUNBOOKS + "README.md#token-efficiency",
        ),
        RuleSpec(
            "user_satisfaction_low",
            "feedback_mean",
            "<",
            3.5,
            86400,
            0,
            "warning",
            min_samples=10,
            runbook=RUNBOOKS + "README.md#user-satisfaction",
        ),
        RuleSpec(
            "cost_spike_global",
            "spend_usd",
            ">",
            50,
            3600,
            300,
            "critical",
            scope="global",
            runbook=RUNBOOKS + "llm-cost-spike-high.md",
        ),
    )
}


def configure(spec: RuleSpec, **changes: object) -> RuleSpec:
    """A copy of ``spec`` with the policy's changes."""
    return replace(spec, **changes)  # type: ignore[arg-type]


@dataclass(slots=True)
class RuleState:
    """Where one rule stands for one tenant. ``since``: event time the condition began."""

    status: Literal["pending", "firing"]
    since: float
    alert_id: str = ""

    def to_json(self) -> list:
        return [self.status, self.since, self.alert_id]

    @classmethod
    def from_json(cls, raw: list) -> RuleState:
        return cls(raw[0], float(raw[1]), raw[2])


class Transition(NamedTuple):
    """An alert to publish: the rule changed state at ``at`` (event time)."""

    rule: RuleSpec
    state: Literal["firing", "resolved"]
    alert_id: str
    value: float
    started_at: float
    at: float


def step(
    rule: RuleSpec,
    state: RuleState | None,
    value: float | None,
    samples: int,
    at: float,
    key: str,
) -> tuple[RuleState | None, Transition | None]:
    """Advance one rule for one tenant (``key``) to event time ``at``.

    ``value`` None or ``samples`` under the rule's minimum means no signal: a pending rule
    goes back to inactive and a firing one resolves.
    """
    has_signal = value is not None and samples >= rule.min_samples
    if state is None:
        if not has_signal or not rule.breached(value):  # type: ignore[arg-type]
            return None, None
        state = RuleState("pending", at)
    if state.status == "pending":
        if not has_signal or not rule.breached(value):  # type: ignore[arg-type]
            return None, None
        if at - state.since >= rule.for_:
            alert_id = f"{rule.name}:{key}:{int(state.since)}"
            firing = RuleState("firing", state.since, alert_id)
            return firing, Transition(rule, "firing", alert_id, value, state.since, at)  # type: ignore[arg-type]
        return state, None
    # firing
    if has_signal and not rule.cleared(value):  # type: ignore[arg-type]
        return state, None
    shown = value if value is not None else 0.0
    return None, Transition(rule, "resolved", state.alert_id, shown, state.since, at)
