"""Prometheus metrics computed from batches of real parsed events, read back from the registry."""

import itertools
import json
import re
from datetime import timedelta
from decimal import Decimal
from importlib import resources
from pathlib import Path

import prometheus_client
import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from schemas.outputs import Alert, DegradeCommand
from streams.metrics import Metrics
from streams.parse import ParseLimits, parse_record
from streams.pipeline import BatchResult, FreshEvent, SourceRecord
from streams.pricing import PriceTable
from tests.factories import NOW, event, iso, record

PRICES = PriceTable.shipped()
PRICE_FILE = yaml.safe_load(resources.files("streams").joinpath("prices.yaml").read_text())
DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
_offsets = itertools.count()


def batch(*docs, partition=0, bad=()):
    """A BatchResult of ``docs`` (each parsed for real) and of ``bad`` raw record values."""
    fresh, rejected, consumed = [], [], 0
    for doc in docs:
        offset = next(_offsets)
        items, refused = parse_record(*record(doc), prices=PRICES, limits=ParseLimits(), now=NOW)
        assert refused == [], refused
        fresh.extend(FreshEvent(partition, offset, item) for item in items)
        consumed += 1
    for value in bad:
        offset = next(_offsets)
        source = SourceRecord(partition, offset, b"acme", value)
        items, refused = parse_record(b"acme", value, prices=PRICES, limits=ParseLimits(), now=NOW)
        rejected.extend((source, r) for r in refused)
        consumed += 1
    return BatchResult(
        consumed=consumed, accepted=fresh, rejected=rejected, skipped=0, token="test"
    )


def at(**delta):
    """An ISO timestamp ``delta`` before the tests' NOW."""
    return iso(NOW - timedelta(**delta))


@pytest.fixture
def registry():
    return CollectorRegistry()


@pytest.fixture
def metrics(registry):
    metrics = Metrics(registry)
    metrics._clock = NOW.timestamp  # the events are stamped relative to NOW, not to the wall clock
    return metrics


def value(registry, metric, /, **labels):
    return registry.get_sample_value(metric, labels)


def test_llm_calls_count_requests_tokens_and_cache_hits(registry, metrics):
    metrics.observe_batch(
        batch(
            event(agent_id="bot", model="gpt-4o", input_tokens=100, cached_input_tokens=40),
            event(agent_id="bot", model="gpt-4o", input_tokens=50, output_tokens=7, cache="exact"),
            event(agent_id="bot", model="gpt-4o", status="error", cache="semantic"),
            event(agent_id="bot", model="gpt-4o", tenant_id="globex", cache="exact"),
        ),
        0.05,
    )
    labels = {"agent_id": "bot", "model": "gpt-4o"}
    assert value(registry, "llm_requests_total", **labels, tenant_id="acme", status="ok") == 2
    assert value(registry, "llm_requests_total", **labels, tenant_id="acme", status="error") == 1
    assert value(registry, "llm_requests_total", **labels, tenant_id="globex", status="ok") == 1
    # the factory's default is 1000 input and 200 output tokens
    assert value(registry, "llm_tokens_total", **labels, token_type="input") == 100 + 50 + 2000
    assert value(registry, "llm_tokens_total", **labels, token_type="output") == 200 + 7 + 400
    assert value(registry, "llm_tokens_total", **labels, token_type="cached_input") == 40
    assert value(registry, "cache_hits_total", cache_type="exact") == 2
    assert value(registry, "cache_hits_total", cache_type="semantic") == 1
    assert value(registry, "cache_hits_total", cache_type="none") is None


def test_cost_sums_are_exact_across_batches(registry, metrics):
    labels = {"agent_id": "bot", "model": "gpt-4o", "tenant_id": "acme"}
    for _ in range(10):  # ten batches of $0.1: a float counter would say 0.9999999999999999
        metrics.observe_batch(batch(event(agent_id="bot", model="gpt-4o", cost_usd="0.1")), 0.01)
    assert value(registry, "llm_cost_usd_total", **labels) == 1.0
    metrics.observe_batch(
        batch(
            event(agent_id="bot", model="gpt-4o", cost_usd="0.000000000001"),
            event(agent_id="bot", model="gpt-4o", cost_usd=0.2),
        ),
        0.01,
    )
    assert value(registry, "llm_cost_usd_total", **labels) == float(Decimal("1.200000000001"))


