"""One batch of records from ``llm.events``, from raw bytes to stored rows.

Faust-free: the worker hands it records and two async callables (one that runs blocking sink
calls on the sink thread, one that publishes to the DLQ), and acks the batch only after
``process`` returns, i.e. after everything the batch produced is stored.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

from sinks.errors import SinkError
from streams.dedup import RecentIds
from streams.fold import (
    EVENTS_COLUMN_NAMES,
    ROLLUP_COLUMN_NAMES,
    RollupKey,
    RollupTotals,
    event_row,
    fold_llm_call,
    rollup_rows,
)
from streams.parse import Accepted, ParseLimits, Parser, Rejection
from streams.pricing import PriceTable

log = logging.getLogger(__name__)

SinkCall = Callable[..., Awaitable[Any]]
DlqPublish = Callable[[bytes | None, bytes, list[tuple[str, bytes]]], Awaitable[None]]


class SourceRecord(NamedTuple):
    """A record as consumed: where it came from and its raw bytes."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


class FreshEvent(NamedTuple):
    """An accepted event with its position in the topic (state consumers skip by offset)."""

    partition: int
    offset: int
    item: Accepted


class BatchResult(NamedTuple):
    """What a batch did (also what metrics count)."""

    consumed: int
    accepted: list[FreshEvent]
    rejected: list[tuple[SourceRecord, Rejection]]
    skipped: int  # records stored before a restart, not stored again
    token: str  # identifies the batch's offsets: the dedup token of what it inserts
    duplicates: int = 0  # events whose event_id was already accepted (producer resends)


class Prepared(NamedTuple):
    """A batch parsed and folded into rows, nothing of it stored yet."""

    result: BatchResult  # what the batch does, once stored
    event_rows: list[tuple[Any, ...]]
    rollups: dict[RollupKey, RollupTotals]
    last_offsets: dict[int, int]  # partition -> the batch's last offset of it


def dlq_headers(record: SourceRecord, rejection: Rejection, topic: str) -> list[tuple[str, bytes]]:
    """Headers of a DLQ record: why it was refused and where it came from."""
    headers = [
        ("llmtel.reason", rejection.reason.encode()),
        ("llmtel.error", rejection.detail.encode("utf-8", "replace")),
        ("llmtel.source", f"{topic}/{record.partition}/{record.offset}".encode()),
    ]
    if rejection.index is not None:
        headers.append(("llmtel.element_index", str(rejection.index).encode()))
    return headers


