"""SLOs per tier: SLIs against targets, error budgets, burn-rate alerts, degraded modes.

Pure: the SLA watchdog reads one ``SliRow`` per tenant from ClickHouse (event time: every
window ends at the tenant's newest event) and ``SloEvaluator.evaluate`` turns the rows into
alerts, degrade commands and ``sla_snapshots`` rows, moving each tenant's rule states.

Every SLI is checked as a "bad" quantity against its limit (unavailability against
1 - target, p95 latency against the target, ...), so one hysteresis rule fits them all; the
alerts carry the SLI itself (availability 0.997 against 0.999) for people to read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

from schemas.outputs import Alert
from streams.durations import format_duration
from streams.monitor import Outputs, TenantState, enter_mode, exit_mode, recommendation
from streams.policy import Policy, TierSpec
from streams.pricing import PriceTable
from streams.rules import RuleSpec, step

SLO_RUNBOOK = "deploy/runbooks/README.md#slos"
BURN_WINDOWS = (300, 1800, 3600, 21600)  # 5m, 30m, 1h, 6h
# (speed, long window, short window, burn-rate threshold, severity), as in the SRE workbook
BURN_ALERTS = (("fast", 3600, 300, 14.4, "critical"), ("slow", 21600, 1800, 6.0, "warning"))


class SliRow(NamedTuple):
    """What ClickHouse says of one tenant (see ``ClickHouseSink.sli_rows``)."""

    tenant_id: str
    latest: float  # epoch seconds of the tenant's newest event: every window ends here
    calls: (
        int  # llm_calls in the evaluation window (provider errors left out if the policy says so)
    )
    ok: int
    latency_p95: float | None
    latency_n: int
    json_reported: int
    json_valid: int
    groundedness_sum: float
    groundedness_n: int
    abstained: int
    tool_calls: int
    tool_ok: int
    cost_p95: float | None
    top_model: str
    burn_calls: tuple[int, ...]  # per BURN_WINDOWS
    burn_bad: tuple[int, ...]
    budget_calls: int  # over the error-budget window
    budget_bad: int


class Sli(NamedTuple):
    value: float | None  # the SLI as people read it
    target: float
    bad: float | None  # what the rule compares
    limit: float
    samples: int


def slis(row: SliRow, tier: TierSpec) -> dict[str, Sli]:
    """Each SLI of a tenant against its tier."""
    availability = row.ok / row.calls if row.calls else None
    json_rate = row.json_valid / row.json_reported if row.json_reported else None
    grounded = row.groundedness_sum / row.groundedness_n if row.groundedness_n else None
    return {
        "availability": Sli(
            availability,
            tier.availability,
            None if availability is None else 1 - availability,
            1 - tier.availability,
            row.calls,
        ),
        "latency": Sli(
            row.latency_p95,
            tier.p95_latency_ms,
            row.latency_p95,
            tier.p95_latency_ms,
            row.latency_n,
        ),
        "json_valid": Sli(
            json_rate,
            tier.json_valid,
            None if json_rate is None else 1 - json_rate,
            1 - tier.json_valid,
            row.json_reported,
        ),
        "groundedness": Sli(
            grounded,
            tier.groundedness,
            None if grounded is None else 1 - grounded,
            1 - tier.groundedness,
            row.groundedness_n,
        ),
        "cost": Sli(row.cost_p95, tier.cost_p95_usd, row.cost_p95, tier.cost_p95_usd, row.calls),
    }


def error_budget_remaining(bad: int, calls: int, target: float) -> float:
    """Share of the window's error budget left: 1 untouched, 0 spent, below 0 overspent."""
    if calls == 0:
        return 1.0
    return 1 - (bad / calls) / (1 - target)


def burn_rate(bad: int, calls: int, target: float) -> float | None:
    """How many times faster than sustainable the budget burns (1 = spent exactly at the end)."""
    return (bad / calls) / (1 - target) if calls else None