def test_cost_from_the_price_table(registry, metrics):
    metrics.observe_batch(
        batch(
            event(
                agent_id="bot",
                model="gpt-4o-mini",
                input_tokens=12_345,
                cached_input_tokens=2_000,
                output_tokens=678,
            ),
            event(agent_id="bot", model="in-house-model"),  # unknown model: costs 0
        ),
        0.01,
    )
    p = PRICE_FILE["models"]["gpt-4o-mini"]
    expected = (
        (12_345 - 2_000) * Decimal(p["input"])
        + 2_000 * Decimal(p["cached_input"])
        + 678 * Decimal(p["output"])
    ) / 1_000_000
    cost = value(
        registry, "llm_cost_usd_total", agent_id="bot", model="gpt-4o-mini", tenant_id="acme"
    )
    assert cost == float(expected)
    unknown = value(
        registry, "llm_cost_usd_total", agent_id="bot", model="in-house-model", tenant_id="acme"
    )
    assert unknown == 0.0


def test_latency_histograms(registry, metrics):
    metrics.observe_batch(
        batch(
            *(
                event(agent_id="bot", model="gpt-4o", latency_ms=ms)
                for ms in (50, 100, 100.5, 300, 4000, 20000)
            ),
            event(agent_id="bot", model="gpt-4o"),  # no latency: not observed
            event(agent_id="other", model="gpt-4o", latency_ms=700),
            *(event("rag_retrieval", latency_ms=ms) for ms in (5, 10, 60, 2000)),
        ),
        0.01,
    )
    labels = {"model": "gpt-4o", "agent_id": "bot"}
    expected = {
        "100.0": 2,
        "300.0": 4,
        "500.0": 4,
        "1000.0": 4,
        "2000.0": 4,
        "5000.0": 5,
        "10000.0": 5,
        "+Inf": 6,
    }
    for le, count in expected.items():
        assert value(registry, "llm_latency_ms_bucket", **labels, le=le) == count, le
    assert value(registry, "llm_latency_ms_count", **labels) == 6
    assert value(registry, "llm_latency_ms_sum", **labels) == 50 + 100 + 100.5 + 300 + 4000 + 20000
    assert value(registry, "llm_latency_ms_count", model="gpt-4o", agent_id="other") == 1

    rag = {"10.0": 2, "50.0": 2, "100.0": 3, "200.0": 3, "500.0": 3, "1000.0": 3, "+Inf": 4}
    for le, count in rag.items():
        assert value(registry, "rag_retrieval_latency_ms_bucket", le=le) == count, le
    assert value(registry, "rag_retrieval_latency_ms_sum") == 5 + 10 + 60 + 2000


def test_latency_histograms_accumulate_across_batches(registry, metrics):
    for ms in (120, 120, 9000):
        metrics.observe_batch(batch(event(agent_id="a", model="m", latency_ms=ms)), 0.01)
    labels = {"model": "m", "agent_id": "a"}
    assert value(registry, "llm_latency_ms_bucket", **labels, le="300.0") == 2
    assert value(registry, "llm_latency_ms_bucket", **labels, le="10000.0") == 3
    assert value(registry, "llm_latency_ms_sum", **labels) == 9240


