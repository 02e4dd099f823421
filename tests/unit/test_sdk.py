"""The SDK without a broker: event helpers, validation, usage extraction, tracking, the buffer.

The producers here point at a port nothing listens on: confluent-kafka connects in the
background and never blocks, so events stay buffered (or queued in librdkafka) where the
tests can read them. Sending through a real broker is in tests/integration/test_sdk.py.
"""

import asyncio
import re
import socket
import time
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from types import SimpleNamespace

import orjson
import pytest

from schemas import EVENT_ADAPTER, Evaluation, Feedback, Guardrail, LlmCall, RagRetrieval, ToolCall
from streams.sdk import MAX_RECORD_BYTES, TelemetryProducer, extract_usage


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


NOWHERE = f"127.0.0.1:{closed_port()}"


@pytest.fixture
def producer():
    """A producer that keeps every event buffered (no broker, linger of ten minutes)."""
    p = TelemetryProducer(NOWHERE, linger_ms=600_000, batch_max=10_000)
    yield p
    p.close(timeout=0)


def buffered(p: TelemetryProducer) -> list[dict]:
    """The events waiting in the producer, oldest first per tenant."""
    with p._cond:
        batches = [*p._ready, *p._batches.values()]
        return [orjson.loads(part) for batch in batches for part in batch.parts]


def only(p: TelemetryProducer) -> dict:
    events = buffered(p)
    assert len(events) == 1, events
    return events[0]


# -- helpers build valid events ------------------------------------------------------------


def test_llm_call_builds_a_valid_event_with_id_and_time(producer):
    before = datetime.now(UTC) - timedelta(seconds=1)
    assert producer.llm_call(
        "acme",
        "gpt-4o",
        input_tokens=1200,
        output_tokens=300,
        cached_input_tokens=200,
        latency_ms=850,
        provider="openai",
        json_valid=True,
        session_id="s-42",
        agent_id="support-bot",
    )
    doc = only(producer)
    assert re.fullmatch(r"[0-9a-f]{32}", doc["event_id"])
    assert doc["timestamp"].endswith("Z")
    event = EVENT_ADAPTER.validate_python(doc)
    assert isinstance(event, LlmCall)
    assert before <= event.timestamp <= datetime.now(UTC)
    assert (event.tenant_id, event.model, event.provider) == ("acme", "gpt-4o", "openai")
    assert (event.input_tokens, event.output_tokens, event.cached_input_tokens) == (1200, 300, 200)
    assert (event.latency_ms, event.status, event.json_valid) == (850, "ok", True)
    assert (event.session_id, event.agent_id, event.user_id) == ("s-42", "support-bot", None)
    assert "cost_usd" not in doc and "user_id" not in doc  # absent, not null
    assert producer.pending == 1


def test_every_helper_builds_its_event_type(producer):
    producer.tool_call("acme", "search_orders", status="error", latency_ms=120, trace_id="t-1")
    producer.rag_retrieval("acme", chunks_retrieved=8, top_score=0.82, latency_ms=35)
    producer.evaluation("acme", "faithfulness", 0.91, label="good", span_id="sp")
    producer.feedback("acme", 4, comment="helpful", user_id="u-7")
    producer.guardrail("acme", "prompt_injection", "blocked", parent_span_id="p")
    events = [EVENT_ADAPTER.validate_python(d) for d in buffered(producer)]
    assert [type(e) for e in events] == [ToolCall, RagRetrieval, Evaluation, Feedback, Guardrail]
    tool, rag, ev, fb, guard = events
    assert (tool.tool_name, tool.status, tool.latency_ms, tool.trace_id) == (
        "search_orders",
        "error",
        120,
        "t-1",
    )
    assert (rag.chunks_retrieved, rag.top_score, rag.latency_ms) == (8, 0.82, 35)
    assert (ev.name, ev.score, ev.label, ev.span_id) == ("faithfulness", 0.91, "good", "sp")
    assert (fb.score, fb.comment, fb.user_id) == (4, "helpful", "u-7")
    assert (guard.kind, guard.action, guard.parent_span_id) == ("prompt_injection", "blocked", "p")
    assert len({e.event_id for e in events}) == 5