def _advice(sli: str, s: Sli, tier: str, mode: str, prices: PriceTable, model: str) -> str:
    if sli == "latency":
        base = f"p95 latency {s.value:.0f} ms over the {s.target:.0f} ms target of {tier}"
        if mode == "route_cheaper_model":
            cheaper = prices.cheapest_with(model) if model else None
            return (
                f"{base}: route {model} to {cheaper}, a faster and cheaper model"
                if cheaper
                else f"{base}: route to a faster model"
            )
        return f"{base}: reduce RAG top-k and context size"
    if sli == "json_valid":
        return f"JSON valid {s.value:.1%} under the {s.target:.0%} target of {tier}: use strict structured output (JSON schema mode) or a model with json_mode"
    if sli == "groundedness":
        return f"groundedness {s.value:.2f} under the {s.target:.2f} target of {tier}: answer only from retrieved sources and abstain otherwise"
    if sli == "cost":
        return f"p95 cost per request ${s.value:.4f} over the ${s.target:.4f} target of {tier}: {recommendation(mode, prices, model)}"
    return f"availability {s.value:.2%} under the {s.target:.2%} target of {tier}: {recommendation(mode, prices, model)}"


@dataclass
class SlaSnapshot:
    """One row of ``sla_snapshots``."""

    ts: datetime
    window_end: datetime
    tenant_id: str
    tier: str
    availability: float | None
    p95_latency_ms: float | None
    json_valid_rate: float | None
    groundedness: float | None
    cost_p95_usd: float | None
    abstention_rate: float | None
    tool_success_rate: float | None
    calls: int
    error_budget_remaining: float
    degraded_mode: str
    breaches: list[str] = field(default_factory=list)


class SloEvaluator:
    """Runs the SLO rules of each tenant the watchdog measured."""

    def __init__(self, policy: Policy, prices: PriceTable) -> None:
        self.policy = policy
        self.spec = policy.slo
        self.prices = prices

    def rule(self, sli: str, limit: float) -> RuleSpec:
        return RuleSpec(
            name=f"slo_{sli}",
            metric=sli,
            op=">",
            threshold=limit,
            window=self.spec.evaluation_window,
            severity="critical",
            min_samples=self.spec.min_samples,
            hysteresis=self.spec.hysteresis,
            degrade=tuple(self.spec.degrade.get(sli, ())),
            runbook=SLO_RUNBOOK,
        )

    def evaluate(
        self, rows: list[SliRow], state_of: Callable[[str], TenantState], now: datetime
    ) -> tuple[Outputs, list[SlaSnapshot]]:
        out = Outputs()
        snapshots = []
        for row in rows:
            if row.tenant_id in self.spec.exclude_tenants:
                continue
            state = state_of(row.tenant_id)
            snapshots.append(self._tenant(row, state, now, out))
            out.changed[row.tenant_id] = state
        return out, snapshots

    def _tenant(self, row: SliRow, state: TenantState, now: datetime, out: Outputs) -> SlaSnapshot:
        tier_name, tier = self.policy.tier_of(row.tenant_id)
        at = row.latest
        measured = slis(row, tier)
        breaches = []
        for sli, s in measured.items():
            rule = self.rule(sli, s.limit)
            new, t = step(rule, state.rules.get(rule.name), s.bad, s.samples, at, row.tenant_id)
            self._keep(state, rule.name, new)
            if new is not None and new.status == "firing":
                breaches.append(sli)
            if t is None:
                continue
            out.alerts.append(
                self._alert(
                    rule.name,
                    t.state,
                    t.alert_id,
                    rule.severity,
                    row,
                    s.value,
                    s.target,
                    rule,
                    t.started_at,
                    at,
                    tier_name,
                )
            )
            for mode in rule.degrade:
                if t.state == "firing":
                    advice = _advice(sli, s, tier_name, mode, self.prices, row.top_model)
                    enter_mode(row.tenant_id, state, mode, rule.name, advice, at, out)
                else:
                    exit_mode(row.tenant_id, state, mode, rule.name, at, out)
        self._burn(row, tier, tier_name, state, at, out)
        return SlaSnapshot(
            ts=now,
            window_end=datetime.fromtimestamp(at, UTC),
            tenant_id=row.tenant_id,
            tier=tier_name,
            availability=measured["availability"].value,
            p95_latency_ms=measured["latency"].value,
            json_valid_rate=measured["json_valid"].value,
            groundedness=measured["groundedness"].value,
            cost_p95_usd=measured["cost"].value,
            abstention_rate=row.abstained / row.calls if row.calls else None,
            tool_success_rate=row.tool_ok / row.tool_calls if row.tool_calls else None,
            calls=row.calls,
            error_budget_remaining=error_budget_remaining(
                row.budget_bad, row.budget_calls, tier.availability
            ),
            degraded_mode=",".join(sorted(state.degrade)),
            breaches=breaches,
        )

    def _burn(
        self,
        row: SliRow,
        tier: TierSpec,
        tier_name: str,
        state: TenantState,
        at: float,
        out: Outputs,
    ) -> None:
        """Multi-window burn-rate alerts: both windows must burn faster than the threshold."""
        rates = {
            w: burn_rate(bad, calls, tier.availability)
            for w, bad, calls in zip(BURN_WINDOWS, row.burn_bad, row.burn_calls, strict=True)
        }
        calls = dict(zip(BURN_WINDOWS, row.burn_calls, strict=True))
        for speed, long, short, threshold, severity in BURN_ALERTS:
            rule = RuleSpec(
                name="error_budget_burn",
                metric="burn_rate",
                op=">",
                threshold=threshold,
                window=long,
                severity=severity,
                hysteresis=self.spec.hysteresis,
                runbook=SLO_RUNBOOK,
            )
            enough = (
                calls[long] >= self.spec.min_samples
                and rates[long] is not None
                and rates[short] is not None
            )
            value = min(rates[long], rates[short]) if enough else None  # type: ignore[type-var]
            key = f"error_budget_burn:{speed}"
            new, t = step(
                rule, state.rules.get(key), value, calls[long], at, f"{row.tenant_id}:{speed}"
            )
            self._keep(state, key, new)
            if t is not None:
                alert = self._alert(
                    "error_budget_burn",
                    t.state,
                    t.alert_id,
                    severity,
                    row,
                    t.value,
                    threshold,
                    rule,
                    t.started_at,
                    at,
                    tier_name,
                )
                out.alerts.append(
                    alert.model_copy(
                        update={
                            "labels": {
                                **alert.labels,
                                "speed": speed,
                                "short_window": format_duration(short),
                            }
                        }
                    )
                )

    @staticmethod
    def _keep(state: TenantState, key: str, new: Any) -> None:
        if new is None:
            state.rules.pop(key, None)
        else:
            state.rules[key] = new

    @staticmethod
    def _alert(
        name: str,
        state: str,
        alert_id: str,
        severity: str,
        row: SliRow,
        value: float | None,
        target: float,
        rule: RuleSpec,
        started: float,
        at: float,
        tier: str,
    ) -> Alert:
        return Alert(
            alert_id=alert_id,
            rule=name,
            state=state,  # type: ignore[arg-type]
            severity=severity,  # type: ignore[arg-type]
            tenant_id=row.tenant_id,
            value=value if value is not None else 0.0,
            threshold=target,
            window=format_duration(rule.window),
            started_at=datetime.fromtimestamp(started, UTC),
            event_time=datetime.fromtimestamp(at, UTC),
            runbook=rule.runbook,
            labels={"tier": tier},
        )


