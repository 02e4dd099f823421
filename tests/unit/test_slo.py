from datetime import UTC, datetime

import pytest

from streams.monitor import TenantState
from streams.policy import Policy
from streams.pricing import PriceTable
from streams.slo import BURN_WINDOWS, SliRow, SloEvaluator, burn_rate, error_budget_remaining, slis

POLICY = Policy.model_validate(
    {"tenants": {"goldie": {"tier": "gold"}, "bronzy": {"tier": "bronze"}}}
)
GOLD = POLICY.slo.tiers["gold"]
NOW = datetime(2026, 11, 22, tzinfo=UTC)


def row(tenant="goldie", latest=1_000_000.0, **fields):
    base = dict(
        tenant_id=tenant,
        latest=latest,
        calls=1000,
        ok=1000,
        latency_p95=500.0,
        latency_n=1000,
        json_reported=100,
        json_valid=100,
        groundedness_sum=90.0,
        groundedness_n=100,
        abstained=10,
        tool_calls=50,
        tool_ok=50,
        cost_p95=0.001,
        top_model="gpt-4o",
        burn_calls=(100, 600, 1200, 7000),
        burn_bad=(0, 0, 0, 0),
        budget_calls=100_000,
        budget_bad=0,
    )
    base.update(fields)
    return SliRow(**base)


def run(rows, states=None):
    states = {} if states is None else states
    evaluator = SloEvaluator(POLICY, PriceTable.shipped())
    out, snaps = evaluator.evaluate(rows, lambda t: states.setdefault(t, TenantState()), NOW)
    return out, snaps, states


def test_error_budget_arithmetic():
    assert error_budget_remaining(0, 0, 0.999) == 1.0
    assert error_budget_remaining(0, 10_000, 0.999) == 1.0
    assert error_budget_remaining(5, 10_000, 0.999) == pytest.approx(0.5)
    assert error_budget_remaining(20, 10_000, 0.999) == pytest.approx(-1.0)  # overspent twice
    assert burn_rate(10, 1000, 0.99) == pytest.approx(1.0)
    assert burn_rate(0, 0, 0.99) is None


def test_slis_are_read_against_the_tier():
    measured = slis(row(ok=997, json_valid=98, groundedness_sum=80.0), GOLD)
    assert measured["availability"].value == pytest.approx(0.997)
    assert measured["availability"].bad == pytest.approx(0.003) and measured[
        "availability"
    ].limit == pytest.approx(0.001)
    assert measured["json_valid"].value == pytest.approx(0.98)
    assert measured["groundedness"].value == pytest.approx(0.8)
    assert measured["latency"].target == 800


def test_gold_tenant_over_its_latency_target_alerts_and_degrades_once_then_recovers_once():
    out, snaps, states = run([row(latency_p95=1500.0)])
    assert [(a.rule, a.state, a.value, a.threshold) for a in out.alerts] == [
        ("slo_latency", "firing", 1500.0, 800)
    ]
    assert [(d.mode, d.state) for d in out.degrades] == [
        ("route_cheaper_model", "enter"),
        ("reduce_top_k", "enter"),
    ]
    assert "1500 ms over the 800 ms target of gold" in out.degrades[0].recommendation
    [snap] = snaps
    assert (snap.tier, snap.p95_latency_ms, snap.breaches) == ("gold", 1500.0, ["latency"])
    assert snap.degraded_mode == "reduce_top_k,route_cheaper_model"

    out, _, states = run([row(latency_p95=1400.0, latest=1_000_060.0)], states)
    assert out.alerts == [] and out.degrades == []  # still breached: nothing new
    out, _, states = run([row(latency_p95=780.0, latest=1_000_120.0)], states)
    assert out.alerts == []  # back under target, but inside the 10 % hysteresis band
    out, snaps, states = run([row(latency_p95=600.0, latest=1_000_180.0)], states)
    assert [(a.rule, a.state) for a in out.alerts] == [("slo_latency", "resolved")]
    assert [(d.mode, d.state) for d in out.degrades] == [
        ("route_cheaper_model", "exit"),
        ("reduce_top_k", "exit"),
    ]
    assert snaps[0].degraded_mode == ""


def test_bronze_tenant_at_1000_ms_meets_its_target():
    out, snaps, _ = run([row("bronzy", latency_p95=1000.0)])
    assert out.alerts == [] and snaps[0].breaches == []


def test_too_few_calls_give_no_verdict():
    out, _, _ = run([row(calls=10, latency_n=10, latency_p95=5000.0, ok=5)])
    assert out.alerts == []


def test_fast_burn_needs_both_windows():
    rate = 15 * (1 - GOLD.availability)  # burning 15x the sustainable rate
    long_only = row(burn_calls=(100, 600, 1200, 7000), burn_bad=(0, 0, round(1200 * rate), 0))
    out, _, _ = run([long_only])
    assert out.alerts == []
    both = row(
        burn_calls=(1000, 600, 10000, 7000),
        burn_bad=(round(1000 * rate), 0, round(10000 * rate), 0),
    )
    out, _, _ = run([both])
    [alert] = out.alerts
    assert (alert.rule, alert.labels["speed"], alert.severity) == (
        "error_budget_burn",
        "fast",
        "critical",
    )
    assert alert.value > 14.4
    assert len(BURN_WINDOWS) == 4


def test_excluded_tenants_get_no_snapshot():
    policy = Policy.model_validate({"slo": {"exclude_tenants": ["internal"]}})
    evaluator = SloEvaluator(policy, PriceTable.shipped())
    out, snaps = evaluator.evaluate(
        [row("internal", latency_p95=9999.0)], lambda t: TenantState(), NOW
    )
    assert (out.alerts, snaps) == ([], [])