def test_given_id_and_time_are_kept_and_a_datetime_is_sent_in_utc(producer):
    paris = timezone(timedelta(hours=1))
    producer.feedback(
        "acme", 5, event_id="f-1", timestamp=datetime(2026, 11, 22, 11, 0, tzinfo=paris)
    )
    producer.feedback("acme", 5, event_id="f-2", timestamp="2026-11-22T10:00:00.5Z")
    first, second = buffered(producer)
    assert (first["event_id"], first["timestamp"]) == ("f-1", "2026-11-22T10:00:00Z")
    assert (second["event_id"], second["timestamp"]) == ("f-2", "2026-11-22T10:00:00.5Z")


def test_cost_keeps_every_digit(producer):
    producer.llm_call("acme", "gpt-4o", cost_usd=Decimal("0.000000000123"))
    producer.llm_call("acme", "gpt-4o", cost_usd="0.1")
    producer.llm_call("acme", "gpt-4o", cost_usd=0.3)
    docs = buffered(producer)
    assert [d["cost_usd"] for d in docs] == ["0.000000000123", "0.1", 0.3]
    assert [EVENT_ADAPTER.validate_python(d).cost_usd for d in docs] == [
        Decimal("0.000000000123"),
        Decimal("0.1"),
        Decimal("0.3"),
    ]


def test_emit_sends_a_raw_dict_as_given(producer):
    doc = {
        "event_id": "e1",
        "event_type": "llm_call",
        "timestamp": "2026-11-22T10:00:00Z",
        "tenant_id": "acme",
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.usage.input_tokens": 10,
        "my_field": "kept",
        "cost_usd": Decimal("0.25"),
    }
    assert producer.emit(doc) is True
    assert only(producer) == {**doc, "cost_usd": "0.25"}


# -- invalid input: the caller's bug, found at once -----------------------------------------


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda p: p.llm_call("acme", "gpt-4o", input_tokens=-1), "input_tokens"),
        (lambda p: p.llm_call("acme", "gpt-4o", output_tokens=True), "output_tokens"),
        (
            lambda p: p.llm_call("acme", "gpt-4o", input_tokens=1, cached_input_tokens=2),
            "cached_input_tokens",
        ),
        (lambda p: p.llm_call("acme", "gpt-4o", cost_usd="-1"), "cost_usd"),
        (lambda p: p.llm_call("acme", "gpt-4o", status="fine"), "status"),
        (lambda p: p.llm_call("", "gpt-4o"), "tenant_id"),
        (lambda p: p.llm_call("acme", ""), "model"),
        (lambda p: p.tool_call("acme", "search", latency_ms=-5), "latency_ms"),
        (lambda p: p.evaluation("acme", "faithfulness", 1.5), "score"),
        (lambda p: p.feedback("acme", 9), "score"),
        (lambda p: p.guardrail("acme", "pii", "nuke"), "action"),
        (lambda p: p.feedback("acme", 3, timestamp=datetime(2026, 11, 22)), "timestamp"),
        (lambda p: p.feedback("acme", 3, timestamp="yesterday"), "timestamp"),
        (lambda p: p.feedback("acme", 3, user_id=7), "user_id"),
        (lambda p: p.emit({"event_type": "click", "tenant_id": "acme"}), "event_type"),
        (lambda p: p.emit({"event_id": "e", "event_type": "feedback", "tenant_id": "a"}), "score"),
    ],
)
def test_invalid_input_raises_value_error_naming_the_field(producer, call, field):
    with pytest.raises(ValueError, match=field):
        call(producer)
    assert producer.pending == 0 and producer.dropped == 0


def test_emit_refuses_what_is_not_a_dict_and_helpers_unknown_keywords(producer):
    with pytest.raises(ValueError, match="dict"):
        producer.emit([{"event_type": "feedback"}])
    with pytest.raises(TypeError, match="tenant"):
        producer.feedback("acme", 3, tenant="acme")


