from decimal import Decimal

import pytest
from pydantic import ValidationError

from schemas import EVENT_ADAPTER, EVENT_TYPES, LlmCall, event_json_schema
from tests.factories import event


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_every_event_type_validates_its_example(event_type):
    parsed = EVENT_ADAPTER.validate_python(event(event_type))
    assert parsed.event_type == event_type


def test_opentelemetry_attribute_names_are_accepted_as_aliases():
    doc = event("llm_call")
    for name in ("model", "input_tokens", "output_tokens"):
        del doc[name]
    doc.update(
        {
            "gen_ai.request.model": "claude-sonnet-4",
            "gen_ai.usage.input_tokens": 50,
            "gen_ai.usage.output_tokens": 7,
            "gen_ai.usage.cache_read.input_tokens": 10,
            "gen_ai.provider.name": "anthropic",
        }
    )
    parsed = EVENT_ADAPTER.validate_python(doc)
    assert isinstance(parsed, LlmCall)
    assert (parsed.model, parsed.input_tokens, parsed.output_tokens) == ("claude-sonnet-4", 50, 7)
    assert (parsed.cached_input_tokens, parsed.provider) == (10, "anthropic")


@pytest.mark.parametrize(
    ("written", "expected"),
    [(0.0123, "0.0123"), ("0.000000000001", "0.000000000001"), (3, "3"), ("12.5", "12.5")],
)
def test_cost_keeps_the_digits_the_producer_wrote(written, expected):
    parsed = EVENT_ADAPTER.validate_python(event(cost_usd=written))
    assert parsed.cost_usd == Decimal(expected)


@pytest.mark.parametrize(
    "change",
    [
        {"input_tokens": -1},
        {"input_tokens": True},
        {"input_tokens": "12"},
        {"input_tokens": 1.5},
        {"output_tokens": 10_000_001},
        {"cached_input_tokens": 2000},  # more than input_tokens
        {"cost_usd": "NaN"},
        {"cost_usd": "-0.1"},
        {"cost_usd": "abc"},
        {"cost_usd": 1e9},
        {"latency_ms": -3},
        {"latency_ms": True},
        {"status": "weird"},
        {"cache": "maybe"},
        {"json_valid": "yes"},
        {"timestamp": "2026-11-22T10:00:00"},  # no zone
        {"timestamp": "yesterday"},
        {"tenant_id": ""},
        {"tenant_id": 7},
        {"event_id": ""},
        {"model": None},
    ],
)
def test_llm_call_rejects_out_of_range_and_wrong_types(change):
    with pytest.raises(ValidationError):
        EVENT_ADAPTER.validate_python(event("llm_call", **change))


@pytest.mark.parametrize(
    ("event_type", "change"),
    [
        ("evaluation", {"score": 1.01}),
        ("evaluation", {"score": -0.01}),
        ("evaluation", {"score": float("nan")}),
        ("feedback", {"score": 0}),
        ("feedback", {"score": 6}),
        ("guardrail", {"action": "shrug"}),
        ("tool_call", {"status": "maybe"}),
        ("rag_retrieval", {"chunks_retrieved": -1}),
    ],
)
def test_scores_and_enums_are_range_checked(event_type, change):
    with pytest.raises(ValidationError):
        EVENT_ADAPTER.validate_python(event(event_type, **change))


def test_missing_required_fields_are_rejected():
    for field in ("event_id", "timestamp", "tenant_id", "model"):
        doc = event("llm_call")
        del doc[field]
        with pytest.raises(ValidationError):
            EVENT_ADAPTER.validate_python(doc)


def test_json_schema_describes_every_event_type():
    schema = event_json_schema()
    text = str(schema)
    for event_type in EVENT_TYPES:
        assert event_type in text
    assert schema["$schema"].endswith("2020-12/schema")
