"""Events in through the real broker, a real worker process, exact rollups out of ClickHouse."""

import os
import random
import subprocess
import sys
import urllib.request
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from importlib import resources

import orjson
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.factories import event, iso
from tests.integration.harness import ROOT, consume, produce, wait_for

PRICE_FILE = yaml.safe_load(resources.files("streams").joinpath("prices.yaml").read_text())


def table_cost(model, input_tokens, cached, output):
    """The price-table formula, computed here independently of llmtel's code."""
    p = PRICE_FILE["models"][model]
    per_million = (
        (input_tokens - cached) * Decimal(p["input"])
        + cached * Decimal(p.get("cached_input", p["input"]))
        + output * Decimal(p["output"])
    )
    return per_million / 1_000_000


def make_traffic(n, now):
    """n valid records (some batched as arrays), the exact cost they carry, and bad records."""
    rng = random.Random(7)
    models = ["gpt-4o", "gpt-4o-mini", "claude-sonnet-4", "gemini-2.0-flash"]
    valid, total = [], Decimal(0)
    unknown_model_calls = 0
    kinds = ["llm_call"] * 6 + ["tool_call", "rag_retrieval", "evaluation", "feedback", "guardrail"]
    for i in range(n):
        tenant = f"tenant-{rng.randrange(20)}"
        ts = iso(now - timedelta(seconds=rng.randrange(3600)))
        kind = kinds[i % len(kinds)]
        if kind != "llm_call":
            valid.append(event(kind, tenant_id=tenant, timestamp=ts))
            continue
        if i % 50 == 0:
            doc = event(model="in-house-model", tenant_id=tenant, timestamp=ts)
            unknown_model_calls += 1
        elif i % 3 == 0:
            cost = f"0.{rng.randrange(10**9):09d}"
            doc = event(model=rng.choice(models), cost_usd=cost, tenant_id=tenant, timestamp=ts)
            total += Decimal(cost)
        else:
            model = rng.choice(models)
            tokens = rng.randrange(1, 20000)
            cached = rng.randrange(0, tokens)
            out = rng.randrange(0, 3000)
            doc = event(
                model=model,
                input_tokens=tokens,
                cached_input_tokens=cached,
                output_tokens=out,
                tenant_id=tenant,
                timestamp=ts,
                status=rng.choice(["ok"] * 9 + ["error"]),
            )
            total += table_cost(model, tokens, cached, out)
        valid.append(doc)
    # spread tenants so that consecutive events often share one and arrays hold several
    valid.sort(key=lambda d: (d["tenant_id"], d["event_id"]))
    records = []
    i = 0
    while i < len(valid):  # every tenth record carries an array of its tenant's next events
        doc = valid[i]
        if i % 10 == 0:
            group = [doc]
            while (
                len(group) < 5
                and i + len(group) < len(valid)
                and valid[i + len(group)]["tenant_id"] == doc["tenant_id"]
            ):
                group.append(valid[i + len(group)])
            records.append((doc["tenant_id"].encode(), orjson.dumps(group)))
            i += len(group)
        else:
            records.append((doc["tenant_id"].encode(), orjson.dumps(doc)))
            i += 1
    bad = [
        (b"tenant-1", b"this is not json", "not_json"),
        (b"tenant-1", b'{"event_id": "\xff\xfe"}', "not_utf8"),
        (b"tenant-1", b"[1, 2]", "not_an_object"),
        (b"tenant-1", orjson.dumps(event(tenant_id="tenant-1", input_tokens=-5)), "invalid_event"),
        (
            b"tenant-1",
            orjson.dumps(event(tenant_id="tenant-1", event_type="llm_calls")),
            "unknown_event_type",
        ),
        (
            b"tenant-1",
            orjson.dumps(event("evaluation", tenant_id="tenant-1", score=1.5)),
            "invalid_event",
        ),
        (
            b"tenant-1",
            orjson.dumps(event(tenant_id="tenant-1", timestamp=iso(now + timedelta(days=3)))),
            "timestamp_out_of_range",
        ),
        (None, orjson.dumps(event(tenant_id="tenant-1")), "missing_key"),
        (b"tenant-1", b"x" * 300_000, "too_large"),
    ]
    return records, valid, total, unknown_model_calls, bad


