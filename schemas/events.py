"""Input events, schema version 1: the wire format every producer sends to ``llm.events``.

One JSON object per event (or a JSON array of them in one record), keyed by ``tenant_id``.
These pydantic models are the single definition of what is valid: the worker validates with
them and ``llmtel schema`` exports their JSON Schema for producers in other languages.
Unknown fields are ignored, so producers can add their own; OpenTelemetry GenAI attribute
names are accepted as aliases where they exist.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StringConstraints,
    TypeAdapter,
    WithJsonSchema,
    model_validator,
)

SCHEMA_VERSION = 1

MAX_TOKENS = 10_000_000
"""Largest token count accepted in one field of one call; above it is a producer bug."""
MAX_COST_USD = Decimal(1000)
"""Largest cost of one call accepted, in USD."""
MAX_LATENCY_MS = 3_600_000.0
"""One hour: a larger latency is a unit mistake (seconds vs. microseconds)."""

EVENT_TYPES = ("llm_call", "tool_call", "rag_retrieval", "evaluation", "feedback", "guardrail")

Id = Annotated[str, StringConstraints(strict=True, min_length=1, max_length=256)]
Name = Annotated[str, StringConstraints(strict=True, min_length=1, max_length=128)]
OptionalId = Annotated[str, StringConstraints(strict=True, max_length=256)] | None
Tokens = Annotated[StrictInt, Field(ge=0, le=MAX_TOKENS)]
LatencyMs = Annotated[float, Field(ge=0, le=MAX_LATENCY_MS, allow_inf_nan=False, strict=False)]
Unit = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]


def _no_bool(value: Any) -> Any:
    # JSON true/false must not pass as 1/0 in numeric fields.
    if isinstance(value, bool):
        raise ValueError("must be a number, not a boolean")
    if isinstance(value, str):
        raise ValueError("must be a number, not a string")
    return value


COST_PATTERN = r"^\d+(\.\d+)?([eE][+-]?\d+)?$"
_COST_TEXT = re.compile(COST_PATTERN, re.ASCII)
_ISO_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}", re.ASCII)


def _iso_date_time(value: Any) -> Any:
    # pydantic also reads Unix times (numbers, digit strings) as UTC; the wire format is ISO 8601
    if isinstance(value, datetime) or (isinstance(value, str) and _ISO_DATE_TIME.match(value)):
        return value
    raise ValueError("must be an ISO 8601 date-time with a zone, e.g. 2026-11-22T10:00:00Z")


def _to_decimal(value: Any) -> Decimal:
    """Read a cost given as a JSON number or a decimal string, exactly as written."""
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise ValueError("must be a number or a decimal string")
    if isinstance(value, str) and not _COST_TEXT.fullmatch(value):
        # Decimal() alone would also take " 1", "+1", "1_000", "-0" and non-ASCII digits
        raise ValueError("is not a decimal string of ASCII digits, e.g. 0.0123 or 1.5E-7")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("must be finite")
        value = repr(value)  # the shortest repr is the digits the producer wrote
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise ValueError("is not a decimal number") from None
    if not amount.is_finite():
        raise ValueError("must be finite")
    if amount < 0 or amount > MAX_COST_USD:
        raise ValueError(f"must be between 0 and {MAX_COST_USD}")
    return amount


Number = Annotated[float, BeforeValidator(_no_bool)]
CostUsd = Annotated[
    Decimal,
    BeforeValidator(_to_decimal),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0, "maximum": float(MAX_COST_USD)},
                {"type": "string", "pattern": COST_PATTERN},
            ],
            "description": "USD; a decimal string keeps every digit exactly",
        }
    ),
]


class EventBase(BaseModel):
    """Fields every event carries."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    event_id: Id = Field(description="Unique per event; a resent event keeps its id")
    timestamp: Annotated[AwareDatetime, BeforeValidator(_iso_date_time)] = Field(
        description="Event time, ISO 8601 with a zone"
    )
    tenant_id: Name = Field(description="The customer; also the Kafka record key")
    trace_id: OptionalId = None
    span_id: OptionalId = None
    parent_span_id: OptionalId = None
    session_id: OptionalId = Field(None, validation_alias=AliasChoices("session_id", "session.id"))
    agent_id: OptionalId = Field(
        None, validation_alias=AliasChoices("agent_id", "gen_ai.agent.id", "gen_ai.agent.name")
    )
    user_id: OptionalId = Field(None, validation_alias=AliasChoices("user_id", "user.id"))


