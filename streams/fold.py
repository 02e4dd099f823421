"""Per-batch folding: events into ClickHouse rows and per-minute rollups.

Pure functions over plain structures; the worker calls them once per batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from schemas.events import Evaluation, Feedback, Guardrail, LlmCall, RagRetrieval, ToolCall
from sinks.ddl import EVENTS_COLUMNS, ROLLUP_COLUMNS
from streams.parse import Accepted
from streams.pricing import COST_UNKNOWN_MODEL, pico_to_usd
from streams.redact import redact

EVENTS_COLUMN_NAMES = tuple(name for name, _ in EVENTS_COLUMNS)
ROLLUP_COLUMN_NAMES = tuple(name for name, _ in ROLLUP_COLUMNS)

NO_COST = pico_to_usd(0)  # shared by the rows of events that cost nothing

RollupKey = tuple[str, int, str, str, int]
"""(tenant_id, minute as epoch seconds, model, agent_id, kafka partition)."""


@dataclass(slots=True)
class RollupTotals:
    """What one rollup row adds up; cost in pico-USD."""

    requests: int = 0
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cost_pico: int = 0
    latency_ms_sum: float = 0.0
    unknown_model_requests: int = 0
    max_offset: int = 0


def minute_of(ts: float) -> int:
    """Epoch seconds of the minute ``ts`` (epoch seconds) falls in."""
    return int(ts) // 60 * 60


def fold_llm_call(
    rollups: dict[RollupKey, RollupTotals], partition: int, offset: int, item: Accepted
) -> None:
    """Add one accepted ``llm_call`` to its rollup row."""
    event: LlmCall = item.event  # type: ignore[assignment]
    key = (
        event.tenant_id,
        minute_of(item.ts),
        event.model,
        event.agent_id or "",
        partition,
    )
    totals = rollups.get(key)
    if totals is None:
        totals = rollups[key] = RollupTotals()
    totals.requests += 1
    if event.status != "ok":
        totals.errors += 1
    totals.input_tokens += event.input_tokens
    totals.output_tokens += event.output_tokens
    totals.cached_input_tokens += event.cached_input_tokens
    totals.cost_pico += item.cost_pico
    totals.latency_ms_sum += event.latency_ms or 0.0
    if item.cost_source == COST_UNKNOWN_MODEL:
        totals.unknown_model_requests += 1
    totals.max_offset = max(totals.max_offset, offset)


def rollup_rows(source: str, rollups: dict[RollupKey, RollupTotals]) -> list[tuple[Any, ...]]:
    """Rows for ``rollups_1m`` in ROLLUP_COLUMN_NAMES order.

    Every row of a partition carries the batch's highest offset of that partition, so the
    rows themselves record what was applied.
    """
    top: dict[int, int] = {}
    for (_, _, _, _, partition), totals in rollups.items():
        top[partition] = max(top.get(partition, 0), totals.max_offset)
    return [
        (
            tenant,
            datetime.fromtimestamp(minute, UTC),
            model,
            agent,
            source,
            partition,
            t.requests,
            t.errors,
            t.input_tokens,
            t.output_tokens,
            t.cached_input_tokens,
            pico_to_usd(t.cost_pico),
            t.latency_ms_sum,
            t.unknown_model_requests,
            top[partition],
        )
        for (tenant, minute, model, agent, partition), t in rollups.items()
    ]


def event_row(
    source: str, partition: int, offset: int, item: Accepted, store_content: bool = False
) -> tuple[Any, ...]:
    """One ``events`` row in EVENTS_COLUMN_NAMES order; prompts and completions only when
    ``store_content``, and then redacted."""
    e = item.event
    prompt = completion = ""
    model = provider = status = cache = tool = eval_name = label = comment = kind = action = ""
    in_tok = out_tok = cached = 0
    latency = json_valid = chunks = top_score = score = None
    abstained = False
    if isinstance(e, LlmCall):
        model, provider, status, cache = e.model, e.provider or "", e.status, e.cache
        in_tok, out_tok, cached = e.input_tokens, e.output_tokens, e.cached_input_tokens
        latency, json_valid, abstained = e.latency_ms, e.json_valid, e.abstained
        if store_content:
            prompt, completion = redact(e.prompt or ""), redact(e.completion or "")
    elif isinstance(e, ToolCall):
        tool, status, latency = e.tool_name, e.status, e.latency_ms
    elif isinstance(e, RagRetrieval):
        chunks, top_score, latency = e.chunks_retrieved, e.top_score, e.latency_ms
    elif isinstance(e, Evaluation):
        eval_name, score, label = e.name, e.score, e.label or ""
    elif isinstance(e, Feedback):
        score, comment = e.score, e.comment or ""
    elif isinstance(e, Guardrail):
        kind, action = e.kind, e.action
    return (
        source,
        partition,
        offset,
        item.index,
        e.event_id,
        e.event_type,
        e.timestamp,
        e.tenant_id,
        e.trace_id or "",
        e.span_id or "",
        e.parent_span_id or "",
        e.session_id or "",
        e.agent_id or "",
        e.user_id or "",
        model,
        provider,
        in_tok,
        out_tok,
        cached,
        pico_to_usd(item.cost_pico) if item.cost_pico else NO_COST,
        item.cost_source,
        latency,
        status,
        json_valid,
        cache,
        abstained,
        tool,
        chunks,
        top_score,
        eval_name,
        score,
        label,
        comment,
        kind,
        action,
        prompt,
        completion,
    )
