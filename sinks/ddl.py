"""ClickHouse tables of llmtel. Every statement is idempotent and runs at worker start.

Money columns are Decimal(38, 12): exact USD to the pico-dollar, summed without rounding.
Rows written from Kafka carry their ``source`` (broker cluster id and topic) and offsets, so
a restarted worker can tell what it already stored and skip it.
"""

from __future__ import annotations

DEDUP_WINDOW = 10_000
"""Insert blocks remembered per table: a retried insert with the same token is dropped."""

EVENTS_MERGE_SETTINGS = (
    "vertical_merge_algorithm_min_rows_to_activate = 1, "
    "vertical_merge_algorithm_min_columns_to_activate = 1"
)
"""Merges of ``events`` go column by column, whatever the parts' size. ClickHouse merges
parts under 131,072 rows with every column open at once: with 37 columns, a merge of six
batches' parts took 184 MB in the embedded store (its MemoryTracking), column by column 40 MB."""

EVENTS_COLUMNS: tuple[tuple[str, str], ...] = (
    ("source", "LowCardinality(String)"),
    ("kafka_partition", "UInt16"),
    ("kafka_offset", "UInt64"),
    ("kafka_index", "UInt32"),
    ("event_id", "String"),
    ("event_type", "LowCardinality(String)"),
    ("ts", "DateTime64(3, 'UTC')"),
    ("tenant_id", "LowCardinality(String)"),
    ("trace_id", "String"),
    ("span_id", "String"),
    ("parent_span_id", "String"),
    ("session_id", "String"),
    ("agent_id", "LowCardinality(String)"),
    ("user_id", "String"),
    ("model", "LowCardinality(String)"),
    ("provider", "LowCardinality(String)"),
    ("input_tokens", "UInt32"),
    ("output_tokens", "UInt32"),
    ("cached_input_tokens", "UInt32"),
    ("cost_usd", "Decimal(38, 12)"),
    ("cost_source", "LowCardinality(String)"),
    ("latency_ms", "Nullable(Float64)"),
    ("status", "LowCardinality(String)"),
    ("json_valid", "Nullable(Bool)"),
    ("cache", "LowCardinality(String)"),
    ("abstained", "Bool"),
    ("tool_name", "LowCardinality(String)"),
    ("chunks_retrieved", "Nullable(UInt32)"),
    ("top_score", "Nullable(Float64)"),
    ("eval_name", "LowCardinality(String)"),
    ("score", "Nullable(Float64)"),
    ("label", "String"),
    ("comment", "String"),
    ("guardrail_kind", "LowCardinality(String)"),
    ("guardrail_action", "LowCardinality(String)"),
    ("prompt", "String"),
    ("completion", "String"),
)

ROLLUP_KEY_COLUMNS: tuple[tuple[str, str], ...] = (
    ("tenant_id", "LowCardinality(String)"),
    ("minute", "DateTime('UTC')"),
    ("model", "LowCardinality(String)"),
    ("agent_id", "LowCardinality(String)"),
    ("source", "LowCardinality(String)"),
    ("kafka_partition", "UInt16"),
)
ROLLUP_VALUE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("requests", "SimpleAggregateFunction(sum, UInt64)"),
    ("errors", "SimpleAggregateFunction(sum, UInt64)"),
    ("input_tokens", "SimpleAggregateFunction(sum, UInt64)"),
    ("output_tokens", "SimpleAggregateFunction(sum, UInt64)"),
    ("cached_input_tokens", "SimpleAggregateFunction(sum, UInt64)"),
    ("cost_usd", "SimpleAggregateFunction(sum, Decimal(38, 12))"),
    ("latency_ms_sum", "SimpleAggregateFunction(sum, Float64)"),
    ("unknown_model_requests", "SimpleAggregateFunction(sum, UInt64)"),
    ("max_offset", "SimpleAggregateFunction(max, UInt64)"),
)
ROLLUP_COLUMNS = ROLLUP_KEY_COLUMNS + ROLLUP_VALUE_COLUMNS


