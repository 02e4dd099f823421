"""The root of llmtel's exceptions.

    LlmtelError                 every error llmtel raises on purpose
    ├── streams.errors.ConfigError   bad settings or policy, raised at start
    └── sinks.errors.SinkError       a ClickHouse write or read failed (``retriable`` says if a retry may help)

A malformed event is not an exception: the parser returns a ``Rejection`` that goes to the
dead-letter topic.
"""


class LlmtelError(Exception):
    """Base class of every error llmtel raises on purpose."""
