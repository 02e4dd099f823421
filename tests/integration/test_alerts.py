"""Budgets and rules through the real broker and real worker processes."""

import os
import subprocess
import sys
import urllib.request
from datetime import UTC, datetime, timedelta

import orjson

from schemas import Alert, DegradeCommand
from tests.factories import event, iso
from tests.integration.harness import ROOT, consume, produce, wait_for

# Yesterday 10:00 UTC: far from a day boundary, well inside the accepted event age.
BASE = datetime.now(UTC).replace(hour=10, minute=0, second=0, microsecond=0) - timedelta(days=1)


def send(bootstrap, worker, docs):
    produce(
        bootstrap,
        worker.env["LLMTEL_EVENTS_TOPIC"],
        [(d["tenant_id"].encode(), orjson.dumps(d)) for d in docs],
    )


def alerts_of(bootstrap, worker, expected, timeout=60):
    return [
        Alert.model_validate_json(m.value())
        for m in consume(bootstrap, worker.env["LLMTEL_ALERTS_TOPIC"], expected, timeout)
    ]


def degrades_of(bootstrap, worker, expected, timeout=60):
    return [
        DegradeCommand.model_validate_json(m.value())
        for m in consume(bootstrap, worker.env["LLMTEL_DEGRADE_TOPIC"], expected, timeout)
    ]


def call(tenant, minute, cost, **fields):
    return event(
        tenant_id=tenant, timestamp=iso(BASE + timedelta(minutes=minute)), cost_usd=cost, **fields
    )


def clean_traffic(tenant, minutes):
    """Healthy calls of a pro tenant: nothing in it may raise an alert."""
    docs = []
    for m in range(minutes):
        for s in range(5):
            docs.append(
                event(
                    tenant_id=tenant,
                    timestamp=iso(BASE + timedelta(minutes=m, seconds=s * 10)),
                    cost_usd="0.002",
                    latency_ms=350,
                    input_tokens=900,
                    output_tokens=400,
                    session_id=f"{tenant}-{m}",
                )
            )
        docs.append(
            event(
                "evaluation",
                tenant_id=tenant,
                timestamp=iso(BASE + timedelta(minutes=m)),
                name="faithfulness",
                score=0.95,
            )
        )
    return docs


