"""HTTP endpoints of the worker (on ``LLMTEL_WEB_PORT``).

``POST /query`` runs SQL on the worker's ClickHouse: with the embedded store, chDB can be
opened by one process only, so ``llmtel query`` in a second terminal goes through here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import faust
import orjson
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from sinks.errors import SinkError

QueryRunner = Callable[[str], Awaitable[tuple[list[str], list[str], list[tuple]]]]


def encode_result(columns: list[str], types: list[str], rows: list[tuple]) -> bytes:
    """A query result as JSON; decimals as strings so money keeps every digit."""
    return orjson.dumps(
        {"columns": columns, "types": types, "rows": rows},
        default=str,
        option=orjson.OPT_NON_STR_KEYS,
    )


def add_query_view(app: faust.App, run_query: QueryRunner) -> None:
    """Serve ``POST /query`` with body ``{"sql": "..."}``."""

    @app.page("/query")
    class QueryView(View):
        async def post(self, request: Request) -> Response:
            try:
                body: Any = orjson.loads(await request.read())
                sql = body["sql"]
                if not isinstance(sql, str):
                    raise TypeError
            except (orjson.JSONDecodeError, KeyError, TypeError):
                return self.json({"error": 'expected a JSON body {"sql": "..."}'}, status=400)
            try:
                columns, types, rows = await run_query(sql)
            except SinkError as exc:
                return self.json({"error": str(exc)}, status=400)
            return self.bytes(encode_result(columns, types, rows), content_type="application/json")


def add_metrics_view(app: faust.App, registry: CollectorRegistry) -> None:
    """Serve ``GET /metrics`` in the Prometheus text format."""

    @app.page("/metrics")
    class MetricsView(View):
        async def get(self, request: Request) -> Response:
            return self.bytes(
                generate_latest(registry), content_type=CONTENT_TYPE_LATEST.split(";")[0]
            )


StatusSource = Callable[[], Awaitable[dict[str, Any]]]


def add_status_view(app: faust.App, status: StatusSource) -> None:
    """Serve ``GET /api/status``: what the live dashboard shows, as JSON."""

    @app.page("/api/status")
    class StatusView(View):
        async def get(self, request: Request) -> Response:
            body = orjson.dumps(await status(), default=str, option=orjson.OPT_NON_STR_KEYS)
            return self.bytes(body, content_type="application/json")