class LlmCall(EventBase):
    """One call to a model."""

    event_type: Literal["llm_call"]
    model: Name = Field(
        validation_alias=AliasChoices("model", "gen_ai.request.model", "gen_ai.response.model")
    )
    provider: Annotated[str, StringConstraints(strict=True, max_length=128)] | None = Field(
        None, validation_alias=AliasChoices("provider", "gen_ai.provider.name", "gen_ai.system")
    )
    input_tokens: Tokens = Field(
        0,
        validation_alias=AliasChoices("input_tokens", "gen_ai.usage.input_tokens"),
        description="All prompt tokens, cached ones included",
    )
    output_tokens: Tokens = Field(
        0, validation_alias=AliasChoices("output_tokens", "gen_ai.usage.output_tokens")
    )
    cached_input_tokens: Tokens = Field(
        0,
        validation_alias=AliasChoices(
            "cached_input_tokens",
            "gen_ai.usage.cache_read.input_tokens",
            "gen_ai.usage.cache_read_input_tokens",
        ),
        description="The part of input_tokens billed at the cached rate",
    )
    cost_usd: CostUsd | None = Field(None, description="When absent, computed from the price table")
    latency_ms: Annotated[LatencyMs, BeforeValidator(_no_bool)] | None = None
    status: Literal["ok", "error", "timeout", "provider_error"] = "ok"
    json_valid: StrictBool | None = None
    cache: Literal["none", "exact", "semantic"] = "none"
    abstained: StrictBool = False
    prompt: Annotated[str, StringConstraints(strict=True, max_length=200_000)] | None = Field(
        None,
        validation_alias=AliasChoices("prompt", "gen_ai.prompt", "gen_ai.input.messages"),
        description="Stored (redacted) only when the policy enables content storage",
    )
    completion: Annotated[str, StringConstraints(strict=True, max_length=200_000)] | None = Field(
        None,
        validation_alias=AliasChoices("completion", "gen_ai.completion", "gen_ai.output.messages"),
        description="Stored (redacted) only when the policy enables content storage",
    )

    @model_validator(mode="after")
    def _cached_within_input(self) -> LlmCall:
        if self.cached_input_tokens > self.input_tokens:
            raise ValueError("cached_input_tokens must not exceed input_tokens")
        return self


class ToolCall(EventBase):
    """One tool (function) execution by an agent."""

    event_type: Literal["tool_call"]
    tool_name: Name = Field(validation_alias=AliasChoices("tool_name", "gen_ai.tool.name"))
    status: Literal["ok", "error", "blocked_injection"] = "ok"
    latency_ms: Annotated[LatencyMs, BeforeValidator(_no_bool)] | None = None


class RagRetrieval(EventBase):
    """One retrieval from a vector store or search index."""

    event_type: Literal["rag_retrieval"]
    chunks_retrieved: Annotated[StrictInt, Field(ge=0, le=100_000)] = 0
    top_score: Annotated[float, BeforeValidator(_no_bool), Field(allow_inf_nan=False)] | None = None
    latency_ms: Annotated[LatencyMs, BeforeValidator(_no_bool)] | None = None


class Evaluation(EventBase):
    """A quality score from an evaluator; for ``hallucination`` 1 means hallucinated."""

    event_type: Literal["evaluation"]
    name: Name = Field(
        description="faithfulness, hallucination, groundedness, rag_recall_at_5, ..."
    )
    score: Annotated[Unit, BeforeValidator(_no_bool)]
    label: Annotated[str, StringConstraints(strict=True, max_length=256)] | None = None


class Feedback(EventBase):
    """A user's rating of an answer, 1 (bad) to 5 (good)."""

    event_type: Literal["feedback"]
    score: Annotated[float, BeforeValidator(_no_bool), Field(ge=1, le=5, allow_inf_nan=False)]
    comment: Annotated[str, StringConstraints(strict=True, max_length=4096)] | None = None


class Guardrail(EventBase):
    """A guardrail verdict on a prompt, a tool input or an answer."""

    event_type: Literal["guardrail"]
    kind: Name = Field(description="prompt_injection, pii, toxicity, ...")
    action: Literal["blocked", "flagged", "allowed"]


Event = Annotated[
    LlmCall | ToolCall | RagRetrieval | Evaluation | Feedback | Guardrail,
    Field(discriminator="event_type"),
]
"""Any input event; ``event_type`` selects the model."""

EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)


def event_json_schema() -> dict[str, Any]:
    """The JSON Schema of one input event (what a record holds, or each element of its array)."""
    schema = EVENT_ADAPTER.json_schema(by_alias=False)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "llmtel input event"
    schema["description"] = (
        f"Schema version {SCHEMA_VERSION}. One object per Kafka record on llm.events "
        "(or a JSON array of them), keyed by tenant_id."
    )
    return schema