ALERTS_COLUMNS: tuple[tuple[str, str], ...] = (
    ("alert_id", "String"),
    ("rule", "LowCardinality(String)"),
    ("state", "LowCardinality(String)"),
    ("severity", "LowCardinality(String)"),
    ("tenant_id", "Nullable(String)"),
    ("value", "Float64"),
    ("threshold", "Float64"),
    ("window", "LowCardinality(String)"),
    ("started_at", "DateTime64(3, 'UTC')"),
    ("event_time", "DateTime64(3, 'UTC')"),
    ("runbook", "String"),
    ("labels", "Map(String, String)"),
)
DEGRADE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("tenant_id", "String"),
    ("mode", "LowCardinality(String)"),
    ("state", "LowCardinality(String)"),
    ("reason", "LowCardinality(String)"),
    ("recommendation", "String"),
    ("event_time", "DateTime64(3, 'UTC')"),
)

SLA_COLUMNS: tuple[tuple[str, str], ...] = (
    ("ts", "DateTime64(3, 'UTC')"),
    ("window_end", "DateTime64(3, 'UTC')"),
    ("tenant_id", "LowCardinality(String)"),
    ("tier", "LowCardinality(String)"),
    ("availability", "Nullable(Float64)"),
    ("p95_latency_ms", "Nullable(Float64)"),
    ("json_valid_rate", "Nullable(Float64)"),
    ("groundedness", "Nullable(Float64)"),
    ("cost_p95_usd", "Nullable(Float64)"),
    ("abstention_rate", "Nullable(Float64)"),
    ("tool_success_rate", "Nullable(Float64)"),
    ("calls", "UInt64"),
    ("error_budget_remaining", "Float64"),
    ("degraded_mode", "LowCardinality(String)"),
    ("breaches", "Array(LowCardinality(String))"),
)


def _migrations() -> list[str]:
    """Columns and settings added since a table was first created (no-ops on new tables)."""
    return [
        "ALTER TABLE events ADD COLUMN IF NOT EXISTS prompt String",
        "ALTER TABLE events ADD COLUMN IF NOT EXISTS completion String",
        f"ALTER TABLE events MODIFY SETTING {EVENTS_MERGE_SETTINGS}",
    ]


def _columns(columns: tuple[tuple[str, str], ...]) -> str:
    return ",\n    ".join(f"`{name}` {kind}" for name, kind in columns)


def create_statements(events_ttl_days: int = 90, rollups_ttl_days: int = 400) -> list[str]:
    """CREATE statements for every table, in order."""
    return [
        f"""CREATE TABLE IF NOT EXISTS events (
    {_columns(EVENTS_COLUMNS)},
    `ingested_at` DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = MergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (tenant_id, event_type, ts)
TTL toDateTime(ts) + INTERVAL {events_ttl_days} DAY
SETTINGS non_replicated_deduplication_window = {DEDUP_WINDOW}, {EVENTS_MERGE_SETTINGS}""",
        f"""CREATE TABLE IF NOT EXISTS rollups_1m (
    {_columns(ROLLUP_COLUMNS)}
) ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY ({", ".join(name for name, _ in ROLLUP_KEY_COLUMNS)})
TTL minute + INTERVAL {rollups_ttl_days} DAY
SETTINGS non_replicated_deduplication_window = {DEDUP_WINDOW}""",
        # A replayed batch may publish an alert again: one row per (alert_id, state) remains.
        f"""CREATE TABLE IF NOT EXISTS alerts (
    {_columns(ALERTS_COLUMNS)},
    `published_at` DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = ReplacingMergeTree
ORDER BY (alert_id, state)
TTL toDateTime(event_time) + INTERVAL {rollups_ttl_days} DAY""",
        f"""CREATE TABLE IF NOT EXISTS degrade_events (
    {_columns(DEGRADE_COLUMNS)},
    `published_at` DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = ReplacingMergeTree
ORDER BY (tenant_id, mode, state, event_time, reason)
TTL toDateTime(event_time) + INTERVAL {rollups_ttl_days} DAY""",
        f"""CREATE TABLE IF NOT EXISTS sla_snapshots (
    {_columns(SLA_COLUMNS)}
) ENGINE = MergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (tenant_id, ts)
TTL toDateTime(ts) + INTERVAL {rollups_ttl_days} DAY""",
        *_migrations(),
    ]
