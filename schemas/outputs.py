"""What llmtel publishes: alert events on ``llm.alerts`` and degrade commands on ``llm.degrade``.

Both are JSON objects keyed by ``tenant_id`` (the key is empty for global alerts).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

DegradeMode = Literal[
    "route_cheaper_model",
    "reduce_top_k",
    "safe_answers",
    "read_only_tools",
    "strict_output",
    "block",
]
DEGRADE_MODES: tuple[str, ...] = DegradeMode.__args__  # type: ignore[attr-defined]


class Alert(BaseModel):
    """One state change of one alert episode: ``firing`` once, then ``resolved`` once."""

    model_config = ConfigDict(frozen=True)

    alert_id: str = Field(
        description="Stable for the episode: the firing and resolved events share it"
    )
    rule: str
    state: Literal["firing", "resolved"]
    severity: Literal["info", "warning", "critical"]
    tenant_id: str | None = Field(description="null for rules over all tenants")
    value: float = Field(description="The measured value when the state changed")
    threshold: float
    window: str = Field(description="The rule's window, e.g. 1h")
    started_at: datetime = Field(description="Event time the episode started")
    event_time: datetime = Field(description="Event time of this state change")
    runbook: str = ""
    labels: dict[str, str] = Field(default_factory=dict)


class DegradeCommand(BaseModel):
    """Enter or exit a degraded mode for one tenant; services switch behaviour on it."""

    model_config = ConfigDict(frozen=True)

    tenant_id: str
    mode: DegradeMode
    state: Literal["enter", "exit"]
    reason: str = Field(description="The rule or budget that caused it, e.g. budget_exceeded")
    recommendation: str = Field(description="What to do, concretely (e.g. which model to route to)")
    event_time: datetime


def _schema(model: type[BaseModel], title: str) -> dict[str, Any]:
    schema = model.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = title
    return schema


def alert_json_schema() -> dict[str, Any]:
    """JSON Schema of the records on ``llm.alerts``."""
    return _schema(Alert, "llmtel alert")


def degrade_json_schema() -> dict[str, Any]:
    """JSON Schema of the records on ``llm.degrade``."""
    return _schema(DegradeCommand, "llmtel degrade command")
