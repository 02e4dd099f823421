"""Where llmtel stores what it computes: ClickHouse (a server, or chDB in-process)."""

from sinks.clickhouse import ClickHouseSink
from sinks.errors import SinkConfigError, SinkError, StoreBusy

__all__ = ["ClickHouseSink", "SinkConfigError", "SinkError", "StoreBusy"]