def test_tools_guardrails_evaluations_and_feedback(registry, metrics):
    metrics.observe_batch(
        batch(
            event("tool_call", tool_name="search", agent_id="bot"),
            event("tool_call", tool_name="search", agent_id="bot"),
            event("tool_call", tool_name="search", agent_id="bot", status="error"),
            event("tool_call", tool_name="shell", agent_id="bot", status="blocked_injection"),
            event("guardrail", kind="prompt_injection", action="blocked"),
            event("guardrail", kind="prompt_injection", action="flagged"),
            event("guardrail", kind="pii", action="blocked"),
            event("evaluation", name="hallucination", score=0.5),
            event("evaluation", name="hallucination", score=0.49),
            event("evaluation", name="hallucination", score=1),
            event("evaluation", name="groundedness", score=0.9),
            event("feedback", score=5),
            event("feedback", score=2),
        ),
        0.01,
    )
    tool = {"tool_name": "search", "agent_id": "bot"}
    assert value(registry, "tool_executions_total", **tool, status="ok") == 2
    assert value(registry, "tool_executions_total", **tool, status="error") == 1
    assert (
        value(
            registry,
            "tool_executions_total",
            tool_name="shell",
            agent_id="bot",
            status="blocked_injection",
        )
        == 1
    )
    assert value(registry, "prompt_injections_blocked_total") == 2  # guardrail + blocked tool
    assert value(registry, "hallucinations_total") == 2
    assert value(registry, "llm_evaluations_total", name="hallucination") == 3
    assert value(registry, "llm_evaluations_total", name="groundedness") == 1
    assert value(registry, "user_feedback_score_count") == 2
    assert value(registry, "user_feedback_score_sum") == 7


def test_pipeline_counters(registry, metrics):
    result = batch(
        event(),
        [event(), event()],  # one record holding two events
        bad=[b"not json", b"[]", b'{"event_type": "nope"}'],
    )
    metrics.observe_batch(result, 0.042)
    assert value(registry, "llmtel_events_consumed_total") == 5
    assert value(registry, "llmtel_events_rejected_total", reason="not_json") == 1
    assert value(registry, "llmtel_events_rejected_total", reason="empty_array") == 1
    assert value(registry, "llmtel_events_rejected_total", reason="unknown_event_type") == 1
    assert value(registry, "llmtel_batch_size_count") == 1
    assert value(registry, "llmtel_batch_size_sum") == 5
    assert value(registry, "llmtel_batch_size_bucket", le="1.0") == 0
    assert value(registry, "llmtel_batch_size_bucket", le="10.0") == 1
    assert value(registry, "llmtel_batch_seconds_sum") == 0.042
    assert value(registry, "llmtel_batch_seconds_bucket", le="0.05") == 1
    assert value(registry, "llmtel_batch_seconds_bucket", le="0.025") == 0

    metrics.observe_insert("events", 0.2, True)
    metrics.observe_insert("events", 3.0, False)
    metrics.observe_insert("rollups_1m", 0.01, True)
    assert value(registry, "llmtel_clickhouse_insert_seconds_count", table="events") == 2
    assert value(registry, "llmtel_clickhouse_insert_seconds_sum", table="events") == 3.2
    assert value(registry, "llmtel_clickhouse_insert_failures_total", table="events") == 1
    assert value(registry, "llmtel_clickhouse_insert_failures_total", table="rollups_1m") is None

    metrics.set_lag(3, 1200)
    metrics.set_lag(3, 7)
    metrics.set_lag(0, 0)
    assert value(registry, "llmtel_consumer_lag", partition="3") == 7
    assert value(registry, "llmtel_consumer_lag", partition="0") == 0


def _alert(alert_id, state, rule="AgentErrorRateHigh", severity="critical"):
    return Alert(
        alert_id=alert_id,
        rule=rule,
        state=state,
        severity=severity,
        tenant_id="acme",
        value=0.2,
        threshold=0.1,
        window="5m",
        started_at=NOW,
        event_time=NOW,
    )


def _degrade(tenant, mode, state):
    return DegradeCommand(
        tenant_id=tenant,
        mode=mode,
        state=state,
        reason="budget_exceeded",
        recommendation="route to gpt-4o-mini",
        event_time=NOW,
    )


