"""Consuming ``llm.events`` in whole fetches, and the tenant states that go with them.

Faust hands an agent its records one at a time, which costs more than everything llmtel does
with a record (README, Performance). So the worker consumes the events with aiokafka directly:
``getmany`` hands over thousands of records at once, the batch is processed, and its offsets
are committed only after everything it produced is stored. At a rebalance, the batch in flight
finishes and commits before the partitions are given up; records fetched before a rebalance
are dropped and fetched again from the committed offsets by whoever owns them next.

Tenant states (budgets, rule states, degraded modes, the last applied position) live in a
changelog topic co-partitioned with the events: a tenant's state is written to the partition
its events come from, and read back when that partition is assigned.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError

from streams.pipeline import SourceRecord

log = logging.getLogger(__name__)

Partitions = set[int]
FETCH_RECORDS = 1000  # records per getmany: a batch stops near its byte limit
FETCH_GRACE = 0.05  # seconds a batch past its window waits for the broker's answer to a fetch
GC_YOUNGEST = 1_000_000  # a safety net: young collections run between batches
GC_MIDDLE_EVERY = 10  # batches between collections of the middle generation
GC_OLDEST_EVERY = 1000  # and of the oldest (no automatic collection reaches it any more)


def tune_gc() -> None:
    """Collect garbage between batches, not in the middle of one, and never walk what
    start-up built.

    A batch allocates objects by the hundred thousand, almost none of them in reference cycles,
    and drops them when it is done. A collection in the middle of a batch walks every one of
    them; one between batches (``collect_between_batches``) walks only what the batch left
    behind. At Python's default threshold (700) parsing measured 40 us per event, 22 us with
    a young collection every 50,000 allocations; collecting between batches then cut a drain's
    collection time from 0.72 to 0.10 s (README, Performance). Cycles are still collected:
    the middle generation every ``GC_MIDDLE_EVERY`` batches, the oldest every
    ``GC_OLDEST_EVERY``.
    """
    gc.collect()
    gc.freeze()  # modules, schemas, Faust: moved out of every later collection
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNGEST, middle, oldest)


def collect_between_batches(batches: int) -> None:
    """After the ``batches``-th batch: the young generation, and the older ones every
    ``GC_MIDDLE_EVERY`` and ``GC_OLDEST_EVERY`` batches."""
    if batches % GC_OLDEST_EVERY == 0:
        gc.collect(2)
    else:
        gc.collect(1 if batches % GC_MIDDLE_EVERY == 0 else 0)


def state_topic(app_id: str) -> str:
    """The changelog topic of tenant states (the name Faust gave it in earlier versions)."""
    return f"{app_id}-tenant-state-changelog"


async def read_states(
    bootstrap: str, topic: str, partitions: Partitions, client: dict[str, Any]
) -> dict[int, dict[str, Any]]:
    """The last value of each tenant in ``partitions`` of the changelog: {partition: {tenant:
    state}}. Read from the beginning to the end as it is now."""
    found: dict[int, dict[str, Any]] = {p: {} for p in partitions}
    if not partitions:
        return found
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, client_id="llmtel-states", **client
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        pending = {tp for tp in tps if ends[tp] > 0}
        while pending:
            fetched = await consumer.getmany(*pending, timeout_ms=500)
            for tp, messages in fetched.items():
                states = found[tp.partition]
                for m in messages:
                    tenant = m.key.decode()
                    if m.value is None:
                        states.pop(tenant, None)
                    else:
                        states[tenant] = orjson.loads(m.value)
            for tp in list(pending):
                # the fetch's high watermark is exact; the listed end may be short of it
                end = max(ends[tp], consumer.highwater(tp) or 0)
                if await consumer.position(tp) >= end:
                    pending.discard(tp)
    finally:
        await consumer.stop()
    return found


class _Listener(ConsumerRebalanceListener):
    def __init__(self, ingest: Ingest) -> None:
        self.ingest = ingest

    async def on_partitions_revoked(self, revoked: Any) -> None:
        # wait for the batch in flight: it commits before the partitions are handed over
        async with self.ingest.lock:
            self.ingest.generation += 1
            self.ingest.assigned = set()

    async def on_partitions_assigned(self, assigned: Any) -> None:
        async with self.ingest.lock:
            self.ingest.generation += 1
            self.ingest.next_offset.clear()
            partitions = {tp.partition for tp in assigned}
            await self.ingest.on_assigned(partitions)
            self.ingest.assigned = partitions


class Ingest:
    """The consumer of ``llm.events``: batches in, commits after ``process`` returns."""

    def __init__(
        self,
        *,
        bootstrap: str,
        topic: str,
        group: str,
        process: Callable[[list[SourceRecord]], Awaitable[None]],
        on_assigned: Callable[[Partitions], Awaitable[None]],
        on_progress: Callable[[list[SourceRecord]], None],
        batch_max: int,
        batch_within: float,
        batch_max_bytes: int,
        session_timeout: float,
        client: dict[str, Any],
    ) -> None:
        self.topic = topic
        self.process = process
        self.on_assigned = on_assigned
        self.on_progress = on_progress
        self.next_offset: dict[int, int] = {}  # per assigned partition: the next to process
        self.batch_max = batch_max
        self.batch_within = batch_within
        self.batch_max_bytes = batch_max_bytes
        self.lock = asyncio.Lock()  # held by a batch, a rebalance, and the SLA watchdog
        self.generation = 0  # bumped at every rebalance: a batch fetched before is dropped
        self.assigned: Partitions = set()
        self._config = dict(
            bootstrap_servers=bootstrap,
            group_id=group,
            client_id="llmtel-ingest",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=int(session_timeout * 1000),
            heartbeat_interval_ms=int(max(0.5, session_timeout / 5) * 1000),
            max_poll_records=batch_max,
            max_partition_fetch_bytes=4 * 1_048_576,
            **client,
        )
        self.consumer: Any = None  # created in run(): aiokafka wants the running loop
        self._opened = time.monotonic()  # when the current batch began to fill

    def highwater(self, partition: int) -> int | None:
        if self.consumer is None:
            return None
        return self.consumer.highwater(TopicPartition(self.topic, partition))

    def lags(self) -> dict[int, int]:
        """Records not processed yet, per assigned partition (once its position is known)."""
        lags = {}
        for p in self.assigned:
            highwater, done = self.highwater(p), self.next_offset.get(p)
            if highwater is not None and done is not None:
                lags[p] = max(0, highwater - done)
        return lags

    async def run(self) -> None:
        """Consume until cancelled (or until ``process`` raises)."""
        self.consumer = AIOKafkaConsumer(**self._config)
        await self.consumer.start()
        tune_gc()
        batches = 0
        self.consumer.subscribe([self.topic], listener=_Listener(self))
        try:
            while True:
                generation = self.generation
                records = await self._fetch()
                async with self.lock:
                    if records and generation != self.generation:
                        self._refetch(records)
                        continue
                    # between a revocation and the next assignment nothing is ours
                    records = [r for r in records if r.partition in self.assigned]
                    if records:
                        await self.process(records)
                        await self._commit(records)
                # not under the lock: a position may wait for the end of a rebalance
                await self._positions(records)
                self.on_progress(records)
                if records:
                    batches += 1
                    collect_between_batches(batches)
        finally:
            await self.consumer.stop()

    async def _fetch(self) -> list[SourceRecord]:
        """Up to ``batch_max`` records or ``batch_max_bytes`` of values (records carrying
        arrays fill a batch by bytes), or what arrived within ``batch_within``.

        The wait counts from the end of the previous fetch: the time the previous batch took
        to process is part of it, so records that arrived meanwhile are taken at once instead
        of waiting a full ``batch_within`` more. A batch still starts at most once per
        ``batch_within`` unless it fills; an empty fetch opens a new window."""
        records: list[SourceRecord] = []
        size = 0
        deadline = self._opened + self.batch_within
        fetched: Any = None  # what the last getmany returned (None: no getmany yet)
        grace = FETCH_GRACE
        while len(records) < self.batch_max and size < self.batch_max_bytes:
            left = deadline - time.monotonic()
            if left <= 0 and fetched == {}:
                # What was buffered is taken. aiokafka fetches a partition again only once
                # its buffered records are taken: wait once for that fetch, or what arrived
                # during the last batch would wait for the next one.
                if not grace:
                    break
                left, grace = grace, 0.0
            fetched = await self.consumer.getmany(
                timeout_ms=max(0, int(left * 1000) + 1),
                max_records=min(FETCH_RECORDS, self.batch_max - len(records)),
            )
            for tp, messages in fetched.items():
                p = tp.partition
                for m in messages:
                    records.append(SourceRecord(p, m.offset, m.key, m.value))
                    size += len(m.value or b"")
        self._opened = time.monotonic()
        return records

    def _refetch(self, records: list[SourceRecord]) -> None:
        """Drop a batch fetched across a rebalance; what is still ours is fetched again."""
        first: dict[int, int] = {}
        for r in records:
            if r.offset < first.get(r.partition, r.offset + 1):
                first[r.partition] = r.offset
        for p, offset in first.items():
            if p in self.assigned:
                self.consumer.seek(TopicPartition(self.topic, p), offset)

    async def _positions(self, records: list[SourceRecord]) -> None:
        """Where partitions without records in this batch stand (fetched is processed)."""
        in_batch = {r.partition for r in records}
        for p in self.assigned - in_batch - set(self.next_offset):
            try:
                position = await asyncio.wait_for(
                    self.consumer.position(TopicPartition(self.topic, p)), 1.0
                )
            except (TimeoutError, IllegalStateError):
                continue  # a rebalance is under way: next time
            if p in self.assigned:
                self.next_offset.setdefault(p, position)

    async def _commit(self, records: list[SourceRecord]) -> None:
        last: dict[int, int] = {}
        for r in records:
            if r.offset > last.get(r.partition, -1):
                last[r.partition] = r.offset
        for p, offset in last.items():
            self.next_offset[p] = offset + 1
        offsets = {TopicPartition(self.topic, p): o + 1 for p, o in last.items()}
        try:
            await self.consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            # Stored all the same: whoever owns the partitions now skips what is stored.
            log.warning("offsets not committed (the group rebalanced): %s", exc)


class Outbox:
    """The worker's producer (DLQ records, alerts, degrade commands, tenant states, spend for
    the global rules), started with the ingest loop. ``flush`` returns once every record
    sent since the last flush is acknowledged by the broker, and raises if one was not."""

    def __init__(self, bootstrap: str, max_request_size: int, client: dict[str, Any]) -> None:
        self._config = dict(
            bootstrap_servers=bootstrap,
            client_id="llmtel-worker",
            acks="all",
            linger_ms=5,
            max_request_size=max_request_size,
            **client,
        )
        self._producer: Any = None  # created in start(): aiokafka wants the running loop
        self._pending: list[asyncio.Future] = []

    async def start(self) -> None:
        self._producer = AIOKafkaProducer(**self._config)
        await self._producer.start()

    async def send(
        self,
        topic: str,
        value: bytes,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
        partition: int | None = None,
    ) -> None:
        future = await self._producer.send(
            topic, value=value, key=key, headers=headers, partition=partition
        )
        self._pending.append(future)

    async def flush(self) -> None:
        pending, self._pending = self._pending, []
        if pending:
            await asyncio.gather(*pending)

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
