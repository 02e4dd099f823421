"""Reliability: no event lost or counted twice when a worker dies mid-stream.

Real broker, real worker processes, 100,000 events with totals known to the pico-dollar. A
worker is killed (SIGKILL, or a failpoint that ends it like ``kill -9`` inside or right after
an insert), restarted on the same data dir, and everything it stored and keeps in state is
checked exactly: events, rollups, budgets, alerts and degrade commands.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from importlib import resources

import orjson
import pytest
import yaml
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from schemas import Alert, DegradeCommand
from streams.kafka import ensure_topics, make_producer
from tests.factories import event, iso
from tests.integration.harness import ROOT, wait_for

N_EVENTS = 100_000
PARTITIONS = 4
TENANTS = [f"t{i:02d}" for i in range(50)]  # all on the default plan: starter, $5 a day
CROSSERS = {"t00": Decimal("6.5"), "t01": Decimal("6.2"), "t02": Decimal("7.1")}  # > $5
WARNED = {"t03": Decimal("4.5")}  # between $4 (80 %) and $5: a warning only
OTHERS = Decimal("0.3")  # everyone else; all tenants together stay below the $50 global rule
PICO = 10**12
BATCH_MAX = "1000"  # records (about 4,000 events) per batch: some 25 batches in all
TIMEOUT = 180

MINI = yaml.safe_load(resources.files("streams").joinpath("prices.yaml").read_text())["models"][
    "gpt-4o-mini"
]
# 1000 input and 500 output tokens (output/input 0.5 keeps token_efficiency_low quiet)
MINI_COST = (1000 * Decimal(MINI["input"]) + 500 * Decimal(MINI["output"])) / 1_000_000


@dataclass
class Traffic:
    records: list[tuple[bytes, bytes]]
    events: int = 0
    calls: int = 0
    total: Decimal = Decimal(0)
    spend: dict[str, Decimal] = field(default_factory=dict)
    event_ids: set[str] = field(default_factory=set)
    day: int = 0  # the UTC day of every event, as budgets name it (epoch seconds)


def one_utc_day() -> tuple[datetime, datetime]:
    """A span within the last hour that lies in one UTC day (the budgets' day)."""
    now = datetime.now(UTC).replace(microsecond=0)
    end = now - timedelta(seconds=30)
    midnight = now.replace(hour=0, minute=0, second=0)
    start = max(end - timedelta(minutes=55), midnight)
    if end - start < timedelta(minutes=10):  # just past midnight: the last hour of yesterday
        end, start = midnight - timedelta(seconds=1), midnight - timedelta(minutes=55)
    return start, end


def make_traffic(seed: int = 11) -> Traffic:
    """N_EVENTS events of 50 tenants, in records holding 1 to 7 events of one tenant."""
    rng = random.Random(seed)
    start, end = one_utc_day()
    span = int((end - start).total_seconds())
    others = ["tool_call", "rag_retrieval", "evaluation", "feedback", "guardrail"]
    groups: list[list[dict]] = []
    n = 0
    while n < N_EVENTS:
        tenant = rng.choice(TENANTS)
        size = min(rng.randint(1, 7), N_EVENTS - n)
        group = []
        for _ in range(size):
            ts = iso(start + timedelta(seconds=rng.randrange(span)))
            if rng.random() < 0.8:
                doc = event(
                    tenant_id=tenant,
                    timestamp=ts,
                    model=rng.choice(["gpt-4o-mini", "gpt-4o", "claude-sonnet-4"]),
                    input_tokens=1000,
                    output_tokens=500,
                )
            else:  # quiet values: no rule but the budgets may fire
                kind = rng.choice(others)
                extra = {
                    "evaluation": {"name": "faithfulness", "score": 0.9},
                    "feedback": {"score": 5},
                    "guardrail": {"kind": "pii", "action": "flagged"},
                }.get(kind, {})
                doc = event(kind, tenant_id=tenant, timestamp=ts, **extra)
            group.append(doc)
        groups.append(group)
        n += size

    # costs: exact 12-decimal strings, spread so each tenant lands near its target spend;
    # one call in 20 carries no cost and is priced from the table (gpt-4o-mini)
    calls = [d for g in groups for d in g if d["event_type"] == "llm_call"]
    for i, d in enumerate(calls):
        if i % 20 == 0:
            d["model"] = "gpt-4o-mini"
    paid: Counter[str] = Counter(d["tenant_id"] for i, d in enumerate(calls) if i % 20)
    traffic = Traffic(records=[], spend=dict.fromkeys(TENANTS, Decimal(0)))
    traffic.day = int(start.replace(hour=0, minute=0, second=0).timestamp())
    for i, d in enumerate(calls):
        tenant = d["tenant_id"]
        if i % 20 == 0:
            cost = MINI_COST
        else:
            target = CROSSERS.get(tenant) or WARNED.get(tenant) or OTHERS
            mean = int(target * PICO / paid[tenant])
            pico = rng.randrange(1, 2 * mean)
            d["cost_usd"] = f"{pico // PICO}.{pico % PICO:012d}"
            cost = Decimal(d["cost_usd"])
        traffic.spend[tenant] += cost
    traffic.calls = len(calls)
    traffic.total = sum(traffic.spend.values(), Decimal(0))
    for group in groups:
        traffic.records.append((group[0]["tenant_id"].encode(), orjson.dumps(group)))
        traffic.events += len(group)
        traffic.event_ids.update(d["event_id"] for d in group)
    assert traffic.events == N_EVENTS == len(traffic.event_ids)
    for tenant, spend in traffic.spend.items():  # the seed gives the intended budget levels
        assert (spend > 5) == (tenant in CROSSERS), (tenant, spend)
        assert (4 <= spend < 5) == (tenant in WARNED), (tenant, spend)
    assert traffic.total < 45
    return traffic


@pytest.fixture(scope="module")
def traffic() -> Traffic:
    return make_traffic()


def prepare_topic(bootstrap: str, start_worker, traffic: Traffic, share: float = 1.0) -> str:
    """Create the events topic and put the traffic on it (its first ``share``) before any
    worker starts, so workers take full batches from the first one."""
    topic = f"{start_worker.prefix}.events"
    ensure_topics(bootstrap, [topic], PARTITIONS)
    produce_records(bootstrap, topic, traffic.records[: int(len(traffic.records) * share)])
    return topic


def produce_records(
    bootstrap: str, topic: str, records: list[tuple[bytes, bytes]], seconds: float = 0.0
) -> None:
    """Produce ``records`` in order, spread over about ``seconds``."""
    began = time.monotonic()
    failed = []

    def delivered(err, msg) -> None:
        if err is not None:
            failed.append(err)

    producer = make_producer(bootstrap)
    for i, (key, value) in enumerate(records):
        while True:
            try:
                producer.produce(topic, value, key, on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.1)
        if seconds and i % 100 == 99:
            producer.poll(0)
            time.sleep(seconds * 100 / len(records))
    assert producer.flush(60) == 0 and not failed, failed[:3]
    print(f"\nproduced {len(records)} records in {time.monotonic() - began:.1f}s")


def read_all(bootstrap: str, topic: str, timeout: float = 60) -> list:
    """Every record of ``topic``, from the beginning to the end of each partition."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "log_level": 2,
        }
    )
    try:
        partitions = list(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        records, ended = [], set()
        deadline = time.monotonic() + timeout
        while len(ended) < len(partitions):
            assert time.monotonic() < deadline, f"{topic}: no end of partitions {ended}"
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    ended.add(msg.partition())
                continue
            records.append(msg)
        return records
    finally:
        consumer.close()


def committed_offsets(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "log_level": 2})
    try:
        tps = consumer.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], 10)
        return {tp.partition: tp.offset for tp in tps}
    finally:
        consumer.close()


def status_of(worker) -> dict:
    url = f"http://127.0.0.1:{worker.web_port}/api/status"
    with urllib.request.urlopen(url, timeout=60) as response:
        return orjson.loads(response.read())


def settle(worker, timeout: float = TIMEOUT) -> None:
    """Wait until the worker has consumed every partition to its end (lag 0 everywhere,
    reported after a batch is stored, applied to budgets and published)."""
    wait_for(
        lambda: (
            (lag := status_of(worker)["lag"]) and len(lag) == PARTITIONS and not any(lag.values())
        ),
        timeout=timeout,
        interval=1,
        what=f"no lag left on any partition (log {worker.log})",
    )


def offline_query(env: dict[str, str], sql: str) -> list[list]:
    """Query the embedded store of a dead worker (``llmtel query`` opens it itself)."""
    out = subprocess.run(
        [sys.executable, "-m", "streams.cli", "query", sql, "--format", "json"],
        env={**os.environ, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    return [list(orjson.loads(line).values()) for line in out.splitlines() if line.strip()]


def expected_alerts() -> list[tuple[str, str, str]]:
    rows = [("budget_warning", t, "firing") for t in [*CROSSERS, *WARNED]]
    rows += [("budget_exceeded", t, "firing") for t in CROSSERS]
    return sorted(rows)


def level_of(tenant: str) -> str:
    return "exceeded" if tenant in CROSSERS else "warning" if tenant in WARNED else "ok"


def assert_store_exact(query, traffic: Traffic) -> None:
    """One store holds every event once and rollups that add up to the pico-dollar."""
    count, unique, cost = query(
        "SELECT count(), uniqExact(event_id), toString(sum(cost_usd)) FROM events"
    )[0]
    assert (count, unique) == (N_EVENTS, N_EVENTS)
    assert Decimal(cost) == traffic.total
    assert query("SELECT countIf(event_type = 'llm_call') FROM events")[0][0] == traffic.calls
    requests, rollup_cost = query("SELECT sum(requests), toString(sum(cost_usd)) FROM rollups_1m")[
        0
    ]
    assert (requests, Decimal(rollup_cost)) == (traffic.calls, traffic.total)
    per_tenant = {
        t: Decimal(c)
        for t, c in query(
            "SELECT tenant_id, toString(sum(cost_usd)) FROM rollups_1m GROUP BY tenant_id"
        )
    }
    assert per_tenant == {t: s for t, s in traffic.spend.items() if s}


def assert_alert_rows(rows: list, degrade_rows: list) -> None:
    """``alerts FINAL`` / ``degrade_events FINAL``: one row per alert state, per mode."""
    assert sorted(tuple(r) for r in rows) == expected_alerts()
    assert sorted(tuple(r) for r in degrade_rows) == [
        (t, "route_cheaper_model", "enter") for t in sorted(CROSSERS)
    ]


def persisted_budgets(bootstrap: str, worker) -> dict[str, list]:
    """[day, spend_pico, level] per tenant: the last value of each key in the tenant-state
    changelog."""
    changelog = f"{worker.env['LLMTEL_APP_ID']}-tenant-state-changelog"
    last: dict[str, list] = {}
    for msg in read_all(bootstrap, changelog):
        last[msg.key().decode().strip('"')] = orjson.loads(msg.value())["budget"]
    return last


def assert_budgets(bootstrap: str, worker, traffic: Traffic) -> None:
    """The budget state, as persisted (the tenant-state changelog, last value per tenant) and
    as the worker shows it (/api/status), equals what was produced, to the pico-dollar."""
    levels = {"ok": 0, "warning": 1, "exceeded": 2}
    want = {t: [traffic.day, int(s * PICO), levels[level_of(t)]] for t, s in traffic.spend.items()}
    deadline = time.monotonic() + 15  # changelog writes are flushed in the background
    while (persisted := persisted_budgets(bootstrap, worker)) != want:
        if time.monotonic() > deadline:
            break
        time.sleep(1)
    status = status_of(worker)
    shown = {t["tenant_id"]: (t["spend_usd"], t["level"]) for t in status["tenants"]}
    want_shown = {t: (int(s * PICO) / PICO, level_of(t)) for t, s in traffic.spend.items()}
    wrong_shown = {t: (v, want_shown.get(t)) for t, v in shown.items() if v != want_shown.get(t)}
    wrong = {t: (persisted.get(t), want[t]) for t in want if persisted.get(t) != want[t]}
    assert not wrong, (
        f"tenant-state differs for {len(wrong)} tenants ([day, spend_pico, level] stored, "
        f"produced): {wrong}; /api/status differs for {len(wrong_shown)}: {wrong_shown}"
    )
    assert not wrong_shown, f"/api/status differs for {len(wrong_shown)} tenants: {wrong_shown}"
    firing = sorted((a["rule"], a["tenant_id"], "firing") for a in status["alerts_firing"])
    assert firing == [a for a in expected_alerts() if a[1] in shown]


def assert_status_lists_every_tenant(worker) -> None:
    """The worker owns every partition: its /api/status shows every tenant's budget (and
    firing alerts), not only those with events since its last rebalance."""
    shown = {t["tenant_id"] for t in status_of(worker)["tenants"]}
    missing = sorted(set(TENANTS) - shown)
    assert not missing, f"/api/status leaves out {len(missing)} of its tenants: {missing}"


def assert_topics(bootstrap: str, env: dict[str, str]) -> None:
    """llm.alerts and llm.degrade: every alert and mode once (at-least-once allows a replayed
    duplicate, which consumers drop by (alert_id, state); it is printed when seen)."""
    alerts = [
        Alert.model_validate_json(m.value())
        for m in read_all(bootstrap, env["LLMTEL_ALERTS_TOPIC"])
    ]
    degrades = [
        DegradeCommand.model_validate_json(m.value())
        for m in read_all(bootstrap, env["LLMTEL_DEGRADE_TOPIC"])
    ]
    by_id = Counter((a.alert_id, a.rule, a.tenant_id, a.state) for a in alerts)
    by_mode = Counter((d.tenant_id, d.mode, d.state) for d in degrades)
    print(
        f"alerts topic: {len(alerts)} records, repeated: {[k for k, n in by_id.items() if n > 1]}"
    )
    print(
        f"degrade topic: {len(degrades)} records, repeated: {[k for k, n in by_mode.items() if n > 1]}"
    )
    assert sorted((rule, t, s) for _, rule, t, s in by_id) == expected_alerts()
    assert all(n <= 2 for n in by_id.values()), by_id
    assert sorted(by_mode) == [(t, "route_cheaper_model", "enter") for t in sorted(CROSSERS)]
    assert all(n <= 2 for n in by_mode.values()), by_mode


@pytest.mark.parametrize("crash", ["sigkill", "during_insert:events:3", "after_insert:events:3"])
def test_a_killed_worker_restarts_without_losing_or_double_counting(
    bootstrap, start_worker, tmp_path, traffic, crash
):
    prepare_topic(bootstrap, start_worker, traffic)
    data = tmp_path / "data"
    began = time.monotonic()
    if crash == "sigkill":
        first = start_worker(data_dir=data, LLMTEL_BATCH_MAX=BATCH_MAX)
        stored = wait_for(
            lambda: (n := first.scalar("SELECT count() FROM events")) >= 0.3 * N_EVENTS and n,
            timeout=TIMEOUT,
            interval=0.2,
            what="30 % of the events stored",
        )
        first.kill()
        print(f"killed at {stored} stored events, {time.monotonic() - began:.1f}s in")
    else:
        first = start_worker(data_dir=data, LLMTEL_BATCH_MAX=BATCH_MAX, LLMTEL_FAILPOINT=crash)
        assert first.proc.wait(timeout=TIMEOUT) == 137
        print(f"failpoint {crash} ended the worker {time.monotonic() - began:.1f}s in")

    worker = start_worker(data_dir=data, LLMTEL_BATCH_MAX=BATCH_MAX)
    settle(worker)
    print(f"done {time.monotonic() - began:.1f}s after the first start")
    assert_store_exact(worker.query, traffic)
    assert_budgets(bootstrap, worker, traffic)
    assert_alert_rows(
        worker.query("SELECT rule, tenant_id, state FROM alerts FINAL"),
        worker.query("SELECT tenant_id, mode, state FROM degrade_events FINAL"),
    )
    assert_topics(bootstrap, worker.env)
    log = worker.log.read_text()
    assert "Traceback" not in log, log[-3000:]
    assert_status_lists_every_tenant(worker)


def store_rows(query) -> list[tuple]:
    return [
        (int(p), int(o), int(i), e, t, Decimal(c))
        for p, o, i, e, t, c in query(
            "SELECT kafka_partition, kafka_offset, kafka_index, event_id, event_type, "
            "toString(cost_usd) FROM events"
        )
    ]


def rollup_coverage(query) -> dict[int, tuple[int, int, Decimal]]:
    """Per partition: the highest offset the rollups cover, their requests and cost."""
    return {
        int(p): (int(o), int(r), Decimal(c))
        for p, o, r, c in query(
            "SELECT kafka_partition, max(max_offset), sum(requests), toString(sum(cost_usd)) "
            "FROM rollups_1m GROUP BY kafka_partition"
        )
    }


def assert_rollups_match_events(name: str, rows: list[tuple], coverage: dict) -> None:
    """In one store, the rollups add up exactly the llm_calls stored up to the offsets
    they cover (a store whose worker died between its two inserts covers fewer)."""
    for p, (upto, requests, cost) in coverage.items():
        calls = [r for r in rows if r[0] == p and r[1] <= upto and r[4] == "llm_call"]
        assert (requests, cost) == (len(calls), sum((r[5] for r in calls), Decimal(0))), (name, p)
    beyond = sum(1 for r in rows if r[4] == "llm_call" and r[1] > coverage.get(r[0], (-1,))[0])
    print(f"{name}: {len(rows)} event rows; llm_calls its rollups do not cover: {beyond}")


def test_two_workers_one_killed_the_survivor_takes_over(bootstrap, start_worker, tmp_path, traffic):
    """Two workers, one consumer group, each with its own embedded store (chDB admits one
    process per directory), so each store holds the partitions its worker processed. When
    one dies, the survivor replays the dead one's partitions from their last commit into its
    own store: rows the dead one stored after that commit end up in both stores. With one
    ClickHouse server (production) the survivor would read them back and skip them; here the
    union of the stores, one row per Kafka position, stands for that shared store. Budgets,
    alerts and degrade modes live in Kafka (the tenant-state changelog and the topics),
    shared by both workers: they must be exact as they are. The rest of the traffic arrives
    while both run, so b dies in the middle of the stream."""
    head = int(0.3 * len(traffic.records))
    topic = prepare_topic(bootstrap, start_worker, traffic, share=0.3)
    began = time.monotonic()
    a = start_worker(LLMTEL_BATCH_MAX=BATCH_MAX)
    wait_for(  # a alone first: b's joining hands half of a's partitions (and tenants) over
        lambda: a.scalar("SELECT count() FROM events") >= 0.1 * N_EVENTS,
        timeout=TIMEOUT,
        interval=0.2,
        what="10 % of the events stored by a",
    )
    b = start_worker(LLMTEL_BATCH_MAX=BATCH_MAX)
    rest = threading.Thread(
        target=produce_records, args=(bootstrap, topic, traffic.records[head:], 30.0)
    )
    rest.start()
    in_b = wait_for(
        lambda: (
            (nb := b.scalar("SELECT count() FROM events")) >= 0.05 * N_EVENTS
            and nb + a.scalar("SELECT count() FROM events") >= 0.4 * N_EVENTS
            and nb
        ),
        timeout=TIMEOUT,
        interval=0.2,
        what="b storing too, 40 % of the events stored",
    )
    b.kill()
    rest.join()
    committed = committed_offsets(bootstrap, a.env["LLMTEL_APP_ID"], topic)
    print(f"killed b at {in_b} events in its store, {time.monotonic() - began:.1f}s in")
    print(f"b's last commits (and a's): {committed}")

    b_rows = store_rows(lambda sql: offline_query(b.env, sql))
    b_coverage = rollup_coverage(lambda sql: offline_query(b.env, sql))
    b_alerts = offline_query(b.env, "SELECT alert_id, rule, tenant_id, state FROM alerts FINAL")
    b_degrades = offline_query(
        b.env, "SELECT tenant_id, mode, state, event_time FROM degrade_events FINAL"
    )

    settle(a)
    print(f"survivor done {time.monotonic() - began:.1f}s after the first start")
    a_rows = store_rows(a.query)
    a_coverage = rollup_coverage(a.query)
    for name, rows in (("a", a_rows), ("b", b_rows)):  # nothing twice within a store
        assert len({r[:3] for r in rows}) == len(rows), name
        assert len({r[3] for r in rows}) == len(rows), name
    assert_rollups_match_events("a", a_rows, a_coverage)
    assert_rollups_match_events("b", b_rows, b_coverage)

    # the shared store: one row per Kafka position, every event once, exact money
    union = {r[:3]: r for r in a_rows + b_rows}
    twice = {r[:3] for r in a_rows} & {r[:3] for r in b_rows}
    print(
        f"a+b: {len(a_rows) + len(b_rows)} rows for {N_EVENTS} events; in both stores: "
        f"{len(twice)} (${sum((union[k][5] for k in twice), Decimal(0))}), of them below b's "
        f"last commit: {sum(1 for k in twice if k[1] < committed.get(k[0], -1))}"
    )
    spans: dict[int, list[int]] = {}
    for p, offset, _ in twice:
        span = spans.setdefault(p, [offset, offset])
        span[0], span[1] = min(span[0], offset), max(span[1], offset)
    print(f"in both stores, offsets per partition: {spans}")
    assert len(union) == N_EVENTS
    assert {r[3] for r in union.values()} == traffic.event_ids
    assert sum((r[5] for r in union.values()), Decimal(0)) == traffic.total

    assert_budgets(bootstrap, a, traffic)
    a_alerts = a.query("SELECT alert_id, rule, tenant_id, state FROM alerts FINAL")
    a_degrades = a.query("SELECT tenant_id, mode, state, event_time FROM degrade_events FINAL")
    assert_alert_rows(
        [r[1:] for r in {tuple(r) for r in a_alerts + b_alerts}],
        [r[:3] for r in {tuple(map(str, r)) for r in a_degrades + b_degrades}],
    )
    assert_topics(bootstrap, a.env)
    log = a.log.read_text()
    assert "Traceback" not in log, log[-3000:]
    assert_status_lists_every_tenant(a)
