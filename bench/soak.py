"""Soak: a steady load for a while; does consumer lag or the worker's memory grow?

``python -m bench.soak [--minutes 10] [--rate 1000]`` starts the embedded broker and one
worker, produces ``--rate`` events/s of the benchmark's realistic mix (event times = now) for
``--minutes``, and every ``--every`` seconds prints the worker's RSS (with its anonymous part
and what chDB's own memory tracker counts) and its consumer lag
(records produced minus records stored), with the worker's and the embedded broker's share of a
core since the last sample and the broker's RSS (it keeps every record in memory). At the end
it says whether each levelled off: lag when the last third's mean stays within twice the first
third's (or two seconds of traffic), RSS when it rose by less than 5 % over the last quarter of
the run. The last line is one JSON object.

The worker's memory fills for about an hour of event time before it levels off: rule windows
keep the longest minute window (1 h by default) plus the allowed lateness, the resend index
1 h or 200,000 ids per partition. A run shorter than that shows the filling; ``--minutes 80``
shows the plateau (README, Soak).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from bench.gen import Mix, Records, zipf_weights
from bench.run import (
    Bench,
    BenchError,
    Sender,
    bulk_producer,
    cpu_seconds,
    peak_rss_mb,
    say,
    start_worker,
    status_mb,
    tenant_names,
    worker_env,
    write_policy,
)
from streams.pricing import PriceTable

SAMPLE_QUERY = (
    "SELECT (SELECT count() FROM events),"
    " (SELECT value FROM system.metrics WHERE metric = 'MemoryTracking')"
)
"""The events stored, and the bytes chDB's memory tracker counts (its allocations: parts,
merges, caches): what the embedded store holds of the worker's memory, by its own account."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=10.0, help="duration of the load (10)")
    p.add_argument("--rate", type=int, default=1000, help="events/s produced (1000)")
    p.add_argument("--every", type=float, default=15.0, help="seconds between samples (15)")
    p.add_argument("--tenants", type=int, default=1000)
    p.add_argument("--partitions", type=int, default=8)
    p.add_argument("--batch-max", type=int, default=10_000)
    p.add_argument("--batch-within", type=float, default=0.5)
    return p.parse_args(argv)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def verdict(samples: list[dict[str, float]], rate: float) -> dict[str, Any]:
    """Lag and RSS by thirds of the run, RSS at the start and end of its last quarter, and
    whether each levelled off: lag when the last third's mean is within twice the first
    third's (or two seconds of traffic), RSS when the last quarter rose less than 5 %."""
    third = max(1, len(samples) // 3)
    first, last = samples[:third], samples[-third:]
    quarter = samples[-max(2, len(samples) // 4) :]
    head, tail = quarter[: max(1, len(quarter) // 3)], quarter[-max(1, len(quarter) // 3) :]
    result: dict[str, Any] = {
        "samples": len(samples),
        "lag_first_third": round(_mean([s["lag"] for s in first])),
        "lag_last_third": round(_mean([s["lag"] for s in last])),
        "rss_mb_first_third": round(_mean([s["rss_mb"] for s in first])),
        "rss_mb_last_third": round(_mean([s["rss_mb"] for s in last])),
        "rss_mb_last_quarter": [
            round(_mean([s["rss_mb"] for s in head])),
            round(_mean([s["rss_mb"] for s in tail])),
        ],
    }
    start_mb, end_mb = result["rss_mb_last_quarter"]
    result["lag_bounded"] = result["lag_last_third"] <= max(2 * rate, 2 * result["lag_first_third"])
    result["rss_bounded"] = end_mb <= 1.05 * max(1, start_mb)
    return result


def soak(args: argparse.Namespace, bench: Bench) -> dict[str, Any]:
    prices = PriceTable.shipped()
    tenants = tenant_names(args.tenants)
    mix = Mix(
        tenants,
        zipf_weights(len(tenants), 1.1),
        prices=prices,
        expected_events=int(args.rate * args.minutes * 60),
        seed=11,
    )
    bench.start_broker()
    prefix = bench.prefix("soak")
    policy = write_policy(bench.root / "policy.yaml", tenants)
    env = worker_env(bench, prefix, args, policy)
    worker = start_worker(bench, "soak-worker", env)
    sender = Sender(bulk_producer(bench.bootstrap))
    topic = env["LLMTEL_EVENTS_TOPIC"]
    samples: list[dict[str, float]] = []
    broker_pid = bench.broker.pid if bench.broker is not None else 0
    used = (cpu_seconds(worker.popen.pid), cpu_seconds(broker_pid), time.monotonic())
    start = time.monotonic()
    end = start + args.minutes * 60
    next_sample = start + args.every
    tick = 0.1
    say(f"soak: {args.rate} events/s for {args.minutes:g} min, sample every {args.every:g} s")
    while time.monotonic() < end:
        t0 = time.monotonic()
        now = time.time()
        chunk: Records = mix.generate(max(1, int(args.rate * tick)), now - tick, now)
        for key, value in zip(chunk.keys, chunk.values, strict=True):
            sender.send(topic, key, value)
        sender.producer.poll(0)
        if time.monotonic() >= next_sample:
            sender.producer.flush(10)
            stored_rows, tracked = worker.query(SAMPLE_QUERY)[0]
            stored = int(stored_rows)
            # the embedded broker keeps every record in memory (no retention): its share of
            # the cores is printed beside the worker's, since both shape the lag
            now_used = (cpu_seconds(worker.popen.pid), cpu_seconds(broker_pid), time.monotonic())
            elapsed = max(1e-9, now_used[2] - used[2])
            memory = status_mb(worker.popen.pid, "VmRSS", "RssAnon")
            sample = {
                "t_s": round(time.monotonic() - start, 1),
                "produced": sender.sent,
                "lag": sender.sent - stored,
                "rss_mb": memory.get("VmRSS", 0.0),
                "anon_mb": memory.get("RssAnon", 0.0),
                "chdb_mb": round(int(tracked or 0) / 2**20, 1),
                "worker_cpu": round(100 * (now_used[0] - used[0]) / elapsed),
                "broker_cpu": round(100 * (now_used[1] - used[1]) / elapsed),
                "broker_rss_mb": peak_rss_mb(broker_pid, "VmRSS") or 0.0,
            }
            used = now_used
            samples.append(sample)
            say(
                f"  t={sample['t_s']:>6.0f}s  produced={sample['produced']:>9}  lag={sample['lag']:>7}  rss={sample['rss_mb']:.0f} MB"
                f" (anonymous {sample['anon_mb']:.0f}, chDB {sample['chdb_mb']:.0f})"
                f"  cpu worker={sample['worker_cpu']}% broker={sample['broker_cpu']}%"
                f"  broker rss={sample['broker_rss_mb']:.0f} MB"
            )
            next_sample += args.every
        time.sleep(max(0.0, tick - (time.monotonic() - t0)))
    sender.flush()
    result = {"minutes": args.minutes, "rate": args.rate, **verdict(samples, args.rate)}
    result["peak_rss_mb"] = peak_rss_mb(worker.popen.pid, "VmHWM")
    start_mb, end_mb = result["rss_mb_last_quarter"]
    bounded_lag, bounded_rss = result["lag_bounded"], result["rss_bounded"]
    say(
        f"lag: {result['lag_first_third']} → {result['lag_last_third']} records ({'bounded' if bounded_lag else 'GROWING'})"
    )
    say(
        f"rss: {result['rss_mb_first_third']} → {result['rss_mb_last_third']} MB by thirds; "
        f"{start_mb} → {end_mb} MB over the last quarter ({'level' if bounded_rss else 'GROWING'})"
    )
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    bench = Bench()
    result: dict[str, Any] = {}
    try:
        result = soak(args, bench)
    except (BenchError, KeyboardInterrupt) as exc:
        result = {"error": str(exc) or type(exc).__name__}
    finally:
        bench.close()
    print(json.dumps(result), flush=True)
    return 0 if result.get("lag_bounded") and result.get("rss_bounded") else 1


if __name__ == "__main__":
    sys.exit(main())
