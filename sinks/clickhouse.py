"""The ClickHouse sink: one client for a ClickHouse server (http/https DSN) or chDB (chdb DSN).

Every method blocks. The worker calls them from one dedicated thread, so the event loop keeps
heartbeating while ClickHouse works, and chDB sees one caller at a time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import clickhouse_connect
import orjson
from clickhouse_connect.driver.exceptions import ClickHouseError, OperationalError

from sinks import failpoints
from sinks.ddl import create_statements
from sinks.errors import SinkConfigError, SinkError, StoreBusy

log = logging.getLogger(__name__)


def _json_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"cannot store a {type(value).__name__} value")


def _failure(message: str, exc: ClickHouseError) -> SinkError:
    """A SinkError for ``exc``: retriable when the server could not be reached or timed out,
    not when it refused the statement (a retry would fail the same way)."""
    error = SinkError(f"{message}: {exc}")
    error.retriable = isinstance(exc, OperationalError)
    return error


_SCHEMES = ("chdb", "http", "https", "clickhouse", "clickhouses")


def _redact(dsn: str) -> str:
    """The DSN without its password, for messages and logs."""
    parts = urlsplit(dsn)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return dsn


class ClickHouseSink:
    """Tables, inserts and queries of llmtel on one ClickHouse."""

    def __init__(
        self,
        dsn: str,
        *,
        events_ttl_days: int = 90,
        rollups_ttl_days: int = 400,
        on_insert: Callable[[str, float, bool], None] | None = None,
        tls: dict[str, Any] | None = None,
    ) -> None:
        """``on_insert(table, seconds, ok)`` is called after every insert attempt."""
        scheme = urlsplit(dsn).scheme
        if scheme not in _SCHEMES:
            raise SinkConfigError(
                f"LLMTEL_CLICKHOUSE_DSN: scheme {scheme!r} is not one of {', '.join(_SCHEMES)}"
            )
        self.dsn = dsn
        self.embedded = scheme == "chdb"
        self._ttl = (events_ttl_days, rollups_ttl_days)
        self._client: Any = None
        self._on_insert = on_insert
        self._tls = tls or {}  # ca_cert / verify, for https DSNs

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = self._connect()
        return self._client

    def _connect(self) -> Any:
        try:
            if self.embedded:
                path = urlsplit(self.dsn).path
                Path(path).mkdir(parents=True, exist_ok=True)
                return clickhouse_connect.get_client(dsn=self.dsn)
            database = urlsplit(self.dsn).path.strip("/")
            if database:
                self._create_database(database)
            return clickhouse_connect.get_client(
                dsn=self.dsn, autogenerate_session_id=False, **self._tls
            )
        except Exception as exc:
            if self.embedded and (
                "Another server instance" in str(exc) or "EmbeddedServer" in str(exc)
            ):
                raise StoreBusy(
                    f"the embedded store {urlsplit(self.dsn).path} is open in another process "
                    "(a running llmtel worker?)"
                ) from exc
            raise SinkError(f"cannot connect to ClickHouse at {_redact(self.dsn)}: {exc}") from exc

    def _create_database(self, database: str) -> None:
        server = urlunsplit(urlsplit(self.dsn)._replace(path="/"))
        client = clickhouse_connect.get_client(
            dsn=server, autogenerate_session_id=False, **self._tls
        )
        try:
            client.command(f"CREATE DATABASE IF NOT EXISTS `{database}`")
        finally:
            client.close()

    def ensure_tables(self) -> None:
        """Create every table llmtel writes, if missing."""
        for statement in create_statements(*self._ttl):
            self.command(statement)

    def command(self, sql: str) -> Any:
        try:
            return self.client.command(sql)
        except ClickHouseError as exc:
            raise _failure("ClickHouse command failed", exc) from exc

    def insert(
        self,
        table: str,
        column_names: Sequence[str],
        rows: Sequence[Sequence[Any]],
        token: str,
    ) -> None:
        """Insert rows (each in ``column_names`` order) as one block; a retry with the same
        token is a no-op.

        The block travels as JSON (JSONCompactEachRow), which ClickHouse parses in C++: about
        4x cheaper for the worker than encoding the Native format value by value in Python.
        The rows are one orjson array without its brackets (ClickHouse takes a comma between
        rows), which costs the worker half of transposing them into columns first.
        Decimals go as strings, so money stays exact; datetimes as ISO 8601 with their zone.
        """
        if not rows:
            return
        settings = {
            "insert_deduplication_token": token,
            "insert_deduplicate": 1,
            "date_time_input_format": "best_effort",
        }
        if not self.embedded:
            settings["async_insert"] = 0
        started = time.perf_counter()
        ok = False
        failpoints.before_insert(table)
        try:
            self.client.raw_insert(
                table,
                list(column_names),
                orjson.dumps(rows, default=_json_value)[1:-1],
                settings=settings,
                fmt="JSONCompactEachRow",
            )
            ok = True
            failpoints.after_insert(table)
        except ClickHouseError as exc:
            raise _failure(f"insert into {table} failed", exc) from exc
        finally:
            if self._on_insert is not None:
                self._on_insert(table, time.perf_counter() - started, ok)

    def query(
        self, sql: str, parameters: dict[str, Any] | None = None
    ) -> tuple[list[str], list[str], list[tuple]]:
        """(column names, column types, rows) of a query."""
        try:
            result = self.client.query(sql, parameters=parameters)
        except ClickHouseError as exc:
            raise _failure("query failed", exc) from exc
        names, types = list(result.column_names), [t.name for t in result.column_types]
        if not names and self.embedded:
            names, types = self._describe(sql)
        return names, types, [tuple(r) for r in result.result_rows]

    def _describe(self, sql: str) -> tuple[list[str], list[str]]:
        # chDB gives no column metadata for an empty result; ask for it instead.
        try:
            described = self.client.query(f"DESCRIBE TABLE ({sql.strip().rstrip(';')})")
        except ClickHouseError:
            return [], []
        return [r[0] for r in described.result_rows], [r[1] for r in described.result_rows]

    def applied_offsets(self, source: str) -> dict[str, dict[int, int]]:
        """Per table, the highest Kafka offset stored from ``source``, by partition."""
        events = self.query(
            "SELECT kafka_partition, max(kafka_offset) FROM events "
            "WHERE source = {source:String} GROUP BY kafka_partition",
            {"source": source},
        )[2]
        rollups = self.query(
            "SELECT kafka_partition, max(max_offset) FROM rollups_1m "
            "WHERE source = {source:String} GROUP BY kafka_partition",
            {"source": source},
        )[2]
        return {
            "events": {int(p): int(o) for p, o in events},
            "rollups_1m": {int(p): int(o) for p, o in rollups},
        }

    def recent_activity(self, source: str, partition: int) -> dict[str, list[tuple]]:
        """Per-minute aggregates of the last 2 h (and hourly feedback of the last 25 h) of each
        tenant's event time, for the events stored from one partition: what rebuilds the
        in-memory rule windows after a restart or a rebalance."""
        where = "source = {source:String} AND kafka_partition = {partition:UInt16}"
        params = {"source": source, "partition": partition}
        latest = f"(SELECT tenant_id AS t, max(ts) AS latest FROM events WHERE {where} GROUP BY tenant_id)"
        minutes = self.query(
            f"""SELECT tenant_id, toUnixTimestamp(toStartOfMinute(ts)) AS minute,
                countIf(event_type = 'llm_call'),
                countIf(event_type = 'llm_call' AND status != 'ok'),
                sumIf(input_tokens, event_type = 'llm_call'),
                sumIf(output_tokens, event_type = 'llm_call'),
                toString(sumIf(cost_usd, event_type = 'llm_call')),
                sumMapIf([if(ifNull(latency_ms, 0) <= 1, 0, toInt32(ceil(log(ifNull(latency_ms, 1)) / log(1.02))))], [toUInt64(1)],
                         event_type = 'llm_call' AND latency_ms IS NOT NULL),
                sumIf(score, event_type = 'evaluation' AND eval_name = 'faithfulness'),
                countIf(event_type = 'evaluation' AND eval_name = 'faithfulness'),
                countIf(event_type = 'evaluation' AND eval_name = 'hallucination'),
                countIf(event_type = 'evaluation' AND eval_name = 'hallucination' AND score >= 0.5),
                countIf((event_type = 'guardrail' AND guardrail_kind = 'prompt_injection' AND guardrail_action = 'blocked')
                        OR (event_type = 'tool_call' AND status = 'blocked_injection')),
                sumIf(score, event_type = 'feedback'),
                countIf(event_type = 'feedback'),
                toUnixTimestamp64Milli(max(ts))
            FROM events INNER JOIN {latest} AS l ON events.tenant_id = l.t
            WHERE {where} AND ts >= l.latest - INTERVAL 2 HOUR
            GROUP BY tenant_id, minute""",
            params,
        )[2]
        sessions = self.query(
            f"""SELECT tenant_id, toUnixTimestamp(toStartOfMinute(ts)) AS minute, session_id,
                count(), toString(sum(cost_usd))
            FROM events INNER JOIN {latest} AS l ON events.tenant_id = l.t
            WHERE {where} AND event_type = 'llm_call' AND session_id != '' AND ts >= l.latest - INTERVAL 2 HOUR
            GROUP BY tenant_id, minute, session_id""",
            params,
        )[2]
        hours = self.query(
            f"""SELECT tenant_id, toUnixTimestamp(toStartOfHour(ts)) AS hour, sum(score), count()
            FROM events INNER JOIN {latest} AS l ON events.tenant_id = l.t
            WHERE {where} AND event_type = 'feedback' AND ts >= l.latest - INTERVAL 25 HOUR
            GROUP BY tenant_id, hour""",
            params,
        )[2]
        return {"minutes": minutes, "sessions": sessions, "hours": hours}

    def recent_event_ids(
        self, partition: int, window: float, limit: int
    ) -> list[tuple[str, int, int, float]]:
        """(event_id, offset, index, event time) of the newest events stored from a partition,
        oldest first: what rebuilds the resend index after a restart."""
        rows = self.query(
            """SELECT event_id, kafka_offset, kafka_index, toUnixTimestamp64Milli(ts) FROM events
            WHERE kafka_partition = {p:UInt16}
              AND ts >= (SELECT max(ts) FROM events WHERE kafka_partition = {p:UInt16}) - toIntervalMillisecond({w:UInt64})
            ORDER BY kafka_offset DESC, kafka_index DESC LIMIT {n:UInt64}""",
            {"p": partition, "w": int(window * 1000), "n": limit},
        )[2]
        return [(e, int(o), int(i), int(ms) / 1000) for e, o, i, ms in reversed(rows)]

    def sli_rows(
        self,
        partitions: Sequence[int],
        *,
        evaluation_window: float,
        burn_windows: Sequence[int],
        budget_window: float,
        exclude_provider_errors: bool,
        maintenance: Sequence[tuple[Any, Any, Sequence[str] | None]],
    ) -> list[tuple]:
        """Per tenant of ``partitions``, what the SLIs are computed from; every window ends
        at the tenant's newest event. Events inside a maintenance window are left out."""
        params: dict[str, Any] = {"partitions": list(partitions)}
        calls = "event_type = 'llm_call'" + (
            " AND status != 'provider_error'" if exclude_provider_errors else ""
        )
        skip = []
        for i, (start, end, tenants) in enumerate(maintenance):
            params[f"m{i}s"], params[f"m{i}e"] = start, end
            clause = (
                f"(ts >= {{m{i}s:DateTime64(3, 'UTC')}} AND ts < {{m{i}e:DateTime64(3, 'UTC')}}"
            )
            if tenants:
                params[f"m{i}t"] = list(tenants)
                clause += f" AND tenant_id IN {{m{i}t:Array(String)}}"
            skip.append(clause + ")")
        not_skipped = f"NOT ({' OR '.join(skip)})" if skip else "1"

        def within(seconds: float) -> str:
            return f"ts > l.latest - toIntervalMillisecond({int(seconds * 1000)})"

        e = within(evaluation_window)
        burn = ",\n".join(
            f"countIf({calls} AND {within(w)}), countIf({calls} AND {within(w)} AND status != 'ok')"
            for w in burn_windows
        )
        sql = f"""
            SELECT tenant_id, toUnixTimestamp64Milli(any(l.latest)),
                countIf({calls} AND {e}),
                countIf({calls} AND {e} AND status = 'ok'),
                quantileExactIf(0.95)(ifNull(latency_ms, 0), {calls} AND {e} AND latency_ms IS NOT NULL),
                countIf({calls} AND {e} AND latency_ms IS NOT NULL),
                countIf({calls} AND {e} AND json_valid IS NOT NULL),
                countIf({calls} AND {e} AND json_valid = true),
                sumIf(ifNull(score, 0), event_type = 'evaluation' AND eval_name = 'groundedness' AND {e}),
                countIf(event_type = 'evaluation' AND eval_name = 'groundedness' AND {e}),
                countIf({calls} AND {e} AND abstained),
                countIf(event_type = 'tool_call' AND {e}),
                countIf(event_type = 'tool_call' AND {e} AND status = 'ok'),
                quantileExactIf(0.95)(toFloat64(cost_usd), {calls} AND {e}),
                topKIf(1)(model, {calls} AND {e}),
                {burn},
                countIf({calls}),
                countIf({calls} AND status != 'ok')
            FROM events
            INNER JOIN (
                SELECT tenant_id AS t, max(ts) AS latest FROM events
                WHERE kafka_partition IN {{partitions:Array(UInt16)}} GROUP BY tenant_id
            ) AS l ON events.tenant_id = l.t
            WHERE kafka_partition IN {{partitions:Array(UInt16)}}
              AND {within(budget_window)} AND {not_skipped}
            GROUP BY tenant_id"""
        return self.query(sql, params)[2]

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