def test_starter_tenant_crossing_4_then_5_dollars_and_a_clean_tenant(
    bootstrap, start_worker, tmp_path
):
    policy = tmp_path / "policy.yaml"
    policy.write_text("tenants:\n  calm: {plan: pro}\n")
    worker = start_worker(LLMTEL_POLICY=str(policy))
    send(bootstrap, worker, clean_traffic("calm", 30))
    send(
        bootstrap,
        worker,
        [call("shop", 0, "3.90", model="gpt-4o"), call("shop", 1, "0.20", model="gpt-4o")],
    )
    wait_for(lambda: worker.scalar("SELECT count() FROM alerts") >= 1, what="the budget warning")
    send(
        bootstrap, worker, [call("shop", 2 + i, "0.25", model="gpt-4o") for i in range(6)]
    )  # $5.60

    alerts = alerts_of(
        bootstrap, worker, expected=3, timeout=20
    )  # waits for a third that must not come
    assert [(a.rule, a.state, a.tenant_id) for a in alerts] == [
        ("budget_warning", "firing", "shop"),
        ("budget_exceeded", "firing", "shop"),
    ]
    assert (alerts[0].value, alerts[0].threshold, alerts[0].labels["plan"]) == (
        4.10,
        4.0,
        "starter",
    )
    assert alerts[1].value == 5.10 and alerts[1].started_at == BASE + timedelta(minutes=5)
    [enter] = degrades_of(bootstrap, worker, expected=2, timeout=10)
    assert (enter.tenant_id, enter.mode, enter.state, enter.reason) == (
        "shop",
        "route_cheaper_model",
        "enter",
        "budget_exceeded",
    )
    assert enter.recommendation.startswith("route gpt-4o to ")
    stored = worker.query("SELECT rule, state FROM alerts FINAL ORDER BY event_time")
    assert stored == [["budget_warning", "firing"], ["budget_exceeded", "firing"]]
    assert worker.query("SELECT tenant_id, mode, state FROM degrade_events FINAL") == [
        ["shop", "route_cheaper_model", "enter"]
    ]

    with urllib.request.urlopen(
        f"http://127.0.0.1:{worker.web_port}/api/status", timeout=30
    ) as response:
        status = orjson.loads(response.read())
    shop = next(t for t in status["tenants"] if t["tenant_id"] == "shop")
    assert (shop["plan"], shop["level"], shop["budget_usd"]) == ("starter", "exceeded", 5.0)
    assert shop["degraded"] == {"route_cheaper_model": ["budget_exceeded"]}
    assert shop["spend_usd"] == 5.6
    firing = {(a["tenant_id"], a["rule"]) for a in status["alerts_firing"]}
    assert firing == {("shop", "budget_warning"), ("shop", "budget_exceeded")}
    assert status["throughput"]["events_consumed"] >= 188

    printed = subprocess.run(
        [sys.executable, "-m", "streams.cli", "alerts", "--from-beginning", "--idle-exit", "3"],
        env={**os.environ, **worker.env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout.splitlines()
    assert len(printed) == 3, printed  # the two topics interleave: no order between them
    assert any("FIRING" in x and "budget_warning" in x and "tenant=shop" in x for x in printed)
    assert any("FIRING" in x and "budget_exceeded" in x for x in printed)
    assert any("DEGRADE" in x and "route_cheaper_model" in x for x in printed)


def test_budget_state_is_kept_across_a_worker_restart(bootstrap, start_worker, tmp_path):
    data = tmp_path / "data"
    worker = start_worker(data_dir=data)
    send(bootstrap, worker, [call("shop", 0, "4.50")])
    wait_for(lambda: worker.scalar("SELECT count() FROM alerts") == 1, what="the budget warning")
    worker.stop()
    worker = start_worker(data_dir=data)
    send(bootstrap, worker, [call("shop", 1, "0.40"), call("shop", 2, "0.40")])  # $5.30
    wait_for(lambda: worker.scalar("SELECT count() FROM events") == 3, what="all calls stored")
    alerts = alerts_of(bootstrap, worker, expected=3, timeout=20)
    assert [(a.rule, a.state) for a in alerts] == [
        ("budget_warning", "firing"),
        ("budget_exceeded", "firing"),
    ]
    assert alerts[1].value == 5.30


def test_hallucination_surge_fires_once_and_resolves_once_in_event_time(bootstrap, start_worker):
    worker = start_worker()
    docs = []
    for minute in range(170):
        share = 5 if 30 <= minute < 70 else 0  # half hallucinated for 40 minutes
        for s in range(10):
            at = BASE + timedelta(minutes=minute, seconds=s * 6)
            docs.append(
                event(
                    "evaluation",
                    tenant_id="rag",
                    timestamp=iso(at),
                    name="hallucination",
                    score=0.9 if s < share else 0.1,
                )
            )
    send(bootstrap, worker, docs)
    alerts = alerts_of(bootstrap, worker, expected=3, timeout=30)
    assert [(a.rule, a.state) for a in alerts] == [
        ("hallucination_rate_high", "firing"),
        ("hallucination_rate_high", "resolved"),
    ]
    assert alerts[0].alert_id == alerts[1].alert_id
    assert alerts[0].event_time - alerts[0].started_at == timedelta(minutes=15)
    assert BASE + timedelta(minutes=30) < alerts[0].started_at < BASE + timedelta(minutes=70)
    assert BASE + timedelta(minutes=70) < alerts[1].event_time < BASE + timedelta(minutes=170)
    modes = [(d.mode, d.state) for d in degrades_of(bootstrap, worker, expected=3, timeout=5)]
    assert modes == [("safe_answers", "enter"), ("safe_answers", "exit")]


def test_spend_across_tenants_raises_the_global_cost_spike(bootstrap, start_worker, tmp_path):
    policy = tmp_path / "policy.yaml"
    policy.write_text("default_plan: pro\n")  # $50 a day each: no budget alert in the way
    worker = start_worker(LLMTEL_POLICY=str(policy))
    # ten tenants, $0.50 each a minute: $5 a minute in all, $100 over 20 minutes, $10 per tenant
    calls = [
        call(f"team-{t}", m, "0.50", input_tokens=1000, output_tokens=500)
        for m in range(20)
        for t in range(10)
    ]
    send(bootstrap, worker, calls)
    alerts = alerts_of(bootstrap, worker, expected=2, timeout=30)
    assert [(a.rule, a.state, a.tenant_id) for a in alerts] == [
        ("cost_spike_global", "firing", None)
    ]
    assert alerts[0].value > 50
    assert worker.query("SELECT rule, tenant_id FROM alerts FINAL") == [["cost_spike_global", None]]