def test_an_event_too_large_for_one_record_is_refused(producer):
    doc = {
        "event_id": "e",
        "event_type": "feedback",
        "timestamp": "2026-11-22T10:00:00Z",
        "tenant_id": "acme",
        "score": 3,
        "padding": "x" * MAX_RECORD_BYTES,
    }
    with pytest.raises(ValueError, match="bytes"):
        producer.emit(doc)


def test_partitioner_other_than_murmur2_is_refused():
    with pytest.raises(ValueError, match="murmur2"):
        TelemetryProducer(NOWHERE, partitioner="consistent_random")


# -- usage extraction ----------------------------------------------------------------------


def test_usage_of_an_openai_chat_completion():
    result = SimpleNamespace(
        usage=SimpleNamespace(
            prompt_tokens=1200,
            completion_tokens=300,
            total_tokens=1500,
            prompt_tokens_details=SimpleNamespace(cached_tokens=200),
        )
    )
    assert extract_usage(result) == {
        "input_tokens": 1200,
        "output_tokens": 300,
        "cached_input_tokens": 200,
    }
    bare = SimpleNamespace(
        usage=SimpleNamespace(prompt_tokens=10, completion_tokens=2, prompt_tokens_details=None)
    )
    assert extract_usage(bare) == {"input_tokens": 10, "output_tokens": 2, "cached_input_tokens": 0}


def test_usage_of_an_anthropic_message_counts_cached_tokens_as_input():
    result = SimpleNamespace(
        usage=SimpleNamespace(
            input_tokens=1000,
            output_tokens=300,
            cache_read_input_tokens=200,
            cache_creation_input_tokens=None,
        )
    )
    assert extract_usage(result) == {
        "input_tokens": 1200,
        "output_tokens": 300,
        "cached_input_tokens": 200,
    }
    writing = SimpleNamespace(
        usage=SimpleNamespace(
            input_tokens=10,
            output_tokens=5,
            cache_read_input_tokens=0,
            cache_creation_input_tokens=90,
        )
    )
    assert extract_usage(writing) == {
        "input_tokens": 100,
        "output_tokens": 5,
        "cached_input_tokens": 0,
    }


def test_usage_of_dicts_and_responses_style_results():
    openai = {
        "usage": {
            "prompt_tokens": 50,
            "completion_tokens": 5,
            "prompt_tokens_details": {"cached_tokens": 40},
        }
    }
    assert extract_usage(openai) == {
        "input_tokens": 50,
        "output_tokens": 5,
        "cached_input_tokens": 40,
    }
    anthropic = {"usage": {"input_tokens": 7, "output_tokens": 3, "cache_read_input_tokens": 93}}
    assert extract_usage(anthropic) == {
        "input_tokens": 100,
        "output_tokens": 3,
        "cached_input_tokens": 93,
    }
    usage_itself = {"prompt_tokens": 1, "completion_tokens": 2}
    assert extract_usage(usage_itself) == {
        "input_tokens": 1,
        "output_tokens": 2,
        "cached_input_tokens": 0,
    }
    responses = SimpleNamespace(
        usage=SimpleNamespace(
            input_tokens=500,
            output_tokens=20,
            input_tokens_details=SimpleNamespace(cached_tokens=100),
        )
    )
    assert extract_usage(responses) == {
        "input_tokens": 500,
        "output_tokens": 20,
        "cached_input_tokens": 100,
    }


def test_no_usage_found():
    assert extract_usage("plain text") is None
    assert extract_usage(None) is None
    assert extract_usage({"choices": []}) is None
    assert extract_usage(SimpleNamespace(usage=None)) is None


# -- tracking a call -----------------------------------------------------------------------


def openai_result(prompt=120, completion=30, cached=20):
    return SimpleNamespace(
        usage=SimpleNamespace(
            prompt_tokens=prompt,
            completion_tokens=completion,
            prompt_tokens_details=SimpleNamespace(cached_tokens=cached),
        )
    )


