"""The ``llmtel query --preset`` queries against the real ClickHouse engine (chDB in process)."""

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from sinks.clickhouse import ClickHouseSink
from sinks.ddl import SLA_COLUMNS
from streams.parse import ParseLimits
from streams.pipeline import BatchProcessor, SourceRecord
from streams.policy import Policy
from streams.presets import PRESET_HELP, PRESETS, preset_sql, sql_string
from streams.pricing import PriceTable
from tests.factories import event, iso, record

NOW = datetime.now(UTC).replace(microsecond=0)
# Inside the last hour and inside today (UTC), even just after midnight.
BASE = max(NOW - timedelta(minutes=10), NOW.replace(hour=0, minute=0, second=0))

POLICY = Policy.model_validate(
    {
        "tenants": {
            "acme": {"plan": "pro"},
            "globex": {"plan": "enterprise", "tier": "gold"},
            "o'brien": {"plan": "pro"},
        },
        "budget": {"warn_at": 0.8},
    }
)


def at(seconds: float) -> str:
    return iso(BASE + timedelta(seconds=seconds))


def call(tenant, cost, model="gpt-4o", i=0, **fields):
    return event(tenant_id=tenant, timestamp=at(i * 0.01), cost_usd=cost, model=model, **fields)


def docs():
    out = [
        call("acme", "20.5", i=1),
        call("acme", "21.5", model="gpt-4o-mini", i=2),  # $42 of $50: warning
        call("shop", "5.25", i=3),  # $5.25 of $5: exceeded
        call("calm", "1", model="gpt-4o-mini", i=4),  # ok
        call("o'brien", "0.000000000001", i=5),  # one pico-dollar, kept exactly
    ]
    out += [
        call("bot", "0.01", model="gpt-4o-mini", i=10 + n, session_id="loop-1") for n in range(101)
    ]
    out += [
        call("bot", "0.01", model="gpt-4o-mini", i=200 + n, session_id="busy") for n in range(100)
    ]
    scores = [0.9, 0.1, 0.0, 0.7, 0.2, 0.0, 0.1, 0.6, 0.0, 0.3]  # 3 of 10 hallucinated
    out += [
        event("evaluation", tenant_id="initech", timestamp=at(i), name="hallucination", score=s)
        for i, s in enumerate(scores)
    ]
    out += [
        event("evaluation", tenant_id="initech", timestamp=at(20), name="faithfulness", score=0.8),
        event("evaluation", tenant_id="initech", timestamp=at(21), name="faithfulness", score=0.6),
        event("evaluation", tenant_id="initech", timestamp=at(22), name="groundedness", score=0.5),
    ]
    out += [
        event("guardrail", tenant_id="hooli", timestamp=at(30 + i), action="blocked")
        for i in range(4)
    ]
    out += [
        event("guardrail", tenant_id="hooli", timestamp=at(40), action="flagged"),
        event("tool_call", tenant_id="hooli", timestamp=at(41), status="blocked_injection"),
        event("tool_call", tenant_id="hooli", timestamp=at(42), status="ok"),
        # older than a day: outside the quality window
        event(
            "guardrail",
            tenant_id="hooli",
            timestamp=iso(NOW - timedelta(days=2)),
            action="blocked",
        ),
    ]
    return out


@pytest.fixture(scope="module")
def sink(tmp_path_factory):
    sink = ClickHouseSink(f"chdb://{tmp_path_factory.mktemp('presets')}/ch")
    sink.ensure_tables()

    async def sink_call(fn, *args):
        return fn(*args)

    async def publish(key, value, headers):
        raise AssertionError(f"refused: {dict(headers)}")

    processor = BatchProcessor(
        source="cluster-1/llm.events",
        topic="llm.events",
        prices=PriceTable.shipped(),
        limits=ParseLimits(),
        sink_call=sink_call,
        dlq_publish=publish,
        clock=lambda: NOW,
        retry_delay=0.01,
    )
    records = [SourceRecord(0, i, *record(doc)) for i, doc in enumerate(docs())]
    asyncio.run(processor.process(sink, records))
    names = [name for name, _ in SLA_COLUMNS]
    blank = dict.fromkeys(names)
    snapshots = [
        {**blank, "ts": NOW - timedelta(minutes=5), "tenant_id": "globex", "tier": "gold"}
        | {"availability": 0.999, "p95_latency_ms": 700.0, "groundedness": 0.9}
        | {"cost_p95_usd": 0.004, "calls": 40, "error_budget_remaining": 0.9},
        {**blank, "ts": NOW, "tenant_id": "globex", "tier": "gold", "availability": 0.998}
        | {"cost_p95_usd": 0.005, "calls": 30, "error_budget_remaining": 0.5}
        | {"degraded_mode": "reduce_top_k,route_cheaper_model", "breaches": ["latency"]},
        {**blank, "ts": NOW - timedelta(minutes=1), "tenant_id": "acme", "tier": "silver"}
        | {"availability": 1.0, "p95_latency_ms": 300.0, "json_valid_rate": 1.0}
        | {"groundedness": 0.95, "cost_p95_usd": 0.001, "abstention_rate": 0.0}
        | {"tool_success_rate": 1.0, "calls": 25, "error_budget_remaining": 1.0},
    ]
    defaults = {"window_end": NOW, "degraded_mode": "", "breaches": []}
    rows = [
        [snap[n] if snap[n] is not None else defaults.get(n) for n in names] for snap in snapshots
    ]
    sink.insert("sla_snapshots", names, rows, "sla-test")
    yield sink
    sink.close()