def test_alerts_firing_and_degraded_tenants(registry, metrics):
    firing = {"rule": "AgentErrorRateHigh", "severity": "critical"}
    metrics.observe_alert(_alert("a1", "firing"))
    metrics.observe_alert(_alert("a2", "firing"))
    metrics.observe_alert(_alert("a1", "firing"))  # republished: one episode still
    metrics.observe_alert(_alert("c1", "firing", rule="LLMLatencyHigh", severity="warning"))
    assert value(registry, "llmtel_alerts_firing", **firing) == 2
    assert (
        value(registry, "llmtel_alerts_published_total", rule="AgentErrorRateHigh", state="firing")
        == 3
    )
    metrics.observe_alert(_alert("a1", "resolved"))
    metrics.observe_alert(_alert("zz", "resolved"))  # fired before a restart: never below 0
    assert value(registry, "llmtel_alerts_firing", **firing) == 1
    metrics.observe_alert(_alert("a2", "resolved"))
    assert value(registry, "llmtel_alerts_firing", **firing) == 0
    assert value(registry, "llmtel_alerts_firing", rule="LLMLatencyHigh", severity="warning") == 1
    published = value(
        registry, "llmtel_alerts_published_total", rule="AgentErrorRateHigh", state="resolved"
    )
    assert published == 3

    metrics.observe_degrade(_degrade("acme", "route_cheaper_model", "enter"))
    metrics.observe_degrade(_degrade("globex", "route_cheaper_model", "enter"))
    metrics.observe_degrade(_degrade("acme", "block", "enter"))
    assert value(registry, "llmtel_degraded_tenants", mode="route_cheaper_model") == 2
    assert value(registry, "llmtel_degraded_tenants", mode="block") == 1
    metrics.observe_degrade(_degrade("acme", "route_cheaper_model", "exit"))
    metrics.observe_degrade(_degrade("acme", "route_cheaper_model", "exit"))
    assert value(registry, "llmtel_degraded_tenants", mode="route_cheaper_model") == 1
    assert (
        value(registry, "llmtel_degrades_published_total", mode="route_cheaper_model", state="exit")
        == 2
    )


def test_tenant_labels_off_folds_every_tenant_into_all(registry):
    metrics = Metrics(registry, tenant_labels=False)
    metrics.observe_batch(
        batch(
            event(agent_id="bot", model="m", tenant_id="acme", cost_usd="1.5"),
            event(agent_id="bot", model="m", tenant_id="globex", cost_usd="2.25"),
        ),
        0.01,
    )
    labels = {"agent_id": "bot", "model": "m", "tenant_id": "_all"}
    assert value(registry, "llm_requests_total", **labels, status="ok") == 2
    assert value(registry, "llm_cost_usd_total", **labels) == 3.75
    assert (
        value(registry, "llm_cost_usd_total", agent_id="bot", model="m", tenant_id="acme") is None
    )
    metrics.set_budget_remaining("acme", 40.0)
    metrics.set_budget_remaining("globex", 12.5)
    assert value(registry, "daily_budget_remaining_usd", tenant_id="_all") == 12.5
    text = generate_latest(registry).decode()
    assert 'tenant_id="acme"' not in text and 'tenant_id="globex"' not in text


def test_max_tenants_labels_later_tenants_other(registry):
    metrics = Metrics(registry, max_tenants=2)
    docs = [
        event(agent_id="bot", model="m", tenant_id=tenant, cost_usd="1")
        for tenant in ("t1", "t2", "t3", "t4", "t1")
    ]
    metrics.observe_batch(batch(*docs[:3]), 0.01)
    metrics.observe_batch(batch(*docs[3:]), 0.01)

    def requests(tenant):
        return value(
            registry, "llm_requests_total", agent_id="bot", model="m", tenant_id=tenant, status="ok"
        )

    assert (requests("t1"), requests("t2"), requests("_other")) == (2, 1, 2)
    assert requests("t3") is None and requests("t4") is None
    assert value(registry, "llm_cost_usd_total", agent_id="bot", model="m", tenant_id="_other") == 2

    metrics.set_budget_remaining("t1", 99.0)
    metrics.set_budget_remaining("t3", 10.0)
    metrics.set_budget_remaining("t4", 30.0)
    metrics.set_budget_remaining("t9", 20.0)  # a new tenant beyond the cap
    assert value(registry, "daily_budget_remaining_usd", tenant_id="t1") == 99.0
    # a shared label shows the tenant closest to running out
    assert value(registry, "daily_budget_remaining_usd", tenant_id="_other") == 10.0
    metrics.set_budget_remaining("t3", 50.0)  # t3's new day: t9 is now the lowest
    assert value(registry, "daily_budget_remaining_usd", tenant_id="_other") == 20.0
    assert value(registry, "daily_budget_remaining_usd", tenant_id="t9") is None


