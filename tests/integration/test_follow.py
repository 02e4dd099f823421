"""``llmtel alerts``: following the alerts and degrade topics on a real broker."""

import io
import json
import threading
from datetime import UTC, datetime, timedelta, timezone

import pytest

from schemas.outputs import Alert, DegradeCommand
from streams.follow import follow, format_alert, format_degrade
from streams.kafka import ensure_topics
from streams.settings import Settings
from tests.integration.harness import produce, unique_prefix, wait_for

T0 = datetime(2026, 11, 22, 10, 15, tzinfo=UTC)


def alert(**overrides):
    fields = {
        "alert_id": "hallucination_rate_high:acme:1",
        "rule": "hallucination_rate_high",
        "state": "firing",
        "severity": "critical",
        "tenant_id": "acme",
        "value": 0.31,
        "threshold": 0.15,
        "window": "1h",
        "started_at": T0 - timedelta(minutes=15),
        "event_time": T0,
        "runbook": "deploy/runbooks/hallucination-rate-high.md",
        "labels": {"plan": "pro"},
    }
    return Alert(**{**fields, **overrides})


def degrade(**overrides):
    fields = {
        "tenant_id": "acme",
        "mode": "safe_answers",
        "state": "enter",
        "reason": "hallucination_rate_high",
        "recommendation": "answer only from retrieved context",
        "event_time": T0,
    }
    return DegradeCommand(**{**fields, **overrides})


# -- formatters --------------------------------------------------------------------------


def test_format_alert_firing_high_rule():
    assert format_alert(alert()) == (
        "2026-11-22T10:15:00Z FIRING   critical hallucination_rate_high tenant=acme "
        "value=0.31 > 0.15 (1h) id=hallucination_rate_high:acme:1 "
        "runbook=deploy/runbooks/hallucination-rate-high.md"
    )


def test_format_alert_low_rule_resolved_global_and_no_runbook():
    low = alert(rule="faithfulness_low", severity="warning", value=0.6, threshold=0.75)
    assert "FIRING   warning  faithfulness_low" in format_alert(low)
    assert "value=0.6 < 0.75 (1h)" in format_alert(low)
    resolved = alert(state="resolved", value=0.1, tenant_id=None, runbook="")
    line = format_alert(resolved)
    assert line.startswith("2026-11-22T10:15:00Z RESOLVED critical hallucination_rate_high")
    assert "tenant=* value=0.1 < 0.15 (1h)" in line
    assert line.endswith("id=hallucination_rate_high:acme:1")
    budget = alert(rule="budget_exceeded", value=10.0, threshold=10.0, window="1d")
    assert "value=10 >= 10 (1d)" in format_alert(budget)


def test_format_alert_time_in_utc():
    shifted = alert(
        event_time=datetime(2026, 11, 22, 12, 15, 0, 250000, timezone(timedelta(hours=2)))
    )
    assert format_alert(shifted).startswith("2026-11-22T10:15:00.250Z ")


def test_format_degrade():
    assert format_degrade(degrade()) == (
        "2026-11-22T10:15:00Z DEGRADE  enter safe_answers tenant=acme "
        "reason=hallucination_rate_high: answer only from retrieved context"
    )
    assert format_degrade(degrade(state="exit", mode="block")).startswith(
        "2026-11-22T10:15:00Z DEGRADE  exit  block tenant=acme reason="
    )


# -- on the broker -----------------------------------------------------------------------


@pytest.fixture
def topics(bootstrap, request):
    prefix = unique_prefix(request.node.name[:20])
    settings = Settings(
        kafka_bootstrap=bootstrap,
        alerts_topic=f"{prefix}.alerts",
        degrade_topic=f"{prefix}.degrade",
        partitions=3,
    )
    ensure_topics(bootstrap, [settings.alerts_topic, settings.degrade_topic], 3)
    return settings


