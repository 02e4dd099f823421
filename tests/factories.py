"""Event builders for tests: valid by default, any field overridable."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

_ids = itertools.count()
NOW = datetime.now(UTC).replace(microsecond=0)


def iso(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


def event(event_type: str = "llm_call", **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "event_id": f"ev-{next(_ids)}",
        "event_type": event_type,
        "timestamp": iso(NOW - timedelta(minutes=5)),
        "tenant_id": "acme",
    }
    base.update(
        {
            "llm_call": {"model": "gpt-4o-mini", "input_tokens": 1000, "output_tokens": 200},
            "tool_call": {"tool_name": "search", "status": "ok", "latency_ms": 120},
            "rag_retrieval": {"chunks_retrieved": 5, "top_score": 0.82, "latency_ms": 40},
            "evaluation": {"name": "faithfulness", "score": 0.9},
            "feedback": {"score": 4},
            "guardrail": {"kind": "prompt_injection", "action": "blocked"},
        }.get(event_type, {})
    )
    base.update(fields)
    return base


def record(doc: Any, key: str | None = "from-doc") -> tuple[bytes | None, bytes]:
    """(key, value) of a record holding ``doc``; the key defaults to the doc's tenant."""
    if key == "from-doc":
        first = doc[0] if isinstance(doc, list) else doc
        key = first.get("tenant_id")
    return (key.encode() if key is not None else None), orjson.dumps(doc)