def test_max_tenants_must_not_be_negative(registry):
    with pytest.raises(ValueError, match="max_tenants"):
        Metrics(registry, max_tenants=-1)


def test_rag_faithfulness_is_absent_until_a_score_then_the_hour_mean(registry, metrics):
    assert value(registry, "rag_faithfulness") is None
    metrics.observe_batch(
        batch(
            event(timestamp=at(hours=4)),
            event("evaluation", name="hallucination", score=0.0, timestamp=at(hours=4)),
            event("evaluation", name="groundedness", score=0.1, timestamp=at(hours=4)),
        ),
        0.01,
    )
    assert value(registry, "rag_faithfulness") is None
    assert "rag_faithfulness" not in generate_latest(registry).decode()

    metrics.observe_batch(
        batch(
            event("evaluation", name="faithfulness", score=0.2, timestamp=at(hours=3)),
            event("evaluation", name="faithfulness", score=0.4, timestamp=at(hours=2, minutes=30)),
        ),
        0.01,
    )
    assert value(registry, "rag_faithfulness") == pytest.approx(0.3)
    # an hour and a half later in event time: 0.2 (3 h ago) leaves the window, 0.4 stays
    metrics.observe_batch(
        batch(
            event("evaluation", name="faithfulness", score=1.0, timestamp=at(hours=1, minutes=31))
        ),
        0.01,
    )
    assert value(registry, "rag_faithfulness") == pytest.approx(0.7)
    # a late score, older than the window, is ignored
    metrics.observe_batch(
        batch(event("evaluation", name="faithfulness", score=0.0, timestamp=at(hours=4))), 0.01
    )
    assert value(registry, "rag_faithfulness") == pytest.approx(0.7)
    # any event moves event time on: once no score is left in the hour, the gauge is absent
    metrics.observe_batch(batch(event(timestamp=at(minutes=31))), 0.01)
    assert value(registry, "rag_faithfulness") is None


def _sessions(registry, agent):
    return value(registry, "active_sessions", agent_id=agent)


def test_active_sessions_count_distinct_sessions_and_expire(registry, metrics):
    metrics.observe_batch(
        batch(
            event(agent_id="a", session_id="s1", timestamp=at(minutes=30)),
            event(agent_id="a", session_id="s2", timestamp=at(minutes=30)),
            event(agent_id="a", session_id="s1", timestamp=at(minutes=29)),
            event("tool_call", agent_id="b", session_id="s3", timestamp=at(minutes=30)),
            event(agent_id="b", timestamp=at(minutes=30)),  # no session
        ),
        0.01,
    )
    assert (_sessions(registry, "a"), _sessions(registry, "b")) == (2, 1)

    # s1 again 3 minutes later: the watermark is 27 min ago, nothing is 5 min older than it
    metrics.observe_batch(
        batch(event(agent_id="a", session_id="s1", timestamp=at(minutes=27))), 0.01
    )
    assert (_sessions(registry, "a"), _sessions(registry, "b")) == (2, 1)

    # 4 minutes on: s2 and s3 (last seen 30 min ago) expire, s1 (27 min ago) stays
    metrics.observe_batch(
        batch(event("feedback", agent_id="b", session_id="s4", timestamp=at(minutes=25))), 0.01
    )
    assert (_sessions(registry, "a"), _sessions(registry, "b")) == (1, 1)

    # a late event older than the window does not bring a session back
    metrics.observe_batch(
        batch(event(agent_id="a", session_id="s2", timestamp=at(minutes=40))), 0.01
    )
    assert _sessions(registry, "a") == 1

    # the same session id under two agents counts once for each
    metrics.observe_batch(
        batch(event(agent_id="b", session_id="s1", timestamp=at(minutes=25))), 0.01
    )
    assert (_sessions(registry, "a"), _sessions(registry, "b")) == (1, 2)

    # half an hour on, every session has expired
    metrics.observe_batch(batch(event(timestamp=at(minutes=1))), 0.01)
    assert (_sessions(registry, "a"), _sessions(registry, "b")) == (0, 0)