def publish(settings, alerts=(), degrades=(), garbage=()):
    produce(
        settings.kafka_bootstrap,
        settings.alerts_topic,
        [((a.tenant_id or "").encode() or None, a.model_dump_json().encode()) for a in alerts]
        + [(key, raw) for key, raw in garbage],
    )
    produce(
        settings.kafka_bootstrap,
        settings.degrade_topic,
        [(d.tenant_id.encode(), d.model_dump_json().encode()) for d in degrades],
    )


RECORDS = {
    "alerts": [
        alert(),
        alert(
            alert_id="cost_spike:globex:1",
            rule="cost_spike",
            tenant_id="globex",
            value=72.5,
            threshold=50,
        ),
        alert(state="resolved", value=0.1),
    ],
    "degrades": [
        degrade(),
        degrade(tenant_id="globex", mode="route_cheaper_model", reason="budget_exceeded"),
    ],
    "garbage": [(b"acme", b"not json {")],
}


def run_follow(settings, **kwargs):
    out = io.StringIO()
    args = {"as_json": False, "from_beginning": True, "idle_exit": 3.0, **kwargs}
    assert follow(settings, out=out, **args) == 0
    return out.getvalue().splitlines()


def test_follow_from_the_beginning_prints_every_record(topics):
    publish(topics, RECORDS["alerts"], RECORDS["degrades"], RECORDS["garbage"])
    lines = run_follow(topics)
    expected = [format_alert(a) for a in RECORDS["alerts"]]
    expected += [format_degrade(d) for d in RECORDS["degrades"]]
    expected.append("?? not json {")
    assert sorted(lines) == sorted(expected)
    # one tenant's records on one topic keep their order (one partition per key)
    acme_alerts = [line for line in lines if "hallucination_rate_high tenant=acme" in line]
    assert [line.split()[1] for line in acme_alerts] == ["FIRING", "RESOLVED"]


def test_follow_as_json_prints_the_records_as_published(topics, capsys):
    publish(topics, RECORDS["alerts"], RECORDS["degrades"], RECORDS["garbage"])
    lines = run_follow(topics, as_json=True)
    assert len(lines) == 5
    docs = [json.loads(line) for line in lines]
    assert sorted(Alert.model_validate(d).alert_id for d in docs if "alert_id" in d) == sorted(
        a.alert_id for a in RECORDS["alerts"]
    )
    assert {DegradeCommand.model_validate(d) for d in docs if "mode" in d} == set(
        RECORDS["degrades"]
    )
    assert "?? not json {" in capsys.readouterr().err  # stdout stays parseable


def test_follow_one_tenant(topics):
    publish(
        topics, RECORDS["alerts"], RECORDS["degrades"], [*RECORDS["garbage"], (b"globex", b"[]")]
    )
    lines = run_follow(topics, tenant="globex")
    assert sorted(lines) == sorted(
        [format_alert(RECORDS["alerts"][1]), format_degrade(RECORDS["degrades"][1]), "?? []"]
    )


def test_follow_only_new_records(topics):
    publish(topics, [alert(alert_id="old", tenant_id="old")], [degrade(tenant_id="old")])
    out = io.StringIO()
    ready = threading.Event()
    result = []
    thread = threading.Thread(
        target=lambda: result.append(
            follow(
                topics,
                as_json=False,
                from_beginning=False,
                idle_exit=4.0,
                out=out,
                on_ready=ready.set,
            )
        ),
        daemon=True,
    )
    thread.start()
    assert ready.wait(60), "no partitions assigned"  # a new group takes a few seconds to join
    new = alert(alert_id="new", tenant_id="new")
    publish(topics, [new], [degrade(tenant_id="new", state="exit")])
    wait_for(lambda: len(out.getvalue().splitlines()) >= 2, timeout=30, what="the new records")
    thread.join(60)
    assert not thread.is_alive() and result == [0]
    lines = out.getvalue().splitlines()
    assert sorted(lines) == sorted(
        [format_alert(new), format_degrade(degrade(tenant_id="new", state="exit"))]
    )
    assert all("tenant=old" not in line for line in lines)
