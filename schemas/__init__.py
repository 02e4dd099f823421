"""Wire models of llmtel: input events and the alerts and degrade commands it publishes."""

from schemas.errors import LlmtelError
from schemas.events import (
    EVENT_ADAPTER,
    EVENT_TYPES,
    SCHEMA_VERSION,
    Evaluation,
    Event,
    Feedback,
    Guardrail,
    LlmCall,
    RagRetrieval,
    ToolCall,
    event_json_schema,
)
from schemas.outputs import (
    DEGRADE_MODES,
    Alert,
    DegradeCommand,
    alert_json_schema,
    degrade_json_schema,
)

__all__ = [
    "DEGRADE_MODES",
    "EVENT_ADAPTER",
    "EVENT_TYPES",
    "SCHEMA_VERSION",
    "Alert",
    "DegradeCommand",
    "Evaluation",
    "Event",
    "Feedback",
    "Guardrail",
    "LlmCall",
    "LlmtelError",
    "RagRetrieval",
    "ToolCall",
    "alert_json_schema",
    "degrade_json_schema",
    "event_json_schema",
]