def test_an_event_from_the_future_does_not_expire_every_session(registry, metrics):
    metrics.observe_batch(
        batch(event(agent_id="a", session_id="s1", timestamp=at(minutes=2))), 0.01
    )
    # accepted (within the hour ahead the parser allows), but event time stops at the clock
    metrics.observe_batch(
        batch(event(agent_id="a", session_id="s2", timestamp=at(minutes=-50))), 0.01
    )
    assert _sessions(registry, "a") == 2


def test_active_sessions_memory_is_capped(registry):
    class Small(Metrics):
        MAX_SESSIONS = 3

    metrics = Small(registry)
    metrics.observe_batch(
        batch(
            *(
                event(agent_id="a", session_id=f"s{i}", timestamp=at(minutes=10, seconds=-i))
                for i in range(5)
            )
        ),
        0.01,
    )
    assert _sessions(registry, "a") == 3  # the two seen least recently were dropped
    assert len(metrics._sessions._last) == 3


def _promql_names(expr):
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(by|without)\s*\([^)]*\)", "", expr)
    words = re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()", expr)
    return {w for w in words if w not in {"or", "and", "unless"}}


def test_every_series_the_deploy_files_use_is_exported(registry, metrics):
    alerts = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    exprs = [rule["expr"] for group in alerts["groups"] for rule in group["rules"]]
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "llmtel.json").read_text())

    def panels(items):
        for panel in items:
            yield panel
            yield from panels(panel.get("panels", []))

    exprs += [
        target["expr"]
        for panel in panels(dashboard["panels"])
        for target in panel.get("targets", [])
        if "expr" in target
    ]
    used = set().union(*map(_promql_names, exprs))
    assert {"llm_cost_usd_total", "rag_faithfulness", "llmtel_consumer_lag"} <= used

    metrics.observe_batch(
        batch(
            *(
                event(kind, agent_id="bot", session_id="s1")
                for kind in ("llm_call", "tool_call", "rag_retrieval", "feedback", "guardrail")
            ),
            event(agent_id="bot", cache="exact", latency_ms=10),
            event("evaluation", name="faithfulness", score=0.8),
            event("evaluation", name="hallucination", score=0.8),
        ),
        0.01,
    )
    metrics.observe_alert(_alert("a1", "firing"))
    metrics.observe_degrade(_degrade("acme", "block", "enter"))
    metrics.set_lag(0, 5)
    exported = {
        sample.name
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        for sample in family.samples
    }
    assert used - exported == set()


def test_metrics_stay_on_their_registry():
    first, second = CollectorRegistry(), CollectorRegistry()
    Metrics(first).observe_batch(batch(event(agent_id="x", model="m", cost_usd="1")), 0.01)
    Metrics(second)
    labels = {"agent_id": "x", "model": "m", "tenant_id": "acme"}
    assert first.get_sample_value("llm_cost_usd_total", labels) == 1
    assert second.get_sample_value("llm_cost_usd_total", labels) is None
    assert prometheus_client.REGISTRY.get_sample_value("llmtel_events_consumed_total") is None


def test_events_read_again_are_counted_once(registry, metrics):
    def call(cost):
        return event(agent_id="a", model="m", cost_usd=cost, session_id=f"s{cost}")

    first = batch(call("1"), [call("2"), call("16")])  # the array: two events, one offset
    metrics.observe_batch(first, 0.01)
    # after a rebalance the batch is read again, followed by a new record
    new = batch(call("4"))
    replay = first._replace(consumed=3, accepted=first.accepted + new.accepted)
    metrics.observe_batch(replay, 0.01)
    # offsets are per partition: offset 0 of another partition is new
    other = [f._replace(partition=1, offset=0) for f in batch(call("8")).accepted]
    metrics.observe_batch(first._replace(consumed=1, accepted=other), 0.01)

    labels = {"agent_id": "a", "model": "m", "tenant_id": "acme"}
    assert value(registry, "llm_cost_usd_total", **labels) == 31
    assert value(registry, "llm_requests_total", **labels, status="ok") == 5
    assert value(registry, "active_sessions", agent_id="a") == 5
    assert value(registry, "llmtel_events_consumed_total") == 2 + 3 + 1  # records, as read
