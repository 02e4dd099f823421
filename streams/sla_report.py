"""``llmtel sla``: each tenant's SLIs over a period against its tier, and error budget left."""

from __future__ import annotations

from typing import Any

from streams.policy import Policy
from streams.slo import error_budget_remaining

SLI_TARGETS = (
    ("availability", "availability", ">="),
    ("p95_latency_ms", "p95_latency_ms", "<="),
    ("json_valid_rate", "json_valid", ">="),
    ("groundedness", "groundedness", ">="),
    ("cost_p95_usd", "cost_p95_usd", "<="),
)
COLUMNS = ["tenant_id", "tier", "sli", "value", "target", "met", "error_budget_left"]


def _quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def compliance_sql(
    since_seconds: float, budget_seconds: float, tenant: str | None, exclude_provider_errors: bool
) -> str:
    """Per tenant: the SLIs over ``since`` and the error budget counts over the budget window."""
    calls = "event_type = 'llm_call'" + (
        " AND status != 'provider_error'" if exclude_provider_errors else ""
    )
    since = f"ts >= now64(3) - toIntervalSecond({int(since_seconds)})"
    where = f"ts >= now64(3) - toIntervalSecond({int(max(since_seconds, budget_seconds))})"
    if tenant:
        where += f" AND tenant_id = {_quote(tenant)}"
    return f"""SELECT tenant_id,
        countIf({calls} AND {since}) AS calls,
        countIf({calls} AND {since} AND status = 'ok') AS ok,
        quantileExactIf(0.95)(ifNull(latency_ms, 0), {calls} AND {since} AND latency_ms IS NOT NULL) AS p95,
        countIf({calls} AND {since} AND latency_ms IS NOT NULL) AS p95_n,
        countIf({calls} AND {since} AND json_valid IS NOT NULL) AS json_n,
        countIf({calls} AND {since} AND json_valid = true) AS json_ok,
        avgIf(ifNull(score, 0), event_type = 'evaluation' AND eval_name = 'groundedness' AND {since}) AS grounded,
        countIf(event_type = 'evaluation' AND eval_name = 'groundedness' AND {since}) AS grounded_n,
        quantileExactIf(0.95)(toFloat64(cost_usd), {calls} AND {since}) AS cost_p95,
        countIf({calls} AND ts >= now64(3) - toIntervalSecond({int(budget_seconds)})) AS budget_calls,
        countIf({calls} AND ts >= now64(3) - toIntervalSecond({int(budget_seconds)}) AND status != 'ok') AS budget_bad
    FROM events WHERE {where} GROUP BY tenant_id ORDER BY tenant_id"""


def compliance_rows(policy: Policy, rows: list[list[Any]]) -> list[list[Any]]:
    """Rows of the report (COLUMNS), one per tenant and SLI."""
    out = []
    for (
        tenant,
        calls,
        ok,
        p95,
        p95_n,
        json_n,
        json_ok,
        grounded,
        grounded_n,
        cost_p95,
        budget_calls,
        budget_bad,
    ) in rows:
        if tenant in policy.slo.exclude_tenants:
            continue
        tier_name, tier = policy.tier_of(tenant)
        values = {
            "availability": ok / calls if calls else None,
            "p95_latency_ms": float(p95) if p95_n else None,
            "json_valid_rate": json_ok / json_n if json_n else None,
            "groundedness": float(grounded) if grounded_n else None,
            "cost_p95_usd": float(cost_p95) if calls else None,
        }
        budget = error_budget_remaining(int(budget_bad), int(budget_calls), tier.availability)
        for sli, target_name, op in SLI_TARGETS:
            value, target = values[sli], getattr(tier, target_name)
            met = (
                "n/a"
                if value is None
                else "yes"
                if (value >= target if op == ">=" else value <= target)
                else "NO"
            )
            shown = None if value is None else round(value, 6)
            out.append([tenant, tier_name, sli, shown, f"{op} {target:g}", met, f"{budget:.1%}"])
    return out
