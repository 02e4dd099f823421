"""Running window totals: moved a minute at a time, they equal a fresh sum of the minutes."""

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from streams.parse import ParseLimits, parse_record
from streams.pricing import PriceTable
from streams.windows import ALL, Needs, Retention, TenantWindow
from tests.factories import event, iso, record

PRICES = PriceTable.shipped()
START = datetime(2026, 11, 20, 8, tzinfo=UTC)
LIMITS = ParseLimits(max_event_age=timedelta(days=3650))


def random_event(rng: random.Random, at: datetime) -> dict:
    kind = rng.choice(["llm_call", "llm_call", "evaluation", "feedback", "guardrail", "tool_call"])
    fields: dict = {"tenant_id": "t", "timestamp": iso(at)}
    if kind == "llm_call":
        fields.update(
            cost_usd=rng.choice(["0", "0.000001", "0.25", "1.5"]),  # "0": a free session
            latency_ms=rng.choice([None, rng.uniform(1, 9000)]),
            session_id=rng.choice([None, "a", "b", "c", f"s{rng.randrange(30)}"]),
            status=rng.choice(["ok", "ok", "error"]),
        )
    elif kind == "evaluation":
        fields.update(name=rng.choice(["faithfulness", "hallucination"]), score=rng.random())
    elif kind == "feedback":
        fields.update(score=rng.uniform(1, 5))
    return event(kind, **fields)


def fresh(window: TenantWindow, at: float, length: float, needs: Needs):
    """The summary summed from the minute buckets alone, its score sums added minute by
    minute in time order."""
    kept, window.runs = window.runs, {}
    try:
        summary = window.summary(at, length, needs)
    finally:
        window.runs = kept
    faith = feedback = 0.0
    for minute in range(int(at - length) // 60 * 60, int(at) // 60 * 60 + 60, 60):
        agg = window.minutes.get(minute)
        if agg is not None:
            faith += agg.faith_sum
            feedback += agg.feedback_sum
    if summary.faith_n or summary.feedback_n:
        return replace(summary, faith_sum=faith, feedback_sum=feedback)
    return summary


@pytest.mark.parametrize("seed", range(12))
def test_running_totals_equal_a_fresh_sum(seed):
    rng = random.Random(seed)
    window = TenantWindow()
    lengths = {300.0: Needs(latencies=True, sessions=False), 3600.0: ALL}
    at = START.timestamp()
    session_costs: list[tuple[int, int]] = []  # (minute, pico-USD) of each call with a session
    for _ in range(400):
        at += rng.choice([0, 1, 7, 30, 61, 240, 1800])  # mostly small steps, a few long gaps
        moment = at - rng.choice([0, 0, 0, 45, 200])  # some events arrive late
        ts = datetime.fromtimestamp(moment, UTC)
        [item], _ = parse_record(
            *record(random_event(rng, ts)), prices=PRICES, limits=LIMITS, now=ts
        )
        window.add(item.event, item.cost_pico, item.ts)
        if item.event.event_type == "llm_call" and item.event.session_id:
            session_costs.append((int(item.ts) // 60 * 60, item.cost_pico))
        if rng.random() < 0.3:
            window.evict(Retention(3600 + 300 + 60, 300 + 300 + 60, 3600 + 300 + 60))
        when = window.watermark - rng.choice([0, 0, 0, 90])  # now and then an earlier instant
        for length, needs in lengths.items():
            summary = window.summary(when, length, needs)
            assert summary == fresh(window, when, length, needs)
            assert summary.session_most == max(summary.session_calls.values(), default=0)
            if needs.sessions:  # every call with a session in the window's minutes
                lo, hi = int(when - length) // 60 * 60, int(when) // 60 * 60
                spent = sum(cost for minute, cost in session_costs if lo <= minute <= hi)
                assert summary.session_cost_sum == spent


def test_a_session_leaves_the_window_with_its_last_call_even_when_free():
    window = TenantWindow()
    t = START
    for i, cost in enumerate(["0", "0.5"]):
        doc = event(tenant_id="t", timestamp=iso(t + timedelta(minutes=i)), cost_usd=cost)
        doc["session_id"] = "free" if cost == "0" else "paid"
        [item], _ = parse_record(*record(doc), prices=PRICES, limits=LIMITS, now=t)
        window.add(item.event, item.cost_pico, item.ts)
    first = window.summary(t.timestamp() + 90, 3600)
    assert first.session_calls == {"free": 1, "paid": 1}
    assert first.measure("cost_per_session_usd") == (0.25, 2, {})
    later = window.summary(t.timestamp() + 3600 + 90, 3600)  # the free session's minute is out
    assert later.session_calls == {"paid": 1}
    assert later.measure("cost_per_session_usd") == (0.5, 1, {})
