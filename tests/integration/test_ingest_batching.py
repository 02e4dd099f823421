"""How the worker's consumer cuts the events topic into batches, on the real broker."""

import asyncio
import threading
import time

from streams import ingest
from streams.ingest import Ingest
from streams.kafka import ensure_topics
from tests.integration.harness import produce, unique_prefix

WITHIN = 3.0  # LLMTEL_BATCH_WITHIN of these tests: long, so the waits stand out


def run_ingest(bootstrap, topic, process, until):
    async def main():
        async def nothing(_):
            return None

        ingest = Ingest(
            bootstrap=bootstrap,
            topic=topic,
            group=f"{topic}-group",
            process=process,
            on_assigned=nothing,
            on_progress=lambda records: None,
            batch_max=10_000,
            batch_within=WITHIN,
            batch_max_bytes=16 * 1_048_576,
            session_timeout=6.0,
            client={},
        )
        task = asyncio.create_task(ingest.run())
        try:
            await asyncio.wait_for(until.wait(), 60)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())


def test_records_that_arrive_while_a_batch_is_processed_are_taken_at_once(bootstrap):
    topic = f"{unique_prefix('batching')}.events"
    ensure_topics(bootstrap, [topic], 1)
    produce(bootstrap, topic, [(b"t", b"%d" % i) for i in range(5)])
    batches: list[tuple[float, list[int]]] = []  # (handed over at, offsets)
    finished: list[float] = []
    done = asyncio.Event()

    async def process(records):
        batches.append((time.monotonic(), [r.offset for r in records]))
        if len(batches) == 1:
            # five more arrive while this batch takes longer than the batch window
            await asyncio.to_thread(produce, bootstrap, topic, [(b"t", b"x")] * 5)
            await asyncio.sleep(WITHIN + 0.5)
            finished.append(time.monotonic())
        else:
            done.set()

    run_ingest(bootstrap, topic, process, done)

    assert [offsets for _, offsets in batches] == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
    # not a fresh window of WITHIN seconds after the first batch: its processing was the wait
    assert batches[1][0] - finished[0] < WITHIN / 2


def test_records_that_trickle_in_make_one_batch_per_window(bootstrap):
    topic = f"{unique_prefix('batching')}.events"
    ensure_topics(bootstrap, [topic], 1)
    batches: list[list[int]] = []
    done = asyncio.Event()

    def trickle():
        for i in range(4):
            time.sleep(WITHIN / 10)
            produce(bootstrap, topic, [(b"t", b"%d" % i)])

    async def process(records):
        batches.append([r.offset for r in records])
        if len(batches) == 1:
            # the next records come one by one after this batch, within one window
            threading.Thread(target=trickle, daemon=True).start()
        elif sum(map(len, batches)) >= 5:
            done.set()

    produce(bootstrap, topic, [(b"t", b"first")])
    run_ingest(bootstrap, topic, process, done)

    assert batches == [[0], [1, 2, 3, 4]]


def test_a_batch_past_its_window_also_takes_what_the_broker_got_since_the_last_fetch(
    bootstrap, monkeypatch
):
    """aiokafka fetches a partition again only once its buffered records are taken: records
    that reached the broker after that fetch would wait for the batch after next."""
    monkeypatch.setattr(ingest, "FETCH_GRACE", 1.0)  # roomy on a loaded machine
    topic = f"{unique_prefix('batching')}.events"
    ensure_topics(bootstrap, [topic], 1)
    batches: list[list[int]] = []
    done = asyncio.Event()

    async def process(records):
        batches.append([r.offset for r in records])
        if len(batches) == 1:
            # early ones are fetched into aiokafka's buffer, late ones stay on the broker
            await asyncio.to_thread(produce, bootstrap, topic, [(b"t", b"early")] * 3)
            await asyncio.sleep(1.0)
            await asyncio.to_thread(produce, bootstrap, topic, [(b"t", b"late")] * 3)
            await asyncio.sleep(WITHIN)
        elif sum(map(len, batches)) >= 7:
            done.set()

    produce(bootstrap, topic, [(b"t", b"first")])
    run_ingest(bootstrap, topic, process, done)

    assert batches == [[0], [1, 2, 3, 4, 5, 6]]
