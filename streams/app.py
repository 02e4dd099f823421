"""The Faust app: topics, the ingest agent, web views. Thin wiring around pure modules."""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import faust
from prometheus_client import CollectorRegistry

from sinks.clickhouse import ClickHouseSink
from sinks.errors import StoreBusy
from streams.metrics import Metrics
from streams.parse import ParseLimits
from streams.pipeline import BatchProcessor, SourceRecord
from streams.policy import Policy
from streams.pricing import PriceTable
from streams.settings import Settings
from streams.web import add_metrics_view, add_query_view

log = logging.getLogger(__name__)


class Runtime:
    """What the agents share: the sink and the one thread that talks to it."""

    def __init__(self, settings: Settings, policy: Policy, source: str) -> None:
        self.settings = settings
        self.policy = policy
        self.source = source
        self.prices = PriceTable.shipped({k: v.as_fields() for k, v in policy.prices.items()})
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clickhouse")
        self.sink = ClickHouseSink(
            settings.dsn,
            events_ttl_days=settings.events_ttl_days,
            rollups_ttl_days=settings.rollups_ttl_days,
        )
        self.registry = CollectorRegistry()
        self.metrics = Metrics(self.registry)
        self.limits = ParseLimits(
            max_record_bytes=settings.max_record_bytes,
            max_event_age=timedelta(days=settings.max_event_age_days),
            max_future=timedelta(seconds=settings.max_future_seconds),
            allowed_tenants=policy.allowed_tenants(),
        )

    def prepare(self, wait: float = 60.0) -> None:
        """Create the tables, on the sink thread (chDB's client then lives there).

        An embedded store held by another process (a `llmtel query` that opened it while no
        worker answered) is waited for, up to ``wait`` seconds.
        """
        deadline = time.monotonic() + wait
        while True:
            try:
                return self.executor.submit(self.sink.ensure_tables).result()
            except StoreBusy:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    async def sink_call(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    def close(self) -> None:
        self.executor.submit(self.sink.close).result()
        self.executor.shutdown()


def create_app(runtime: Runtime) -> faust.App:
    """Build the Faust app for one worker process."""
    s = runtime.settings
    app = faust.App(
        s.app_id,
        broker=[f"kafka://{host}" for host in s.bootstrap.split(",")],
        store="memory://",
        datadir=str(s.data_dir / "faust"),
        autodiscover=False,
        web_enabled=True,
        web_host=s.web_host,
        web_bind=s.web_host,
        web_port=s.web_port,
        broker_session_timeout=s.session_timeout,
        broker_heartbeat_interval=max(0.5, s.session_timeout / 5),
        broker_request_timeout=max(30.0, s.session_timeout * 3),
        consumer_auto_offset_reset="earliest",
        topic_partitions=s.partitions,
        topic_allow_declare=False,
    )
    events_topic = app.topic(
        s.events_topic, key_serializer="raw", value_serializer="raw", partitions=s.partitions
    )
    dlq_topic = app.topic(s.dlq_topic, key_serializer="raw", value_serializer="raw")

    async def publish_dlq(
        key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]
    ) -> None:
        await dlq_topic.send(key=key, value=value, headers=headers)

    processor = BatchProcessor(
        source=runtime.source,
        topic=s.events_topic,
        prices=runtime.prices,
        limits=runtime.limits,
        sink_call=runtime.sink_call,
        dlq_publish=publish_dlq,
    )
    app.llmtel_processor = processor  # type: ignore[attr-defined]

    @app.on_partitions_assigned.connect
    async def _reload_applied(app: faust.App, assigned: Any, **kwargs: Any) -> None:
        processor.forget_applied()

    @app.agent(events_topic, name="ingest")
    async def ingest(stream: faust.StreamT) -> None:
        async for batch in stream.noack_take(s.batch_max, within=s.batch_within):
            records = [
                SourceRecord(e.message.partition, e.message.offset, e.message.key, e.message.value)
                for e in batch
            ]
            started = time.perf_counter()
            result = await processor.process(runtime.sink, records)
            runtime.metrics.observe_batch(result, time.perf_counter() - started)
            # Ack only now: every row and DLQ record of the batch is stored or queued for the
            # flush Faust does before it commits.
            for event in batch:
                await stream.ack(event)

    async def run_query(sql: str) -> tuple[list[str], list[str], list[tuple]]:
        return await runtime.sink_call(runtime.sink.query, sql)

    add_metrics_view(app, runtime.registry)
    if runtime.sink.embedded:
        # chDB admits one process: `llmtel query` elsewhere reaches the store through here.
        # A ClickHouse server is queried directly, so its workers expose no SQL endpoint.
        add_query_view(app, run_query)
    return app
