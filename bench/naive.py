"""The naive reference: a Faust agent written the way Faust's tutorials suggest.

One ``async for`` iteration per event; each record parsed with orjson and validated with the
same pydantic models llmtel uses (``schemas.EVENT_ADAPTER``), priced with the same table, and
applied to a Faust table with ``spend[tenant] += cost`` (one changelog message per event; a
non-call event adds 0). Same broker settings as llmtel's worker. No ClickHouse, no rules:
everything it does is a subset of what llmtel does per event.

Run as ``python -m bench.naive`` with ``BENCH_NAIVE_*`` variables (set by ``bench.run``):
``BOOTSTRAP``, ``TOPIC``, ``APP_ID``, ``PARTITIONS``, ``WEB_PORT``, ``DATA_DIR``,
``SESSION_TIMEOUT``. ``GET /progress`` answers ``{"processed", "first_at", "last_at",
"cost_pico"}`` (wall-clock times of the first and latest event processed).
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import faust
import orjson
from faust.web import Request, Response, View

from schemas.events import EVENT_ADAPTER, LlmCall
from streams.pricing import PriceTable, usd_to_pico


def create_app(env: dict[str, str]) -> faust.App:
    session_timeout = float(env.get("BENCH_NAIVE_SESSION_TIMEOUT", "6"))
    partitions = int(env.get("BENCH_NAIVE_PARTITIONS", "8"))
    port = int(env["BENCH_NAIVE_WEB_PORT"])
    app = faust.App(
        env["BENCH_NAIVE_APP_ID"],
        broker=f"kafka://{env['BENCH_NAIVE_BOOTSTRAP']}",
        store="memory://",
        datadir=env["BENCH_NAIVE_DATA_DIR"],
        autodiscover=False,
        web_enabled=True,
        web_host="127.0.0.1",
        web_bind="127.0.0.1",
        web_port=port,
        broker_session_timeout=session_timeout,
        broker_heartbeat_interval=max(0.5, session_timeout / 5),
        broker_request_timeout=max(30.0, session_timeout * 3),
        consumer_auto_offset_reset="earliest",
        topic_partitions=partitions,
    )
    topic = app.topic(
        env["BENCH_NAIVE_TOPIC"],
        key_serializer="raw",
        value_serializer="raw",
        partitions=partitions,
    )
    spend = app.Table("spend", default=int, partitions=partitions)
    prices = PriceTable.shipped()
    progress: dict[str, Any] = {"processed": 0, "first_at": None, "last_at": None, "cost_pico": 0}

    @app.agent(topic, name="naive-spend")
    async def count_spend(stream: faust.StreamT) -> None:
        async for value in stream:
            event = EVENT_ADAPTER.validate_python(orjson.loads(value))
            cost = 0
            if isinstance(event, LlmCall):
                if event.cost_usd is not None:
                    cost = usd_to_pico(event.cost_usd)
                else:
                    cost, _ = prices.cost(
                        event.model,
                        event.input_tokens,
                        event.cached_input_tokens,
                        event.output_tokens,
                    )
            spend[event.tenant_id] += cost
            now = time.time()
            if progress["first_at"] is None:
                progress["first_at"] = now
            progress["last_at"] = now
            progress["processed"] += 1
            progress["cost_pico"] += cost

    @app.page("/progress")
    class Progress(View):
        async def get(self, request: Request) -> Response:
            return self.bytes(orjson.dumps(progress), content_type="application/json")

    return app


def main() -> int:
    from faust.worker import Worker

    app = create_app(dict(os.environ))
    worker = Worker(app, loglevel="warning", quiet=True)
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