def test_track_llm_call_times_the_call_and_records_usage(producer):
    with producer.track_llm_call("acme", "gpt-4o", agent_id="bot", provider="openai") as call:
        time.sleep(0.03)
        assert call.record(openai_result()).usage.prompt_tokens == 120  # returns the result
        call.set(json_valid=False)
    event = EVENT_ADAPTER.validate_python(only(producer))
    assert isinstance(event, LlmCall)
    assert (event.model, event.agent_id, event.provider, event.status) == (
        "gpt-4o",
        "bot",
        "openai",
        "ok",
    )
    assert (event.input_tokens, event.output_tokens, event.cached_input_tokens) == (120, 30, 20)
    assert event.json_valid is False
    assert 30 <= event.latency_ms < 5000


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (TimeoutError("slow"), "timeout"),
        (type("ReadTimeout", (OSError,), {})("httpx-style"), "timeout"),
        (type("APITimeoutError", (Exception,), {})("client timeout"), "timeout"),
        (RuntimeError("boom"), "error"),
        (KeyError("k"), "error"),
    ],
)
def test_track_llm_call_status_on_exceptions_which_are_re_raised(producer, exc, status):
    with pytest.raises(type(exc)), producer.track_llm_call("acme", "gpt-4o"):
        raise exc
    event = EVENT_ADAPTER.validate_python(only(producer))
    assert (event.status, event.input_tokens) == (status, 0)
    assert event.latency_ms is not None


def test_track_llm_call_with_an_invalid_tenant_fails_before_the_call(producer):
    called = []
    with pytest.raises(ValueError, match="tenant_id"), producer.track_llm_call("", "gpt-4o"):
        called.append(True)
    assert called == [] and producer.pending == 0


def test_traced_decorator_records_the_return_value(producer):
    @producer.traced(tenant_id="acme", model="claude-sonnet-4", session_id="s-1")
    def answer(question):
        return {"usage": {"input_tokens": 10, "output_tokens": 4, "cache_read_input_tokens": 90}}

    assert answer("hi")["usage"]["output_tokens"] == 4
    assert answer.__name__ == "answer"
    doc = only(producer)
    assert (doc["model"], doc["session_id"], doc["status"]) == ("claude-sonnet-4", "s-1", "ok")
    assert (doc["input_tokens"], doc["output_tokens"], doc["cached_input_tokens"]) == (100, 4, 90)


def test_traced_decorator_on_async_functions_and_errors(producer):
    @producer.traced(tenant_id="acme", model="gpt-4o")
    async def ask():
        await asyncio.sleep(0.01)
        return openai_result(prompt=5, completion=1, cached=0)

    @producer.traced(tenant_id="acme", model="gpt-4o")
    def fail():
        raise ConnectionError("down")

    asyncio.run(ask())
    with pytest.raises(ConnectionError):
        fail()
    ok, failed = buffered(producer)
    assert (ok["status"], ok["input_tokens"], ok["output_tokens"]) == ("ok", 5, 1)
    assert ok["latency_ms"] >= 10
    assert failed["status"] == "error" and EVENT_ADAPTER.validate_python(failed).input_tokens == 0


# -- the bounded buffer --------------------------------------------------------------------


def test_a_full_buffer_drops_and_counts_without_blocking():
    p = TelemetryProducer(NOWHERE, max_buffer=10, linger_ms=1)
    try:
        started = time.monotonic()
        results = [p.llm_call(f"tenant-{i % 3}", "gpt-4o", input_tokens=5) for i in range(25)]
        assert time.monotonic() - started < 1.0
        assert results == [True] * 10 + [False] * 15
        assert (p.dropped, p.pending, p.sent, p.failed) == (15, 10, 0, 0)
        time.sleep(0.1)  # sent to librdkafka, never acknowledged: still waiting, still full
        assert p.feedback("acme", 3) is False
        assert (p.dropped, p.pending) == (16, 10)
    finally:
        started = time.monotonic()
        p.close(timeout=0.5)
    assert time.monotonic() - started < 5
    assert (p.pending, p.sent, p.failed, p.dropped) == (0, 0, 10, 16)
    assert p.feedback("acme", 3) is False  # closed: dropped, not raised
    assert p.dropped == 17


def test_context_manager_closes():
    with TelemetryProducer(NOWHERE, linger_ms=600_000) as p:
        assert p.pending == 0  # with events waiting, the exit waits up to 10 s for the broker
    assert p.feedback("acme", 5) is False and p.dropped == 1
    p.close()  # twice is fine
