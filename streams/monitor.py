"""Budgets, alert rules and degrade modes per tenant, evaluated in event time.

Runs after a batch is stored. For each tenant, in offset order: at every minute boundary of
event time the tenant crosses, the rules are evaluated (so replaying the same events yields
the same alerts, whatever the batching), then the event is applied to the budget and to the
tenant's windows; once more at the end of the batch, at the tenant's watermark. Tenants with
something active (a pending or firing rule, a spent budget, a degraded mode) are also
evaluated at their partition's watermark when they go quiet, so alerts resolve and days end
(not again within the same minute unless a rule is pending: it would read the same buckets).

State that must survive a restart (budget, rule states, degrade reasons, the last applied
offset) is a ``TenantState``, stored by the worker in the tenant-state changelog topic;
windows are rebuilt from ClickHouse.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from schemas.outputs import Alert, DegradeCommand
from streams.budget import DAY, EXCEEDED, LEVEL_NAMES, OK, WARNING, BudgetState, day_name, day_of
from streams.durations import format_duration
from streams.parse import Accepted
from streams.policy import PlanSpec, Policy
from streams.pricing import PICO, PriceTable
from streams.rules import RuleSpec, RuleState, Transition, step
from streams.windows import (
    HOURLY_ABOVE,
    LABELS,
    MEASURES,
    MINUTE_RETENTION,
    NO_LABELS,
    Needs,
    Retention,
    TenantWindow,
)

BUDGET_RUNBOOK = "deploy/runbooks/README.md#budgets"


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def recommendation(mode: str, prices: PriceTable, model: str | None = None) -> str:
    """A concrete instruction for a service entering ``mode``."""
    if mode == "route_cheaper_model":
        cheaper = prices.cheapest_with(model) if model else None
        if cheaper:
            return f"route {model} to {cheaper} (cheapest model with the same capabilities)"
        return f"route to a cheaper model; none in the price table has the capabilities of {model or 'the current model'}"
    return {
        "reduce_top_k": "reduce RAG top-k and context size to cut input tokens and latency",
        "safe_answers": "answer only from retrieved sources and abstain otherwise; no free-form generation",
        "read_only_tools": "allow read-only tools only; require confirmation for any side effect",
        "strict_output": "use strict structured output (JSON schema mode) or a model with json_mode",
        "block": "reject new LLM calls of this tenant until its budget resets at 00:00 UTC",
    }[mode]


@dataclass(slots=True)
class TenantState:
    """What the worker must remember of a tenant across restarts (a changelog record)."""

    offset: int = -1  # position (Kafka offset, element of its array) of the last event applied
    index: int = -1
    budget: BudgetState = field(default_factory=BudgetState)
    budget_alerts: dict[str, str] = field(default_factory=dict)  # rule -> firing alert_id
    rules: dict[str, RuleState] = field(default_factory=dict)
    degrade: dict[str, dict[str, str]] = field(
        default_factory=dict
    )  # mode -> reason -> recommendation
    last_eval: int = 0  # last minute boundary evaluated

    @property
    def active(self) -> bool:
        return bool(self.rules or self.degrade or self.budget.level > OK)

    def to_json(self) -> dict[str, Any]:
        return {
            "offset": self.offset,
            "index": self.index,
            "budget": [self.budget.day, self.budget.spend_pico, self.budget.level],
            "budget_alerts": self.budget_alerts,
            "rules": {name: s.to_json() for name, s in self.rules.items()},
            "degrade": self.degrade,
            "last_eval": self.last_eval,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> TenantState:
        day, spend, level = raw["budget"]
        return cls(
            offset=raw["offset"],
            index=raw.get("index", -1),
            budget=BudgetState(day, spend, level),
            budget_alerts=dict(raw["budget_alerts"]),
            rules={name: RuleState.from_json(s) for name, s in raw["rules"].items()},
            degrade={mode: dict(reasons) for mode, reasons in raw["degrade"].items()},
            last_eval=raw["last_eval"],
        )


@dataclass
class Outputs:
    """What a batch makes the monitor publish, in order."""

    alerts: list[Alert] = field(default_factory=list)
    degrades: list[DegradeCommand] = field(default_factory=list)
    changed: dict[str, TenantState] = field(default_factory=dict)
    late_events: int = 0
    # spend newly applied, per partition and minute of event time, for the global rules
    spend: dict[int, dict[int, int]] = field(default_factory=dict)
    spend_offsets: dict[int, int] = field(default_factory=dict)


class Monitor:
    """Applies accepted events to tenants' budgets, windows and rules."""

    def __init__(self, policy: Policy, prices: PriceTable) -> None:
        self.policy = policy
        self.prices = prices
        self.rules = [r for r in policy.rule_specs() if r.scope == "tenant"]
        self.lateness = policy.allowed_lateness
        metrics: dict[float, set[str]] = {}
        for rule in self.rules:
            metrics.setdefault(rule.window, set()).add(rule.metric)
        self.needs = {window: Needs.of(names) for window, names in metrics.items()}
        # per rule, in the policy's order: what an evaluation reads
        self.checks = [
            (
                rule,
                rule.name,
                rule.window,
                self.needs[rule.window],
                MEASURES[rule.metric],
                LABELS.get(rule.metric),
            )
            for rule in self.rules
        ]
        # whole minutes: an evaluation within the minute of the last one reads the same buckets
        self.whole_minutes = all(window % 60 == 0 for window in self.needs)
        # minute buckets: what the windows summed from minutes (and late events) reach
        self.bucket_needs = Needs.of(set().union(*metrics.values()))
        self.retention = Retention(
            self._reach(self.needs),
            self._reach(w for w, needs in self.needs.items() if needs.latencies),
            self._reach(w for w, needs in self.needs.items() if needs.sessions),
        )
        self.windows: dict[int, dict[str, TenantWindow]] = {}
        self.states: dict[str, TenantState] = {}
        self.partition_of: dict[str, int] = {}
        self.watermarks: dict[int, float] = {}
        self.limits: dict[str, tuple[PlanSpec, int]] = {}

    def _reach(self, windows: Iterable[float]) -> float:
        """How far back minute buckets must reach for the longest of ``windows`` (summed from
        minutes), with late events."""
        longest = max((w for w in windows if w <= HOURLY_ABOVE), default=0)
        return min(MINUTE_RETENTION, longest + self.lateness + 60)

    # -- lifecycle ---------------------------------------------------------------------
    def forget(self) -> None:
        """After a rebalance: windows are rebuilt and states re-read before the next batch."""
        self.windows.clear()
        self.states.clear()
        self.partition_of.clear()
        self.watermarks.clear()

    def has_windows(self, partition: int) -> bool:
        return partition in self.windows

    def load_windows(self, partition: int, windows: dict[str, TenantWindow]) -> None:
        self.windows[partition] = windows
        for tenant, window in windows.items():
            self.partition_of[tenant] = partition
            self.watermarks[partition] = max(self.watermarks.get(partition, 0.0), window.watermark)

    def state(self, tenant: str, stored: dict[str, Any] | None) -> TenantState:
        state = self.states.get(tenant)
        if state is None:
            state = TenantState.from_json(stored) if stored else TenantState()
            self.states[tenant] = state
        return state

    # -- per batch ---------------------------------------------------------------------
    def apply_batch(
        self,
        accepted: list[tuple[int, int, Accepted]],
        stored_state: Any,
    ) -> Outputs:
        """Apply a stored batch: ``accepted`` holds (partition, offset, item) in offset order
        per partition; ``stored_state(tenant)`` returns a tenant's persisted state or None."""
        out = Outputs()
        by_tenant: dict[str, list[tuple[int, int, Accepted]]] = {}
        for entry in accepted:
            tenant = entry[2].event.tenant_id
            items = by_tenant.get(tenant)
            if items is None:
                items = by_tenant[tenant] = []
                self.partition_of[tenant] = entry[0]
            items.append(entry)
        for tenant, items in by_tenant.items():
            partition = self.partition_of[tenant]
            state = self.state(tenant, stored_state(tenant))
            window = self.windows.setdefault(partition, {}).setdefault(tenant, TenantWindow())
            if self._apply(tenant, partition, state, window, items, out):
                out.changed[tenant] = state
                wm = self.watermarks.get(partition, 0.0)
                self.watermarks[partition] = max(wm, window.watermark)
        for tenant, state in list(self.states.items()):
            if tenant in by_tenant or not state.active:
                continue
            partition = self.partition_of.get(tenant)
            watermark = self.watermarks.get(partition, 0.0) if partition is not None else 0.0
            window = self.windows.get(partition, {}).get(tenant) if partition is not None else None
            if (
                window is not None
                and watermark > window.watermark
                and self._tick(tenant, state, window, watermark, out)
            ):
                out.changed[tenant] = state
        return out

    def _apply(
        self,
        tenant: str,
        partition: int,
        state: TenantState,
        window: TenantWindow,
        items: list[tuple[int, int, Accepted]],
        out: Outputs,
    ) -> bool:
        applied = False
        spent_at = -1  # offset of the last LLM call applied
        spend: dict[int, int] | None = None  # minute -> pico-USD
        for _, offset, item in items:
            event = item.event
            ts = item.ts
            position = (offset, item.index)  # the elements of an array share its offset
            if position > (state.offset, state.index):
                minute = int(ts) // 60 * 60
                if minute > state.last_eval:
                    if state.last_eval:
                        self._evaluate(tenant, state, window, minute, out)
                    state.last_eval = minute
                if event.event_type == "llm_call":
                    self._spend(tenant, state, ts, item.cost_pico, event.model, out)
                    if spend is None:
                        spend = out.spend.setdefault(partition, {})
                    spend[minute] = spend.get(minute, 0) + item.cost_pico
                    spent_at = offset
                state.offset, state.index = position
                applied = True
            if position > (window.offset, window.index):
                if ts >= window.watermark - self.lateness:
                    window.add(event, item.cost_pico, ts, self.bucket_needs)
                else:
                    out.late_events += 1
                window.offset, window.index = position
        if spent_at >= 0:
            out.spend_offsets[partition] = max(out.spend_offsets.get(partition, -1), spent_at)
        if applied:
            self._evaluate(tenant, state, window, window.watermark, out)
            window.evict(self.retention)
        return applied

    def _tick(
        self, tenant: str, state: TenantState, window: TenantWindow, at: float, out: Outputs
    ) -> bool:
        """Evaluate a quiet tenant at its partition's watermark; False if nothing could change."""
        if state.budget.level > OK and day_of(at) > state.budget.day:
            self._close_day(tenant, state, state.budget.day + DAY, out)
            state.budget = BudgetState(day=day_of(at))
        elif self._settled(state, window, at):
            return False
        self._evaluate(tenant, state, window, at, out)
        return True

    def _settled(self, state: TenantState, window: TenantWindow, at: float) -> bool:
        """True when evaluating a quiet tenant at ``at`` would repeat its last evaluation: the
        same minute (so every window reads the same buckets) and no rule pending (the only
        state that moves with time alone)."""
        return (
            self.whole_minutes
            and int(at) // 60 == int(window.evaluated) // 60
            and all(rule.status != "pending" for rule in state.rules.values())
        )

    # -- budgets -----------------------------------------------------------------------
    def _spend(
        self, tenant: str, state: TenantState, ts: float, cost_pico: int, model: str, out: Outputs
    ) -> None:
        day = day_of(ts)
        if day > state.budget.day:
            if state.budget.day:
                self._close_day(tenant, state, day, out)
            state.budget = BudgetState(day=day)
        elif day < state.budget.day:
            return  # a late call of a day already closed
        plan, limit = self._limit(tenant)
        for level in state.budget.add(cost_pico, limit, self.policy.budget.warn_at):
            rule = "budget_warning" if level == WARNING else "budget_exceeded"
            state.budget_alerts[rule] = f"{rule}:{tenant}:{day_name(day)}"
            out.alerts.append(self._budget_alert(tenant, state, rule, "firing", ts, ts))
            if level == EXCEEDED:
                for mode in self.policy.exceeded_modes(plan):
                    enter_mode(
                        tenant,
                        state,
                        mode,
                        "budget_exceeded",
                        recommendation(mode, self.prices, model),
                        ts,
                        out,
                    )

    def _limit(self, tenant: str) -> tuple[PlanSpec, int]:
        """The tenant's plan and daily budget in pico-USD (the policy is fixed for a process)."""
        known = self.limits.get(tenant)
        if known is None:
            _, plan = self.policy.plan_of(tenant)
            known = self.limits[tenant] = (plan, int(plan.daily_budget_usd * PICO))
        return known

    def _close_day(self, tenant: str, state: TenantState, day_end: float, out: Outputs) -> None:
        """A new UTC day: resolve the budget alerts and leave the budget's degraded modes."""
        for rule in sorted(state.budget_alerts, reverse=True):
            out.alerts.append(
                self._budget_alert(tenant, state, rule, "resolved", state.budget.day, day_end)
            )
        state.budget_alerts.clear()
        for mode in [m for m, reasons in state.degrade.items() if "budget_exceeded" in reasons]:
            exit_mode(tenant, state, mode, "budget_exceeded", day_end, out)

    def _budget_alert(
        self, tenant: str, state: TenantState, rule: str, change: str, started: float, at: float
    ) -> Alert:
        """The ``firing`` or ``resolved`` record of a budget alert of the tenant's current day."""
        plan_name, plan = self.policy.plan_of(tenant)
        warning = rule == "budget_warning"
        limit = int(plan.daily_budget_usd * PICO)
        return Alert(
            alert_id=state.budget_alerts[rule],
            rule=rule,
            state=change,  # type: ignore[arg-type]
            severity="warning" if warning else "critical",
            tenant_id=tenant,
            value=state.budget.spend_pico / PICO,
            threshold=limit * (self.policy.budget.warn_at if warning else 1) / PICO,
            window="1d",
            started_at=_dt(started),
            event_time=_dt(at),
            runbook=BUDGET_RUNBOOK,
            labels={
                "plan": plan_name,
                "day": day_name(state.budget.day),
                "budget_usd": str(plan.daily_budget_usd),
            },
        )

    def budget_view(self, tenant: str) -> tuple[str, float, float, str]:
        """(plan, spend USD, limit USD, level) of a tenant's current day."""
        state = self.states.get(tenant, TenantState())
        plan_name, plan = self.policy.plan_of(tenant)
        return (
            plan_name,
            state.budget.spend_pico / PICO,
            float(plan.daily_budget_usd),
            LEVEL_NAMES[state.budget.level],
        )

    # -- rules -------------------------------------------------------------------------
    def _evaluate(
        self, tenant: str, state: TenantState, window: TenantWindow, at: float, out: Outputs
    ) -> None:
        summaries: dict[float, Any] = {}
        rules = state.rules
        for rule, name, length, needs, measure, label in self.checks:
            summary = summaries.get(length)
            if summary is None:
                summary = summaries[length] = window.summary(at, length, needs)
            value, samples = measure(summary)
            current = rules.get(name)
            if current is None and (
                value is None or samples < rule.min_samples or not rule.breached(value)
            ):
                continue  # inactive and staying so: what ``step`` would return
            new, transition = step(rule, current, value, samples, at, tenant)
            if new is not current:
                if new is None:
                    del rules[name]
                else:
                    rules[name] = new
            if transition is not None:
                labels = label(summary) if label else NO_LABELS
                self._publish(tenant, state, transition, labels, out)
        window.evaluated = at

    def _publish(
        self, tenant: str, state: TenantState, t: Transition, labels: dict[str, str], out: Outputs
    ) -> None:
        rule: RuleSpec = t.rule
        plan_name, _ = self.policy.plan_of(tenant)
        out.alerts.append(
            Alert(
                alert_id=t.alert_id,
                rule=rule.name,
                state=t.state,
                severity=rule.severity,  # type: ignore[arg-type]
                tenant_id=tenant,
                value=t.value,
                threshold=rule.threshold,
                window=format_duration(rule.window),
                started_at=_dt(t.started_at),
                event_time=_dt(t.at),
                runbook=rule.runbook,
                labels={"plan": plan_name, **labels},
            )
        )
        for mode in rule.degrade:
            if t.state == "firing":
                enter_mode(
                    tenant, state, mode, rule.name, recommendation(mode, self.prices), t.at, out
                )
            else:
                exit_mode(tenant, state, mode, rule.name, t.at, out)