def test_events_become_exact_rollups_and_bad_records_reach_the_dlq(
    bootstrap, start_worker, tmp_path
):
    worker = start_worker(LLMTEL_MAX_RECORD_BYTES="200000")
    now = datetime.now(UTC)
    records, valid, total, unknown_calls, bad = make_traffic(3000, now)
    topic = worker.env["LLMTEL_EVENTS_TOPIC"]
    mixed = records[:1000] + [(k, v) for k, v, _ in bad] + records[1000:]
    produce(bootstrap, topic, mixed)

    wait_for(
        lambda: worker.scalar("SELECT count() FROM events") == len(valid),
        timeout=90,
        what="all events stored",
    )
    calls = [d for d in valid if d["event_type"] == "llm_call"]
    rollup = worker.query(
        "SELECT sum(requests), sum(errors), sum(input_tokens), sum(output_tokens), toString(sum(cost_usd)), "
        "sum(unknown_model_requests) FROM rollups_1m"
    )[0]
    assert rollup[0] == len(calls)
    assert rollup[1] == sum(1 for d in calls if d.get("status", "ok") != "ok")
    assert rollup[2] == sum(d["input_tokens"] for d in calls)
    assert rollup[3] == sum(d["output_tokens"] for d in calls)
    assert Decimal(rollup[4]) == total  # to the pico-dollar, not only the micro-dollar
    assert rollup[5] == unknown_calls
    events_cost = Decimal(worker.scalar("SELECT toString(sum(cost_usd)) FROM events"))
    assert events_cost == total
    per_tenant = dict(
        worker.query("SELECT tenant_id, toString(sum(cost_usd)) FROM rollups_1m GROUP BY tenant_id")
    )
    assert sum(Decimal(v) for v in per_tenant.values()) == total
    assert (
        worker.scalar(
            "SELECT count() FROM events WHERE cost_source = 'unknown_model' AND model = 'in-house-model'"
        )
        == unknown_calls
    )

    expected_dlq = 1 + len(bad)  # the [1, 2] record yields two rejections
    dlq = consume(bootstrap, worker.env["LLMTEL_DLQ_TOPIC"], expected_dlq)
    reasons = sorted(dict(m.headers())["llmtel.reason"].decode() for m in dlq)
    assert reasons == sorted([r for _, _, r in bad] + ["not_an_object"])
    by_reason = {dict(m.headers())["llmtel.reason"].decode(): m for m in dlq}
    assert by_reason["not_json"].value() == b"this is not json"
    assert by_reason["not_utf8"].value() == b'{"event_id": "\xff\xfe"}'
    invalid = sorted(
        dict(m.headers())["llmtel.error"]
        for m in dlq
        if dict(m.headers())["llmtel.reason"] == b"invalid_event"
    )
    assert [b"input_tokens" in invalid[0], b"score" in invalid[1]] == [True, True]

    # pipeline health on /metrics
    with urllib.request.urlopen(
        f"http://127.0.0.1:{worker.web_port}/metrics", timeout=10
    ) as response:
        samples = {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.read().decode())
            for sample in family.samples
        }
    assert samples[("llmtel_clickhouse_insert_seconds_count", (("table", "events"),))] >= 1
    assert samples[("llmtel_events_rejected_total", (("reason", "too_large"),))] == 1
    assert any(name == "llmtel_consumer_lag" for name, _ in samples)

    # the same numbers through the CLI, from "a second terminal", while the worker holds chDB
    env = {**os.environ, **worker.env}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "streams.cli",
            "query",
            "SELECT toString(sum(cost_usd)) AS cost FROM rollups_1m",
            "--format",
            "csv",
        ],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert out[0] == "cost" and Decimal(out[1]) == total


def test_worker_keeps_going_after_bad_input_and_restarts_without_double_counting(
    bootstrap, start_worker, tmp_path
):
    data = tmp_path / "shared-data"
    worker = start_worker(data_dir=data)
    topic = worker.env["LLMTEL_EVENTS_TOPIC"]
    first = [event(tenant_id=f"t{i % 7}", cost_usd="0.001") for i in range(500)]
    produce(
        bootstrap,
        topic,
        [(b"t0", b"garbage")] + [(d["tenant_id"].encode(), orjson.dumps(d)) for d in first],
    )
    wait_for(lambda: worker.scalar("SELECT count() FROM events") == 500, what="first 500 events")
    worker.stop()
    second = [event(tenant_id=f"t{i % 7}", cost_usd="0.002") for i in range(300)]
    produce(bootstrap, topic, [(d["tenant_id"].encode(), orjson.dumps(d)) for d in second])
    worker = start_worker(data_dir=data)
    wait_for(lambda: worker.scalar("SELECT count() FROM events") == 800, what="all 800 events")
    assert Decimal(worker.scalar("SELECT toString(sum(cost_usd)) FROM rollups_1m")) == Decimal(
        "1.1"
    )
    assert worker.scalar("SELECT uniqExact(event_id) FROM events") == 800