def run(sink, name, policy=POLICY):
    columns, _, rows = sink.query(preset_sql(name, policy))
    return [dict(zip(columns, row, strict=True)) for row in rows]


def test_every_preset_is_listed_and_runs_for_the_default_policy(sink):
    assert (
        set(PRESETS)
        == set(PRESET_HELP)
        == {
            "top-tenants",
            "loops",
            "cost-by-model",
            "budget",
            "quality",
            "slo",
        }
    )
    for sql in PRESETS.values():
        sink.query(sql)
    with pytest.raises(KeyError, match="known: top-tenants"):
        preset_sql("nope", POLICY)


def test_top_tenants_sums_the_last_hour_exactly(sink):
    rows = run(sink, "top-tenants")
    assert [(r["tenant_id"], r["spend_usd"], r["requests"]) for r in rows[:4]] == [
        ("acme", Decimal("42"), 2),
        ("shop", Decimal("5.25"), 1),
        ("bot", Decimal("2.01"), 201),
        ("calm", Decimal("1"), 1),
    ]
    assert rows[-1]["spend_usd"] == Decimal("0.000000000001")


def test_loops_lists_sessions_over_100_calls(sink):
    rows = run(sink, "loops")
    assert [(r["tenant_id"], r["session_id"], r["llm_calls"]) for r in rows] == [
        ("bot", "loop-1", 101)
    ]
    assert rows[0]["cost_usd"] == Decimal("1.01")
    stricter = Policy.model_validate({"rules": {"agent_loop": {"threshold": 99}}})
    assert [r["session_id"] for r in run(sink, "loops", stricter)] == ["loop-1", "busy"]


def test_cost_by_model_today(sink):
    rows = {r["model"]: r for r in run(sink, "cost-by-model")}
    assert rows["gpt-4o"]["cost_usd"] == Decimal("25.750000000001")
    assert rows["gpt-4o"]["requests"] == 3
    assert rows["gpt-4o-mini"]["cost_usd"] == Decimal("24.51")
    assert rows["gpt-4o-mini"]["requests"] == 203


def test_budget_uses_each_tenants_plan_limit_and_warn_at(sink):
    rows = {r["tenant_id"]: r for r in run(sink, "budget")}
    summary = {t: (r["plan"], r["budget_usd"], r["state"]) for t, r in rows.items()}
    assert summary == {
        "acme": ("pro", Decimal(50), "warning"),
        "shop": ("starter", Decimal(5), "exceeded"),
        "bot": ("starter", Decimal(5), "ok"),
        "calm": ("starter", Decimal(5), "ok"),
        "globex": ("enterprise", Decimal(500), "ok"),  # listed: shown without spend
        "o'brien": ("pro", Decimal(50), "ok"),
    }
    assert rows["acme"]["spend_usd"] == Decimal("42") and rows["acme"]["used_pct"] == 84.0
    assert rows["globex"]["spend_usd"] == 0
    assert list(rows)[:2] == ["shop", "acme"]  # most used first
    # a stricter policy moves the levels, and a plan change moves the limit
    strict = Policy.model_validate(
        {"plans": {"starter": {"daily_budget_usd": 100}}, "budget": {"warn_at": 0.5}}
    )
    rows = {r["tenant_id"]: r for r in run(sink, "budget", strict)}
    assert (rows["shop"]["budget_usd"], rows["shop"]["state"]) == (Decimal(100), "ok")
    assert (rows["acme"]["plan"], rows["acme"]["state"]) == ("starter", "ok")


def test_quality_per_tenant_over_24_hours(sink):
    rows = {r["tenant_id"]: r for r in run(sink, "quality")}
    initech = rows["initech"]
    assert (initech["hallucination_evals"], initech["hallucination_rate"]) == (10, 0.3)
    assert initech["faithfulness_mean"] == pytest.approx(0.7)
    assert initech["groundedness_mean"] == pytest.approx(0.5)
    assert initech["injections_blocked"] == 0
    hooli = rows["hooli"]
    assert hooli["injections_blocked"] == 5  # 4 guardrail blocks + 1 blocked tool call
    assert hooli["hallucination_rate"] is None and hooli["faithfulness_mean"] is None


def test_slo_shows_the_latest_snapshot_per_tenant(sink):
    rows = {r["tenant_id"]: r for r in run(sink, "slo")}
    assert set(rows) == {"acme", "globex"}
    globex = rows["globex"]
    assert (globex["tier"], globex["availability"], globex["calls"]) == ("gold", 0.998, 30)
    assert globex["p95_latency_ms"] is None  # the latest measured none, not the older 700
    assert globex["breaches"] == ["latency"]
    assert globex["degraded_mode"] == "reduce_top_k,route_cheaper_model"
    assert rows["acme"]["p95_latency_ms"] == 300.0


def test_sql_string_escapes_quotes_and_backslashes():
    assert sql_string("o'brien\\x") == "'o\\'brien\\\\x'"
