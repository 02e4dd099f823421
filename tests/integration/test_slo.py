"""SLOs through the real broker and a real worker: the SLA watchdog, alerts, degrade, snapshots."""

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import orjson

from schemas import Alert, DegradeCommand
from tests.factories import event, iso
from tests.integration.harness import ROOT, consume, produce, wait_for

BASE = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=70)


def calls(tenant, minutes, latency_ms):
    return [
        event(
            tenant_id=tenant,
            timestamp=iso(BASE + timedelta(minutes=m, seconds=s * 3)),
            latency_ms=latency_ms,
            cost_usd="0.0001",
            input_tokens=1000,
            output_tokens=500,
            json_valid=True,
        )
        for m in minutes
        for s in range(20)
    ]


def send(bootstrap, worker, docs):
    produce(
        bootstrap,
        worker.env["LLMTEL_EVENTS_TOPIC"],
        [(d["tenant_id"].encode(), orjson.dumps(d)) for d in docs],
    )


def test_gold_tenant_over_its_latency_target_is_degraded_until_it_recovers(
    bootstrap, start_worker, tmp_path
):
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "tenants:\n  goldie: {tier: gold}\n  bronzy: {tier: bronze}\nslo:\n  interval: 2s\n"
    )
    worker = start_worker(LLMTEL_POLICY=str(policy))
    send(bootstrap, worker, calls("goldie", range(30), 1500) + calls("bronzy", range(30), 1000))

    alerts_topic, degrade_topic = (
        worker.env["LLMTEL_ALERTS_TOPIC"],
        worker.env["LLMTEL_DEGRADE_TOPIC"],
    )
    [firing] = [
        Alert.model_validate_json(m.value())
        for m in consume(bootstrap, alerts_topic, 1, timeout=60)
    ]
    assert (firing.rule, firing.state, firing.tenant_id, firing.value, firing.threshold) == (
        "slo_latency",
        "firing",
        "goldie",
        1500,
        800,
    )
    wait_for(
        lambda: worker.scalar(
            "SELECT count() FROM sla_snapshots WHERE tenant_id = 'goldie' AND has(breaches, 'latency')"
        ),
        what="a snapshot of the breach",
    )
    snap = worker.query(
        "SELECT tier, p95_latency_ms, degraded_mode, availability, json_valid_rate, error_budget_remaining FROM sla_snapshots "
        "WHERE tenant_id = 'goldie' AND has(breaches, 'latency') ORDER BY ts DESC LIMIT 1"
    )[0]
    assert snap == ["gold", 1500.0, "reduce_top_k,route_cheaper_model", 1.0, 1.0, 1.0]
    bronze = worker.query(
        "SELECT tier, p95_latency_ms, length(breaches), degraded_mode FROM sla_snapshots WHERE tenant_id = 'bronzy' ORDER BY ts DESC LIMIT 1"
    )
    assert bronze == [["bronze", 1000.0, 0, ""]]

    report = subprocess.run(
        [sys.executable, "-m", "streams.cli", "sla", "--since", "2h", "--format", "csv"],
        env={**os.environ, **worker.env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout.splitlines()
    assert report[0] == "tenant_id,tier,sli,value,target,met,error_budget_left"
    latency = {line.split(",")[0]: line.split(",") for line in report if ",p95_latency_ms," in line}
    assert latency["goldie"][1:] == ["gold", "p95_latency_ms", "1500.0", "<= 800", "NO", "100.0%"]
    assert latency["bronzy"][1:] == [
        "bronze",
        "p95_latency_ms",
        "1000.0",
        "<= 1800",
        "yes",
        "100.0%",
    ]

    # recovery: half an hour of fast calls of event time
    send(bootstrap, worker, calls("goldie", range(30, 62), 300))
    alerts = [
        Alert.model_validate_json(m.value())
        for m in consume(bootstrap, alerts_topic, 3, timeout=30)
    ]
    assert [(a.rule, a.state, a.tenant_id) for a in alerts] == [
        ("slo_latency", "firing", "goldie"),
        ("slo_latency", "resolved", "goldie"),
    ]
    assert alerts[1].alert_id == firing.alert_id
    degrades = [
        DegradeCommand.model_validate_json(m.value())
        for m in consume(bootstrap, degrade_topic, 5, timeout=10)
    ]
    assert [(d.tenant_id, d.mode, d.state) for d in degrades] == [
        ("goldie", "route_cheaper_model", "enter"),
        ("goldie", "reduce_top_k", "enter"),
        ("goldie", "route_cheaper_model", "exit"),
        ("goldie", "reduce_top_k", "exit"),
    ]
    assert "1500 ms over the 800 ms target of gold" in degrades[0].recommendation
    wait_for(
        lambda: (
            worker.query(
                "SELECT degraded_mode FROM sla_snapshots WHERE tenant_id = 'goldie' ORDER BY ts DESC LIMIT 1"
            )
            == [[""]]
        ),
        what="a snapshot without degraded mode",
    )
