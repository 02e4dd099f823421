"""Ready-made analysis queries: ``llmtel query --preset NAME``.

Each preset is plain ClickHouse SQL over llmtel's tables. ``budget`` and ``loops`` depend on
the policy (plan limits per tenant, ``budget.warn_at``, the ``agent_loop`` threshold), so
``preset_sql(name, policy)`` builds the query for the policy in effect; ``PRESETS`` holds
every preset as built for the default policy.

Money stays exact: spend columns are ``Decimal(38, 12)`` sums, never floats.
"""

from __future__ import annotations

from collections.abc import Iterable

from streams.policy import Policy

__all__ = ["PRESETS", "PRESET_HELP", "preset_sql", "quality_sql", "slo_sql", "sql_string"]

PRESET_HELP: dict[str, str] = {
    "top-tenants": "spend, calls and tokens per tenant over the last hour, most expensive first",
    "loops": "sessions with more than 100 llm_calls in the last hour (runaway agents)",
    "cost-by-model": "calls, tokens and spend per model today (UTC)",
    "budget": "each tenant's spend today against its plan's daily limit: ok, warning, exceeded",
    "quality": "hallucination rate, mean faithfulness, injections blocked per tenant, last 24 h",
    "slo": "the latest SLA snapshot of each tenant: tier, SLIs, breaches, error budget left",
}

TODAY_UTC = "toStartOfDay(now(), 'UTC')"


def sql_string(value: str) -> str:
    """A ClickHouse string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _decimal(value: object) -> str:
    return f"toDecimal128({sql_string(str(value))}, 12)"


def _in_list(values: Iterable[str]) -> str:
    return ", ".join(sql_string(v) for v in values)


TOP_TENANTS = """SELECT
    tenant_id,
    sum(cost_usd) AS spend_usd,
    sum(requests) AS requests,
    sum(errors) AS errors,
    sum(input_tokens) AS input_tokens,
    sum(output_tokens) AS output_tokens,
    sum(unknown_model_requests) AS unknown_model_requests
FROM rollups_1m
WHERE minute >= toStartOfMinute(now() - INTERVAL 1 HOUR)
GROUP BY tenant_id
ORDER BY spend_usd DESC, tenant_id
LIMIT 20"""

COST_BY_MODEL = f"""SELECT
    model,
    sum(requests) AS requests,
    sum(errors) AS errors,
    sum(input_tokens) AS input_tokens,
    sum(cached_input_tokens) AS cached_input_tokens,
    sum(output_tokens) AS output_tokens,
    sum(cost_usd) AS cost_usd,
    round(sum(latency_ms_sum) / requests, 1) AS mean_latency_ms
FROM rollups_1m
WHERE minute >= {TODAY_UTC}
GROUP BY model
ORDER BY cost_usd DESC, model"""


def loops_sql(min_calls: int = 100, window_seconds: int = 3600) -> str:
    """Sessions with more than ``min_calls`` llm_calls over the last ``window_seconds``."""
    return f"""SELECT
    tenant_id,
    session_id,
    count() AS llm_calls,
    sum(cost_usd) AS cost_usd,
    groupUniqArray(5)(agent_id) AS agents,
    min(ts) AS first_call,
    max(ts) AS last_call
FROM events
WHERE event_type = 'llm_call' AND session_id != ''
  AND ts >= now() - INTERVAL {int(window_seconds)} SECOND
GROUP BY tenant_id, session_id
HAVING llm_calls > {int(min_calls)}
ORDER BY llm_calls DESC, tenant_id, session_id
LIMIT 50"""


def quality_sql(since_seconds: int = 86400) -> str:
    """Quality per tenant over the last ``since_seconds`` (hallucination as score >= 0.5)."""
    return f"""SELECT
    tenant_id,
    countIf(event_type = 'evaluation' AND eval_name = 'hallucination') AS hallucination_evals,
    if(hallucination_evals = 0, NULL,
       round(countIf(event_type = 'evaluation' AND eval_name = 'hallucination' AND score >= 0.5)
             / hallucination_evals, 4)) AS hallucination_rate,
    countIf(event_type = 'evaluation' AND eval_name = 'faithfulness') AS faithfulness_evals,
    if(faithfulness_evals = 0, NULL,
       round(avgIf(score, event_type = 'evaluation' AND eval_name = 'faithfulness'), 4)) AS faithfulness_mean,
    if(countIf(event_type = 'evaluation' AND eval_name = 'groundedness') = 0, NULL,
       round(avgIf(score, event_type = 'evaluation' AND eval_name = 'groundedness'), 4)) AS groundedness_mean,
    countIf((event_type = 'guardrail' AND guardrail_kind = 'prompt_injection' AND guardrail_action = 'blocked')
            OR (event_type = 'tool_call' AND status = 'blocked_injection')) AS injections_blocked
FROM events
WHERE ts >= now() - INTERVAL {int(since_seconds)} SECOND
  AND event_type IN ('evaluation', 'guardrail', 'tool_call')