class BatchProcessor:
    """Parses, prices, stores and folds batches; skips what a previous run already stored."""

    def __init__(
        self,
        *,
        source: str,
        topic: str,
        prices: PriceTable,
        limits: ParseLimits,
        sink_call: SinkCall,
        dlq_publish: DlqPublish,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        retry_delay: float = 0.5,
        recent_ids: RecentIds | None = None,
        store_content: bool = False,
    ) -> None:
        self.source = source
        self.topic = topic
        self.prices = prices
        self.limits = limits
        self._sink_call = sink_call
        self._dlq = dlq_publish
        self._clock = clock
        self._retry_delay = retry_delay
        self._applied: dict[str, dict[int, int]] | None = None
        self.store_content = store_content
        self.recent_ids = recent_ids if recent_ids is not None else RecentIds(3600.0, 200_000)

    def forget_applied(self) -> None:
        """Re-read what is stored before the next batch (after a rebalance)."""
        self._applied = None
        self.recent_ids.forget()

    async def _load_recent_ids(self, sink: Any, partitions: set[int]) -> None:
        for p in partitions:
            if not self.recent_ids.loaded(p):
                rows = await self._store(
                    sink.recent_event_ids, p, self.recent_ids.window, self.recent_ids.max_ids
                )
                self.recent_ids.load(p, rows)

    async def ensure_applied(self, sink: Any) -> dict[str, dict[int, int]]:
        """What ClickHouse holds from this source, per table and partition (read once)."""
        if self._applied is None:
            self._applied = await self._store(sink.applied_offsets, self.source)
        return self._applied

    async def store(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a sink call on the sink thread, retrying retriable failures."""
        return await self._store(fn, *args)

    async def _store(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a sink call, retrying retriable failures until it succeeds."""
        delay = self._retry_delay
        while True:
            try:
                return await self._sink_call(fn, *args)
            except SinkError as exc:
                if not exc.retriable:
                    raise
                log.warning("ClickHouse call failed, retrying in %.1fs: %s", delay, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def process(self, sink: Any, records: Sequence[SourceRecord]) -> BatchResult:
        """Handle one batch; returns once every row it produced is stored."""
        return await self.store_batch(sink, await self.prepare(sink, records))

    async def prepare(self, sink: Any, records: Sequence[SourceRecord]) -> Prepared:
        """Parse, price and fold a batch into rows, skipping what is stored already."""
        applied = await self.ensure_applied(sink)
        await self._load_recent_ids(sink, {r.partition for r in records})
        applied_events = applied["events"]
        applied_rollups = applied["rollups_1m"]
        parser = Parser(self.prices, self.limits, self._clock())
        event_rows: list[tuple[Any, ...]] = []
        rollups: dict[RollupKey, RollupTotals] = {}
        fresh: list[FreshEvent] = []
        rejected: list[tuple[SourceRecord, Rejection]] = []
        skipped = duplicates = 0
        ranges: dict[int, list[int]] = {}
        seen: set[tuple[int, int]] = set()
        for record in records:
            p, offset = record.partition, record.offset
            if (p, offset) in seen:
                continue  # delivered twice in one batch (a seek after table recovery)
            seen.add((p, offset))
            events_done = offset <= applied_events.get(p, -1)
            rollups_done = offset <= applied_rollups.get(p, -1)
            if events_done and rollups_done:
                skipped += 1
            span = ranges.setdefault(p, [offset, offset])
            span[1] = offset
            accepted, refused = parser.record(record.key, record.value)
            if refused and not events_done:
                rejected.extend((record, r) for r in refused)
            for item in accepted:
                e = item.event
                if not self.recent_ids.first_copy(p, e.event_id, offset, item.index, item.ts):
                    duplicates += 1
                    continue
                fresh.append(FreshEvent(p, offset, item))
                if not events_done:
                    event_rows.append(event_row(self.source, p, offset, item, self.store_content))
                if not rollups_done and item.event.event_type == "llm_call":
                    fold_llm_call(rollups, p, offset, item)

        token = self.source + "|" + ",".join(f"{p}:{a}-{b}" for p, (a, b) in sorted(ranges.items()))
        last_offsets = {p: last for p, (_, last) in ranges.items()}
        result = BatchResult(len(records), fresh, rejected, skipped, token, duplicates)
        return Prepared(result, event_rows, rollups, last_offsets)

    async def store_batch(self, sink: Any, batch: Prepared) -> BatchResult:
        """Store a prepared batch's rows, then send its rejections to the DLQ.

        The first insert is handed to the sink thread before this coroutine first waits, and
        ClickHouse releases the GIL while it inserts: a caller that starts it as a task
        can fold the batch into tenant states meanwhile.
        """
        token = batch.result.token
        if batch.event_rows:
            await self._store(
                sink.insert, "events", EVENTS_COLUMN_NAMES, batch.event_rows, "events|" + token
            )
        if batch.rollups:
            rows = rollup_rows(self.source, batch.rollups)
            await self._store(
                sink.insert, "rollups_1m", ROLLUP_COLUMN_NAMES, rows, "rollups|" + token
            )
        for record, rejection in batch.result.rejected:
            await self._dlq(
                record.key, rejection.payload, dlq_headers(record, rejection, self.topic)
            )
        applied = await self.ensure_applied(sink)
        for name in ("events", "rollups_1m"):
            done = applied[name]
            for p, last in batch.last_offsets.items():
                done[p] = max(done.get(p, -1), last)
        return batch.result