def sli_row(raw: tuple) -> SliRow:
    """A ``ClickHouseSink.sli_rows`` row as an SliRow."""
    (
        tenant,
        latest_ms,
        calls,
        ok,
        p95,
        lat_n,
        json_n,
        json_ok,
        g_sum,
        g_n,
        abstained,
        tools,
        tools_ok,
        cost_p95,
        top,
    ) = raw[:15]
    burn = raw[15 : 15 + 2 * len(BURN_WINDOWS)]
    budget_calls, budget_bad = raw[15 + 2 * len(BURN_WINDOWS) :]
    return SliRow(
        tenant_id=tenant,
        latest=int(latest_ms) / 1000,
        calls=int(calls),
        ok=int(ok),
        latency_p95=float(p95) if lat_n else None,
        latency_n=int(lat_n),
        json_reported=int(json_n),
        json_valid=int(json_ok),
        groundedness_sum=float(g_sum or 0),
        groundedness_n=int(g_n),
        abstained=int(abstained),
        tool_calls=int(tools),
        tool_ok=int(tools_ok),
        cost_p95=float(cost_p95) if calls else None,
        top_model=top[0] if top else "",
        burn_calls=tuple(int(c) for c in burn[0::2]),
        burn_bad=tuple(int(b) for b in burn[1::2]),
        budget_calls=int(budget_calls),
        budget_bad=int(budget_bad),
    )
