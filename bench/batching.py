"""How long records wait for their batch: the worker's consumer alone, on the embedded broker.

``python -m bench.batching [--rate 10000] [--work 0.25] [--grace 0.05]`` produces ``--rate``
records/s (from a second process) for ``--seconds``, consumes them with the worker's ``Ingest``
(``LLMTEL_BATCH_WITHIN`` = ``--within``), and stands in for the processing of each batch by
sleeping ``--work`` seconds. It prints the time from producing a record to its batch being
handed over (p50, p90, p99): the share of alert latency that batching adds, without the
noise of parsing and storing on a loaded machine. ``--grace 0`` measures the consumer as it
was before it waited for the broker's answer to its last fetch (``streams/ingest.py``).
The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

from bench.run import free_port, percentile
from streams import ingest
from streams.broker import start_broker
from streams.kafka import ensure_topics, make_producer

TOPIC = "batching"


def produce(bootstrap: str, rate: int, seconds: float) -> None:
    """Records of about 500 bytes whose value starts with the time they were produced."""
    producer = make_producer(bootstrap, **{"linger.ms": 5})
    start, sent = time.time(), 0
    while time.time() - start < seconds:
        due = int((time.time() - start) * rate) - sent
        for _ in range(due):
            value = b"%.6f " % time.time() + b"x" * 480
            producer.produce(TOPIC, value, b"tenant-%d" % (sent % 1000))
            sent += 1
        producer.poll(0)
        time.sleep(0.005)
    producer.flush(30)


async def consume(args: argparse.Namespace, bootstrap: str) -> tuple[list[float], int]:
    waits: list[float] = []
    batches = 0

    async def process(records: list) -> None:
        nonlocal batches
        now = time.time()
        batches += 1
        waits.extend(now - float(r.value.split(b" ", 1)[0]) for r in records)
        await asyncio.sleep(args.work)

    async def nothing(_: object) -> None:
        return None

    consumer = ingest.Ingest(
        bootstrap=bootstrap,
        topic=TOPIC,
        group="batching",
        process=process,
        on_assigned=nothing,
        on_progress=lambda records: None,
        batch_max=args.batch_max,
        batch_within=args.within,
        batch_max_bytes=8 * 1_048_576,
        session_timeout=6.0,
        client={},
    )
    task = asyncio.create_task(consumer.run())
    while not consumer.assigned:
        await asyncio.sleep(0.1)
    producer = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.batching",
        "--produce",
        bootstrap,
        "--rate",
        str(args.rate),
        "--seconds",
        str(args.seconds),
    )
    await producer.wait()
    await asyncio.sleep(args.within + args.work + 1.0)  # the last batches
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return waits, batches


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m bench.batching", description=__doc__.splitlines()[0]
    )
    p.add_argument("--rate", type=int, default=10_000, help="records/s produced (10,000)")
    p.add_argument("--seconds", type=float, default=15.0, help="duration of the load (15)")
    p.add_argument("--work", type=float, default=0.25, help="seconds each batch takes (0.25)")
    p.add_argument("--within", type=float, default=0.2, help="the batch window, s (0.2)")
    p.add_argument("--batch-max", type=int, default=10_000)
    p.add_argument("--grace", type=float, default=ingest.FETCH_GRACE, help="FETCH_GRACE, s")
    p.add_argument("--produce", metavar="BOOTSTRAP", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.produce:
        produce(args.produce, args.rate, args.seconds)
        return
    ingest.FETCH_GRACE = args.grace
    port = free_port()
    broker = start_broker(port, Path(tempfile.mkdtemp(prefix="llmtel-batching-")) / "broker.log")
    bootstrap = f"127.0.0.1:{port}"
    try:
        ensure_topics(bootstrap, [TOPIC], 8)
        waits, batches = asyncio.run(consume(args, bootstrap))
    finally:
        broker.terminate()
        broker.wait(10)
    n = len(waits)
    if not n:
        raise SystemExit("bench.batching: no record reached a batch")
    figures = {
        q: round((percentile(waits, share) or 0.0) * 1000, 1)
        for q, share in (("p50_ms", 0.5), ("p90_ms", 0.9), ("p99_ms", 0.99))
    }
    print(
        f"{n:,} records in {batches} batches (work {args.work} s, window {args.within} s, "
        f"grace {args.grace} s): from produced to handed over p50 {figures['p50_ms']:,} ms, "
        f"p90 {figures['p90_ms']:,} ms, p99 {figures['p99_ms']:,} ms"
    )
    print(json.dumps({"records": n, "batches": batches, **figures, "grace_s": args.grace}))


if __name__ == "__main__":
    main()
