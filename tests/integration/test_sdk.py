"""The SDK against the real embedded broker and a real worker process."""

import random
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace

import orjson
from aiokafka.partitioner import DefaultPartitioner

from schemas.outputs import Alert, DegradeCommand
from streams.kafka import ensure_topics
from streams.sdk import MAX_RECORD_BYTES, AlertSubscriber, TelemetryProducer
from tests.integration.harness import consume, produce, unique_prefix, wait_for

OTHER_KINDS = ["tool_call", "rag_retrieval", "evaluation", "feedback", "guardrail"]


def send_mixed(p: TelemetryProducer, tenant: str, n: int, rng: random.Random) -> Decimal:
    """n events of one tenant through the helpers; returns the cost they carry."""
    total = Decimal(0)
    for i in range(n):
        if i % 5 == 4:
            kind = OTHER_KINDS[(i // 5) % len(OTHER_KINDS)]
            {
                "tool_call": lambda: p.tool_call(tenant, "search", latency_ms=12.5),
                "rag_retrieval": lambda: p.rag_retrieval(tenant, chunks_retrieved=4, top_score=0.7),
                "evaluation": lambda: p.evaluation(tenant, "faithfulness", 0.9),
                "feedback": lambda: p.feedback(tenant, 4, user_id="u-1"),
                "guardrail": lambda: p.guardrail(tenant, "pii", "flagged"),
            }[kind]()
            continue
        cost = Decimal(f"0.{rng.randrange(10**9):09d}")
        total += cost
        if i % 10 == 0:
            with p.track_llm_call(tenant, "gpt-4o", cost_usd=cost, agent_id="bot") as call:
                call.record(
                    SimpleNamespace(
                        usage=SimpleNamespace(
                            prompt_tokens=100,
                            completion_tokens=10,
                            prompt_tokens_details=SimpleNamespace(cached_tokens=40),
                        )
                    )
                )
        else:
            p.llm_call(
                tenant,
                "gpt-4o-mini",
                input_tokens=rng.randrange(1, 5000),
                output_tokens=rng.randrange(0, 500),
                cost_usd=cost,
                session_id=f"s-{i % 7}",
            )
    return total


def test_producer_batches_per_tenant_into_the_worker(bootstrap, start_worker):
    worker = start_worker()
    topic = worker.env["LLMTEL_EVENTS_TOPIC"]
    partitions = int(worker.env["LLMTEL_PARTITIONS"])
    rng = random.Random(11)
    counts = {"acme": 120, "globex": 100, "initech": 63}
    total = Decimal(0)

    # a linger longer than the test: records are cut by batch_max, size, and the final flush
    with TelemetryProducer(bootstrap, topic=topic, batch_max=50, linger_ms=600_000) as p:
        for tenant, n in counts.items():
            total += send_mixed(p, tenant, n, rng)
        for i in range(12):  # ~100 KB each: at most 5 fit in one record
            cost = Decimal(f"0.{rng.randrange(10**12):012d}")
            total += cost
            assert p.emit(
                {
                    "event_id": f"bulk-{i}",
                    "event_type": "llm_call",
                    "timestamp": datetime.now(UTC).isoformat(),
                    "tenant_id": "bulk",
                    "model": "gpt-4o",
                    "cost_usd": cost,
                    "padding": "x" * 100_000,  # unknown fields are ignored by the worker
                }
            )
        assert p.flush(30) == 0
        assert (p.sent, p.failed, p.dropped, p.pending) == (295, 0, 0, 0)

    # no flush: the linger sends
    lingering = TelemetryProducer(bootstrap, topic=topic, linger_ms=300)
    try:
        for _ in range(5):
            lingering.feedback("linger-co", 5)
        wait_for(lambda: lingering.sent == 5, timeout=30, what="events sent by the linger")
    finally:
        lingering.close()

    wait_for(
        lambda: worker.scalar("SELECT count() FROM events") == 300,
        timeout=90,
        what="300 events in ClickHouse",
    )
    assert Decimal(worker.scalar("SELECT toString(sum(cost_usd)) FROM events")) == total
    assert worker.scalar("SELECT uniqExact(event_id) FROM events") == 300
    by_tenant = dict(worker.query("SELECT tenant_id, count() FROM events GROUP BY tenant_id"))
    assert by_tenant == {**counts, "bulk": 12, "linger-co": 5}
    tracked = worker.query(
        "SELECT input_tokens, cached_input_tokens, output_tokens, status, agent_id FROM events "
        "WHERE model = 'gpt-4o' AND tenant_id = 'acme'"
    )
    assert tracked and all(row == [100, 40, 10, "ok", "bot"] for row in tracked)
    assert worker.scalar("SELECT count() FROM events WHERE event_type != 'llm_call'") == 56 + 5

    # 50 + 50 + 20, 50 + 50, 50 + 13, 5 + 5 + 2 big ones, then the linger's 5
    records = consume(bootstrap, topic, expected=11, timeout=60)
    assert len(records) == 11
    sizes: dict[str, list[int]] = {}
    reference = DefaultPartitioner()
    for msg in records:
        key = msg.key().decode()
        events = orjson.loads(msg.value())
        assert isinstance(events, list)
        assert {e["tenant_id"] for e in events} == {key}
        assert len(msg.value()) <= MAX_RECORD_BYTES
        # where Kafka's Java client (and aiokafka, the worker's client) put the key
        assert msg.partition() == reference(msg.key(), list(range(partitions)), [])
        sizes.setdefault(key, []).append(len(events))
    assert {k: sorted(v, reverse=True) for k, v in sizes.items()} == {
        "acme": [50, 50, 20],
        "globex": [50, 50],
        "initech": [50, 13],
        "bulk": [5, 5, 2],
        "linger-co": [5],
    }
    assert not worker.scalar("SELECT count() FROM events WHERE event_id = ''")


T0 = datetime(2026, 11, 22, 10, 15, tzinfo=UTC)

ALERT = Alert(
    alert_id="hallucination_rate_high:acme:1",
    rule="hallucination_rate_high",
    state="firing",
    severity="critical",
    tenant_id="acme",
    value=0.31,
    threshold=0.15,
    window="1h",
    started_at=T0 - timedelta(minutes=15),
    event_time=T0,
    runbook="deploy/runbooks/hallucination-rate-high.md",
    labels={"plan": "pro"},
)
DEGRADE = DegradeCommand(
    tenant_id="acme",
    mode="route_cheaper_model",
    state="enter",
    reason="budget_exceeded",
    recommendation="route to gpt-4o-mini",
    event_time=T0,
)


def topics(bootstrap, name):
    prefix = unique_prefix(name)
    alerts, degrade = f"{prefix}.alerts", f"{prefix}.degrade"
    ensure_topics(bootstrap, [alerts, degrade], 2)
    return alerts, degrade


def test_alert_subscriber_from_the_beginning(bootstrap):
    alerts_topic, degrade_topic = topics(bootstrap, "sdk-sub")
    produce(
        bootstrap,
        alerts_topic,
        [(b"acme", ALERT.model_dump_json().encode()), (b"acme", b"not json {")],
    )
    produce(bootstrap, degrade_topic, [(b"acme", DEGRADE.model_dump_json().encode())])
    got_alerts, got_degrades = [], []
    sub = AlertSubscriber(
        bootstrap,
        alerts_topic=alerts_topic,
        degrade_topic=degrade_topic,
        from_beginning=True,
        on_alert=got_alerts.append,
        on_degrade=got_degrades.append,
    )
    thread = threading.Thread(target=sub.run, kwargs={"stop_after": 90}, daemon=True)
    thread.start()
    try:
        wait_for(
            lambda: got_alerts and got_degrades and sub.invalid == 1,
            timeout=60,
            what="the alert, the degrade command and the invalid record",
        )
    finally:
        sub.stop()
        thread.join(30)
    assert not thread.is_alive()
    assert got_alerts == [ALERT] and got_degrades == [DEGRADE]
    assert (sub.received, sub.invalid, sub.callback_errors) == (2, 1, 0)


def test_alert_subscriber_in_its_thread_sees_new_records_only(bootstrap):
    alerts_topic, degrade_topic = topics(bootstrap, "sdk-new")
    old = ALERT.model_copy(update={"alert_id": "old"})
    produce(bootstrap, alerts_topic, [(b"acme", old.model_dump_json().encode())])
    got = []

    def on_degrade(cmd):
        got.append(cmd)
        raise RuntimeError("a failing callback does not stop the subscriber")

    with AlertSubscriber(
        bootstrap,
        alerts_topic=alerts_topic,
        degrade_topic=degrade_topic,
        on_alert=got.append,
        on_degrade=on_degrade,
    ) as sub:
        assert sub.ready.wait(60), "no partitions assigned"
        exit_cmd = DEGRADE.model_copy(update={"state": "exit"})
        produce(bootstrap, degrade_topic, [(b"acme", DEGRADE.model_dump_json().encode())])
        produce(bootstrap, alerts_topic, [(b"acme", ALERT.model_dump_json().encode())])
        produce(bootstrap, degrade_topic, [(b"acme", exit_cmd.model_dump_json().encode())])
        wait_for(lambda: len(got) == 3, timeout=30, what="the three new records")
    assert sorted(got, key=repr) == sorted([DEGRADE, ALERT, exit_cmd], key=repr)
    assert sub.callback_errors == 2 and sub.invalid == 0
