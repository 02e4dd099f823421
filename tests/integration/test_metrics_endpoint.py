"""GET /metrics of a real worker after events went through the real broker and were stored."""

import urllib.request
from datetime import timedelta
from decimal import Decimal

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.factories import NOW, event, iso, record
from tests.integration.harness import produce, wait_for


def scrape(port):
    """The worker's /metrics as {(sample name, frozenset of labels): value}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def sample(samples, metric, /, **labels):
    return samples.get((metric, frozenset(labels.items())))


def traffic():
    """Records of three tenants, what they should add up to, and one bad record."""
    at = iso(NOW - timedelta(minutes=2))
    docs, cost = [], {}
    for i in range(30):
        tenant = ("acme", "globex", "initech")[i % 3]
        price = f"0.{i + 1:03d}000000001"  # 12 decimals: exact only without floats
        cost[tenant] = cost.get(tenant, Decimal(0)) + Decimal(price)
        docs.append(
            event(
                tenant_id=tenant,
                agent_id="support",
                model="gpt-4o",
                session_id=f"{tenant}-s{i % 4}",
                timestamp=at,
                cost_usd=price,
                input_tokens=100 + i,
                cached_input_tokens=10,
                output_tokens=20,
                latency_ms=(80, 400, 6000)[i % 3],
                status="error" if i % 10 == 0 else "ok",
                cache="exact" if i % 5 == 0 else "none",
            )
        )
    for i, score in enumerate((0.9, 0.6, 0.75)):
        docs.append(event("evaluation", tenant_id="acme", name="faithfulness", score=score))
        docs.append(event("evaluation", tenant_id="acme", name="hallucination", score=i / 2))
    docs += [
        event("tool_call", tenant_id="acme", agent_id="support", tool_name="search"),
        event("tool_call", tenant_id="acme", agent_id="support", tool_name="search"),
        event(
            "tool_call",
            tenant_id="globex",
            agent_id="support",
            tool_name="shell",
            status="blocked_injection",
        ),
        event("guardrail", tenant_id="initech", kind="prompt_injection", action="blocked"),
        event("guardrail", tenant_id="initech", kind="pii", action="blocked"),
        event("rag_retrieval", tenant_id="acme", latency_ms=30),
        event("feedback", tenant_id="acme", score=5),
        event("feedback", tenant_id="globex", score=2),
    ]
    records = [record(doc) for doc in docs]
    records.append((b"acme", b"{not json"))
    return records, len(docs), cost


def test_metrics_endpoint_reports_what_was_produced(bootstrap, start_worker):
    worker = start_worker()
    records, stored, cost = traffic()
    produce(bootstrap, f"{start_worker.prefix}.events", records)
    wait_for(
        lambda: worker.scalar("SELECT count() FROM events") == stored,
        what=f"{stored} events stored",
    )
    # the counters move right after the batch's effects are stored: poll for the last ones
    samples = wait_for(
        lambda: (
            (s := scrape(worker.web_port)).get(("llmtel_events_consumed_total", frozenset()), 0)
            >= len(records)
            and s
        ),
        timeout=30,
        what="llmtel_events_consumed_total to reach the records produced",
    )

    assert sample(samples, "llmtel_events_rejected_total", reason="not_json") == 1

    # 30 calls: 10 per tenant, 1 error each (i = 0, 10, 20 fall on acme, globex, initech)
    by_tenant = {"acme": 0, "globex": 0, "initech": 0}
    for tenant in by_tenant:
        labels = {"agent_id": "support", "model": "gpt-4o", "tenant_id": tenant}
        ok = sample(samples, "llm_requests_total", **labels, status="ok") or 0
        error = sample(samples, "llm_requests_total", **labels, status="error") or 0
        by_tenant[tenant] = (ok, error)
    assert sum(ok for ok, _ in by_tenant.values()) == 27
    assert sum(error for _, error in by_tenant.values()) == 3
    assert all(ok + error == 10 for ok, error in by_tenant.values())

    # each series is the correctly rounded float of its exact decimal sum
    for tenant, exact in cost.items():
        labels = {"agent_id": "support", "model": "gpt-4o", "tenant_id": tenant}
        assert sample(samples, "llm_cost_usd_total", **labels) == float(exact), tenant

    tokens = {"agent_id": "support", "model": "gpt-4o"}
    assert sample(samples, "llm_tokens_total", **tokens, token_type="input") == sum(
        100 + i for i in range(30)
    )
    assert sample(samples, "llm_tokens_total", **tokens, token_type="cached_input") == 300
    assert sample(samples, "llm_tokens_total", **tokens, token_type="output") == 600
    assert sample(samples, "cache_hits_total", cache_type="exact") == 6

    latency = {"model": "gpt-4o", "agent_id": "support"}
    assert sample(samples, "llm_latency_ms_bucket", **latency, le="100.0") == 10
    assert sample(samples, "llm_latency_ms_bucket", **latency, le="500.0") == 20
    assert sample(samples, "llm_latency_ms_bucket", **latency, le="5000.0") == 20
    assert sample(samples, "llm_latency_ms_bucket", **latency, le="10000.0") == 30
    assert sample(samples, "llm_latency_ms_count", **latency) == 30
    assert sample(samples, "llm_latency_ms_sum", **latency) == 10 * (80 + 400 + 6000)
    assert sample(samples, "rag_retrieval_latency_ms_bucket", le="50.0") == 1

    # 3 tenants x 4 sessions of the support agent
    assert sample(samples, "active_sessions", agent_id="support") == 12

    tool = {"tool_name": "search", "agent_id": "support", "status": "ok"}
    assert sample(samples, "tool_executions_total", **tool) == 2
    assert sample(samples, "prompt_injections_blocked_total") == 2
    assert sample(samples, "llm_evaluations_total", name="faithfulness") == 3
    assert sample(samples, "llm_evaluations_total", name="hallucination") == 3
    assert sample(samples, "hallucinations_total") == 2  # scores 0.5 and 1.0
    assert sample(samples, "rag_faithfulness") == pytest.approx((0.9 + 0.6 + 0.75) / 3)
    assert sample(samples, "user_feedback_score_count") == 2
    assert sample(samples, "user_feedback_score_sum") == 7

    assert sample(samples, "llmtel_batch_size_sum") >= len(records)
    assert sample(samples, "llmtel_batch_seconds_count") >= 1