GROUP BY tenant_id
ORDER BY tenant_id"""


SLO_COLUMNS = (
    "tier",
    "window_end",
    "calls",
    "availability",
    "p95_latency_ms",
    "json_valid_rate",
    "groundedness",
    "cost_p95_usd",
    "error_budget_remaining",
    "breaches",
    "degraded_mode",
)


def slo_sql(since_seconds: int | None = None) -> str:
    """The latest ``sla_snapshots`` row of each tenant (over ``since_seconds`` if given).

    One ``argMax`` over a tuple: a plain ``argMax`` of a Nullable column skips NULLs and
    would show an older snapshot's value where the latest one measured nothing.
    """
    fields = ", ".join(SLO_COLUMNS)
    picked = ",\n    ".join(f"latest.{i + 1} AS {name}" for i, name in enumerate(SLO_COLUMNS))
    where = (
        f"\n    WHERE ts >= now() - INTERVAL {int(since_seconds)} SECOND" if since_seconds else ""
    )
    return f"""SELECT
    tenant_id,
    snapshot_ts,
    {picked}
FROM (
    SELECT tenant_id, max(ts) AS snapshot_ts, argMax(tuple({fields}), ts) AS latest
    FROM sla_snapshots{where}
    GROUP BY tenant_id
)
ORDER BY tenant_id"""


def budget_sql(policy: Policy) -> str:
    """Spend today (UTC) per tenant against its plan's daily limit, and the level reached.

    The plan limits are inlined from the policy: listed tenants by plan, everyone else on the
    default plan. Tenants listed in the policy appear even without spend today.
    """
    by_plan: dict[str, list[str]] = {}
    for tenant in sorted(policy.tenants):
        plan_name, _ = policy.plan_of(tenant)
        if plan_name != policy.default_plan:
            by_plan.setdefault(plan_name, []).append(tenant)
    default = policy.plans[policy.default_plan]
    plan_cases = "".join(
        f"\n        WHEN tenant_id IN ({_in_list(tenants)}) THEN {sql_string(plan)}"
        for plan, tenants in sorted(by_plan.items())
    )
    limit_cases = "".join(
        f"\n        WHEN tenant_id IN ({_in_list(tenants)}) THEN "
        f"{_decimal(policy.plans[plan].daily_budget_usd)}"
        for plan, tenants in sorted(by_plan.items())
    )
    plan_expr = (
        f"CASE{plan_cases}\n        ELSE {sql_string(policy.default_plan)} END"
        if by_plan
        else sql_string(policy.default_plan)
    )
    limit_expr = (
        f"CASE{limit_cases}\n        ELSE {_decimal(default.daily_budget_usd)} END"
        if by_plan
        else _decimal(default.daily_budget_usd)
    )
    listed = sorted(policy.tenants)
    zeros = (
        f"\n        UNION ALL\n        SELECT arrayJoin([{_in_list(listed)}]) AS tenant_id, "
        "toDecimal128(0, 12) AS spend"
        if listed
        else ""
    )
    warn = policy.budget.warn_at
    return f"""SELECT
    tenant_id,
    {plan_expr} AS plan,
    spend_usd,
    {limit_expr} AS budget_usd,
    round(toFloat64(spend_usd) / toFloat64(budget_usd) * 100, 1) AS used_pct,
    multiIf(spend_usd >= budget_usd, 'exceeded',
            toFloat64(spend_usd) >= toFloat64(budget_usd) * {warn!r}, 'warning',
            'ok') AS state
FROM (
    SELECT tenant_id, sum(spend) AS spend_usd
    FROM (
        SELECT toString(tenant_id) AS tenant_id, sum(cost_usd) AS spend
        FROM rollups_1m
        WHERE minute >= {TODAY_UTC}
        GROUP BY tenant_id{zeros}
    )
    GROUP BY tenant_id
)
ORDER BY used_pct DESC, tenant_id"""


def _loop_threshold(policy: Policy) -> tuple[int, int]:
    for spec in policy.rule_specs():
        if spec.name == "agent_loop":
            return int(spec.threshold), int(spec.window)
    return 100, 3600


def preset_sql(name: str, policy: Policy | None = None) -> str:
    """The SQL of preset ``name`` for ``policy`` (default: the built-in policy).

    Raises KeyError naming the known presets for an unknown name.
    """
    policy = policy or Policy()
    if name == "top-tenants":
        return TOP_TENANTS
    if name == "loops":
        return loops_sql(*_loop_threshold(policy))
    if name == "cost-by-model":
        return COST_BY_MODEL
    if name == "budget":
        return budget_sql(policy)
    if name == "quality":
        return quality_sql()
    if name == "slo":
        return slo_sql()
    raise KeyError(f"unknown preset {name!r}; known: {', '.join(PRESET_HELP)}")


PRESETS: dict[str, str] = {name: preset_sql(name) for name in PRESET_HELP}
"""Every preset's SQL for the default policy (``preset_sql`` for the policy in effect)."""