# -- degraded modes: a mode is entered by its first reason and left with its last ----------


def enter_mode(
    tenant: str,
    state: TenantState,
    mode: str,
    reason: str,
    advice: str,
    at: float,
    out: Outputs,
) -> None:
    """Add ``reason`` for ``mode``; publish ``enter`` if it is the mode's first reason."""
    reasons = state.degrade.setdefault(mode, {})
    if not reasons:
        out.degrades.append(
            DegradeCommand(
                tenant_id=tenant,
                mode=mode,
                state="enter",
                reason=reason,
                recommendation=advice,
                event_time=_dt(at),  # type: ignore[arg-type]
            )
        )
    reasons[reason] = advice


def exit_mode(
    tenant: str, state: TenantState, mode: str, reason: str, at: float, out: Outputs
) -> None:
    """Drop ``reason`` for ``mode``; publish ``exit`` when no reason is left."""
    reasons = state.degrade.get(mode)
    if not reasons or reason not in reasons:
        return
    advice = reasons.pop(reason)
    if not reasons:
        del state.degrade[mode]
        out.degrades.append(
            DegradeCommand(
                tenant_id=tenant,
                mode=mode,
                state="exit",
                reason=reason,
                recommendation=advice,
                event_time=_dt(at),  # type: ignore[arg-type]
            )
        )
