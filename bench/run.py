"""Benchmark "Throughput and alert latency": ``python -m bench.run [options]`` from the repo root.

Starts its own embedded broker (Tansu, on a free port) and, per phase, fresh topics, a fresh
worker process with its own temp data dir (chDB) and web port; stops every process and removes
every temp dir at the end, on Ctrl-C and on failure too.

Phases (each can be skipped):

1. input: the realistic mix of ``bench.gen`` (1,000 tenants, Zipf s=1.1; 20 models; six event
   types), generated once and produced once with confluent-kafka (murmur2_random, lz4, large
   batches) to a fresh topic, one event per record; with ``--batched`` also to a second topic
   as JSON arrays of up to 100 events of one tenant.
2. throughput: one ``llmtel worker`` (LLMTEL_BATCH_MAX=10000, LLMTEL_LOG_LEVEL=warning) drains
   the topic. Measured from the first stored batch (``min(ingested_at)`` of ``events``; that
   batch's rows are not counted) until every event is in ClickHouse: ``count()`` of ``events``
   is N and ``sum(requests)`` of ``rollups_1m`` is the number of llm_calls. Worker start-up
   (process start to first stored batch: imports, group join, the first batch) is reported
   apart. Exactness: ``sum(cost_usd)`` of ``rollups_1m`` against the generator's own sum.
3. baseline: ``bench.naive`` (per-event Faust agent, pydantic, ``table[tenant] += cost``) on the
   same topic with its own consumer group; measured from its first to its last event.
4. alert latency: a steady load (``--rate``) of normal traffic, generated before its clock
   starts (the generator shares the cores with the worker) and stamped within the second it
   is sent in; meanwhile fresh starter-plan tenants spend just under their daily budget, then
   one call crosses it. Latency: from the wall-clock time that call was handed to the
   producer to the time its ``budget_exceeded`` alert is consumed from the alerts topic.
5. memory: a worker drains traffic of 10,000 tenants; its peak RSS (VmHWM) includes chDB,
   which runs inside the worker process.

The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Consumer

from bench.gen import Mix, Records, batched, zipf_weights
from streams.broker import start_broker
from streams.kafka import ensure_topics, make_producer
from streams.policy import load_policy
from streams.pricing import PriceTable

ROOT = Path(__file__).resolve().parents[1]
HOUR = 3600.0


class BenchError(Exception):
    """A phase could not complete; the message says why (and where the logs are)."""


def say(*lines: str) -> None:
    for line in lines:
        print(line, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (with 20 samples, p99 is the largest)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu": cpu, "loadavg_start": list(os.getloadavg())}


def status_mb(pid: int, *names: str) -> dict[str, float]:
    """Memory figures (VmHWM, VmRSS, RssAnon, ...) of /proc/PID/status, in MiB; {} once the
    process is gone."""
    found: dict[str, float] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in names:
                found[name] = int(value.split()[0]) / 1024
    except OSError:
        return {}
    return found


def peak_rss_mb(pid: int, what: str = "VmHWM") -> float | None:
    """VmHWM (peak resident set; or another ``what`` of /proc/PID/status) of a process, in MiB."""
    return status_mb(pid, what).get(what)


class RssSampler:
    """Samples a process's resident set every ``every`` seconds in a thread and keeps the
    largest sample, split into anonymous memory (heaps: Python's, chDB's) and file-backed
    pages (mapped code and data of the libraries, chDB's 555 MB one above all: clean pages
    the kernel can drop and read again)."""

    def __init__(self, pid: int, every: float = 0.1) -> None:
        self.pid, self.every = pid, every
        self.peak: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            sample = status_mb(self.pid, "VmRSS", "RssAnon", "RssFile")
            if len(sample) < 3:
                return  # gone
            if sample["VmRSS"] > self.peak.get("VmRSS", 0.0):
                self.peak = sample

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        return self.peak


def cpu_seconds(pid: int, thread: int | None = None) -> float:
    """User + system CPU time a process (or one of its threads) has used so far, in seconds
    (0 if it is gone)."""
    path = f"/proc/{pid}/task/{thread}/stat" if thread is not None else f"/proc/{pid}/stat"
    try:
        fields = Path(path).read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """The worker's CPU time per event between two points of a drain: in all its threads,
    and in its main thread (the Python one; chDB inserts on others). Less moved than events/s
    by a machine whose speed varies, as these shared ones do."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.first: tuple[int, float, float] | None = None  # (events, process s, main s)
        self.last: tuple[int, float, float] | None = None

    def mark(self, events: int) -> None:
        """Note the CPU used when ``events`` are stored (the first mark starts the count)."""
        sample = (events, cpu_seconds(self.pid), cpu_seconds(self.pid, self.pid))
        if self.first is None:
            self.first = sample
        self.last = sample

    def per_event_us(self) -> tuple[float, float] | None:
        """(all threads, main thread) CPU microseconds per event between the marks."""
        if self.first is None or self.last is None or self.last[0] <= self.first[0]:
            return None
        events = self.last[0] - self.first[0]
        return (
            1e6 * (self.last[1] - self.first[1]) / events,
            1e6 * (self.last[2] - self.first[2]) / events,
        )


# -- processes -------------------------------------------------------------------------


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log: Path
    web_port: int

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def check(self) -> None:
        if not self.alive():
            raise BenchError(
                f"{self.name} exited with code {self.popen.returncode}; log {self.log}:\n"
                + self.tail()
            )

    def get(self, path: str, body: Any = None, timeout: float = 60) -> Any:
        data = orjson.dumps(body) if body is not None else None
        request = urllib.request.Request(f"http://127.0.0.1:{self.web_port}{path}", data=data)
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return orjson.loads(response.read())

    def query(self, sql: str) -> list[list[Any]]:
        try:
            return self.get("/query", {"sql": sql})["rows"]
        except urllib.error.HTTPError as exc:
            raise BenchError(f"query failed: {sql}: {exc.read()[:500]!r}") from None


class Bench:
    """Owns the temp dir, the broker and every process started; ``close`` removes them all."""

    def __init__(self, keep: bool = False) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="llmtel-bench-"))
        self.keep = keep
        self.procs: list[Proc] = []
        self.broker: subprocess.Popen | None = None
        self.bootstrap = ""
        self.run_id = uuid.uuid4().hex[:8]
        self.threads: list[tuple[threading.Thread, threading.Event]] = []

    def start_broker(self) -> None:
        port = free_port()
        self.broker = start_broker(port, self.root / "broker.log")
        self.bootstrap = f"127.0.0.1:{port}"

    def prefix(self, phase: str) -> str:
        return f"bench-{self.run_id}-{phase}"

    def spawn(
        self, name: str, module: str, args: list[str], env: dict[str, str], port: int
    ) -> Proc:
        log = self.root / f"{name}.log"
        with open(log, "ab") as out:
            popen = subprocess.Popen(
                [sys.executable, "-m", module, *args],
                env=env,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches the bench, which stops children in order
            )
        proc = Proc(name, popen, log, port)
        self.procs.append(proc)
        deadline = time.monotonic() + 90
        while not port_open(port):
            proc.check()
            if time.monotonic() > deadline:
                raise BenchError(f"{name}: web port {port} not open after 90 s; log {log}")
            time.sleep(0.1)
        return proc

    def stop(self, proc: Proc, timeout: float = 15) -> None:
        if proc.alive():
            proc.popen.send_signal(signal.SIGTERM)
            try:
                proc.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.popen.kill()
                proc.popen.wait()
        if proc in self.procs:
            self.procs.remove(proc)

    def close(self) -> None:
        for thread, stop in self.threads:
            stop.set()
            thread.join(10)
        for proc in reversed(list(self.procs)):
            self.stop(proc, timeout=10)
        if self.broker is not None and self.broker.poll() is None:
            self.broker.terminate()
            try:
                self.broker.wait(10)
            except subprocess.TimeoutExpired:
                self.broker.kill()
                self.broker.wait()
        if self.keep:
            say(f"kept {self.root}")
        else:
            shutil.rmtree(self.root, ignore_errors=True)


def worker_env(
    bench: Bench, prefix: str, args: argparse.Namespace, policy: Path, **extra: str
) -> dict[str, str]:
    """The environment of an ``llmtel worker``, as tests/integration/harness.py builds it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMTEL_")}
    env.update(
        {
            "LLMTEL_KAFKA_BOOTSTRAP": bench.bootstrap,
            "LLMTEL_DATA_DIR": str(bench.root / prefix),
            "LLMTEL_WEB_PORT": str(free_port()),
            "LLMTEL_APP_ID": f"{prefix}-app",
            "LLMTEL_EVENTS_TOPIC": f"{prefix}.events",
            "LLMTEL_DLQ_TOPIC": f"{prefix}.events.dlq",
            "LLMTEL_ALERTS_TOPIC": f"{prefix}.alerts",
            "LLMTEL_DEGRADE_TOPIC": f"{prefix}.degrade",
            "LLMTEL_PARTITIONS": str(args.partitions),
            "LLMTEL_SESSION_TIMEOUT": "6",
            "LLMTEL_BATCH_WITHIN": str(args.batch_within),
            "LLMTEL_BATCH_MAX": str(args.batch_max),
            "LLMTEL_LOG_LEVEL": "warning",
            "LLMTEL_POLICY": str(policy),
            **extra,
        }
    )
    return env


def start_worker(bench: Bench, name: str, env: dict[str, str]) -> Proc:
    return bench.spawn(name, "streams.cli", ["worker"], env, int(env["LLMTEL_WEB_PORT"]))


# -- input -----------------------------------------------------------------------------


def tenant_names(n: int, stem: str = "tenant") -> list[str]:
    width = max(4, len(str(n)))
    return [f"{stem}-{i:0{width}d}" for i in range(1, n + 1)]


def write_policy(path: Path, tenants: list[str]) -> Path:
    """Plans by size: the 10 largest tenants enterprise, the next 90 pro, the rest starter
    (the default plan)."""
    lines = ["tenants:"]
    for rank, tenant in enumerate(tenants[:100]):
        lines.append(f"  {tenant}: {{plan: {'enterprise' if rank < 10 else 'pro'}}}")
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class Produced:
    topic: str
    records: int = 0
    events: int = 0
    llm_calls: int = 0
    cost_pico: int = 0
    nbytes: int = 0
    sizes: dict[str, list[int]] = field(default_factory=dict)


def bulk_producer(bootstrap: str) -> Any:
    return make_producer(
        bootstrap,
        **{
            "linger.ms": 100,
            "batch.size": 1_000_000,
            "batch.num.messages": 100_000,
            "queue.buffering.max.messages": 2_000_000,
            "queue.buffering.max.kbytes": 2_000_000,
            "delivery.report.only.error": True,
        },
    )


class Sender:
    """Produces records, counting delivery failures."""

    def __init__(self, producer: Any) -> None:
        self.producer = producer
        self.failures: list[str] = []
        self.sent = 0

    def _report(self, err: Any, msg: Any) -> None:
        if err is not None:
            self.failures.append(str(err))

    def send(self, topic: str, key: bytes, value: bytes) -> None:
        while True:
            try:
                self.producer.produce(topic, value, key, on_delivery=self._report)
                break
            except BufferError:
                self.producer.poll(0.05)
        self.sent += 1
        if self.sent % 5000 == 0:
            self.producer.poll(0)

    def flush(self, timeout: float = 120) -> None:
        left = self.producer.flush(timeout)
        if left or self.failures:
            raise BenchError(
                f"producing failed: {left} not delivered, {len(self.failures)} errors "
                f"{self.failures[:3]}"
            )


def produce_input(
    bench: Bench, args: argparse.Namespace, mix: Mix, single: str | None, arrays: str | None
) -> tuple[Produced, Produced]:
    """Generate ``args.events`` events once and produce them to ``single`` (one event per
    record) and ``arrays`` (arrays of up to 100 events of one tenant), in chunks."""
    one = Produced(single or "")
    many = Produced(arrays or "")
    sender = Sender(bulk_producer(bench.bootstrap))
    now = time.time()
    chunk = 100_000
    gen_s = 0.0
    for start in range(0, args.events, chunk):
        n = min(chunk, args.events - start)
        t0 = time.perf_counter()
        # event times spread over the last --span seconds, in stream order
        span = args.span
        records = mix.generate(
            n,
            now - span + span * start / args.events,
            now - span + span * (start + n) / args.events,
        )
        gen_s += time.perf_counter() - t0
        for target, topic in ((one, single), (many, arrays)):
            if topic is None:
                continue
            target.events += n
            target.llm_calls += records.llm_calls
            target.cost_pico += records.cost_pico
            for kind, (count, nbytes) in records.sizes.items():
                s = target.sizes.setdefault(kind, [0, 0])
                s[0] += count
                s[1] += nbytes
            pairs = (
                zip(records.keys, records.values, strict=True)
                if target is one
                else batched(records.keys, records.values)
            )
            for key, value in pairs:
                sender.send(topic, key, value)
                target.records += 1
                target.nbytes += len(value)
    sender.flush()
    say(
        f"  generated {args.events:,} events in {gen_s:.1f} s ({args.events / gen_s:,.0f} events/s)"
    )
    return one, many


# -- profiling -----------------------------------------------------------------------


def start_profiler(
    bench: Bench, args: argparse.Namespace, proc: Proc, name: str
) -> subprocess.Popen | None:
    """With ``--profile DIR``: py-spy (if installed) samples the worker while it drains."""
    if not args.profile:
        return None
    venv_py_spy = Path(sys.executable).with_name("py-spy")
    py_spy = str(venv_py_spy) if venv_py_spy.exists() else shutil.which("py-spy")
    if py_spy is None:
        say("  --profile: py-spy not found (pip install py-spy); not profiling")
        return None
    out_dir = Path(args.profile).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"{name}.txt"
    say(f"  profiling {name} with py-spy into {out} (collapsed stacks)")
    command = [py_spy, "record", "--pid", str(proc.popen.pid), "--rate", "50"]
    command += ["--format", "raw", "--nonblocking", "--output", str(out)]
    with open(bench.root / f"py-spy-{name}.log", "ab") as log:
        popen = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True
        )
    bench.procs.append(Proc(f"py-spy {name}", popen, bench.root / f"py-spy-{name}.log", 0))
    return popen


def stop_profiler(popen: subprocess.Popen | None) -> None:
    if popen is None or popen.poll() is not None:
        return
    popen.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
    try:
        popen.wait(30)
    except subprocess.TimeoutExpired:
        popen.kill()


# -- throughput ------------------------------------------------------------------------


def say_cpu(cpu_us: tuple[float, float] | None) -> None:
    if cpu_us:
        say(
            f"  worker CPU per event: {cpu_us[0]:.1f} us in all threads, {cpu_us[1]:.1f} us in "
            f"the main (Python) thread: 1e6 / the latter is the most a core gives this worker"
        )


@dataclass
class Drained:
    events_per_s: float
    seconds: float
    startup_s: float
    counted_events: int
    cost_ok: bool
    stored_cost: str
    expected_cost: str
    peak_rss_mb: float | None
    alerts: int
    breakdown: str
    cpu_us: tuple[float, float] | None = None  # per event: all threads, main thread


def metric_sums(text: str) -> dict[str, float]:
    """``name{labels}`` -> value of the ``_sum`` and ``_count`` series of a Prometheus page."""
    sums: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, _, value = line.rpartition(" ")
        if name.split("{")[0].endswith(("_sum", "_count")):
            with contextlib.suppress(ValueError):
                sums[name] = float(value)
    return sums


def breakdown(proc: Proc, wall: float) -> str:
    """Where the worker's time went, from its own metrics (empty if they are not there)."""
    try:
        url = f"http://127.0.0.1:{proc.web_port}/metrics"
        with urllib.request.urlopen(url, timeout=30) as response:
            m = metric_sums(response.read().decode())
    except (OSError, ValueError):
        return ""
    batches = m.get("llmtel_batch_seconds_count", 0)
    if not batches:
        return ""
    busy = m.get("llmtel_batch_seconds_sum", 0.0)
    size = m.get("llmtel_batch_size_sum", 0.0) / batches
    inserts = {
        name.split('table="')[1].split('"')[0]: value
        for name, value in m.items()
        if name.startswith("llmtel_clickhouse_insert_seconds_sum{") and 'table="' in name
    }
    parts = ", ".join(f"{table} {sec:.1f} s" for table, sec in sorted(inserts.items()))
    return (
        f"{batches:.0f} batches of {size:,.0f} records on average; processing them took "
        f"{busy:.1f} s of the {wall:.1f} s (ClickHouse inserts: {parts or 'n/a'}); the rest is "
        f"fetching records from the broker and everything outside the batch"
    )


def wait_drained(
    proc: Proc, events: int, llm_calls: int, stall: float = 120.0, meter: CpuMeter | None = None
) -> tuple[float, int, int]:
    """Poll until ``events`` rows are stored and the rollups hold ``llm_calls`` requests;
    returns (wall time then, events, requests). Fails after ``stall`` s without progress.

    The queries go through the worker's sink thread, so they are kept cheap and rare: a
    ``count()`` (from part metadata) once a second, every 0.2 s near the end, and the rollups
    only once every event is there."""
    last = (-1, -1)
    last_change = time.monotonic()
    while True:
        proc.check()
        now = time.time()
        stored, requests = int(proc.query("SELECT count() FROM events")[0][0]), 0
        if meter is not None and stored:
            meter.mark(stored)
        if stored >= events:
            requests = int(proc.query("SELECT sum(requests) FROM rollups_1m")[0][0] or 0)
            if requests >= llm_calls:
                return now, stored, requests
        if (stored, requests) != last:
            last, last_change = (stored, requests), time.monotonic()
        elif time.monotonic() - last_change > stall:
            raise BenchError(
                f"{proc.name}: no progress for {stall:.0f} s: events {stored}/{events}, "
                f"rollup requests {requests}/{llm_calls}; log {proc.log}:\n{proc.tail()}"
            )
        time.sleep(0.2 if stored >= 0.9 * events else 1.0)


def drain(
    bench: Bench, args: argparse.Namespace, name: str, prefix: str, produced: Produced, policy: Path
) -> Drained:
    env = worker_env(bench, prefix, args, policy)
    spawned = time.time()
    proc = start_worker(bench, name, env)
    profiler = start_profiler(bench, args, proc, name)
    try:
        meter = CpuMeter(proc.popen.pid)
        t_end, stored, _ = wait_drained(proc, produced.events, produced.llm_calls, meter=meter)
        stop_profiler(profiler)
        first_ms, first_rows = proc.query(
            "SELECT toUnixTimestamp64Milli(min(ingested_at)), "
            "countIf(ingested_at = (SELECT min(ingested_at) FROM events)) FROM events"
        )[0]
        t0 = int(first_ms) / 1000
        counted = produced.events - int(first_rows)
        seconds = t_end - t0
        stored_cost, stored_requests = proc.query(
            "SELECT toString(sum(cost_usd)), sum(requests) FROM rollups_1m"
        )[0]
        expected = Decimal(produced.cost_pico).scaleb(-12)
        cost_ok = (
            Decimal(stored_cost) == expected
            and int(stored_requests) == produced.llm_calls
            and stored == produced.events
        )
        alerts = int(proc.query("SELECT count() FROM alerts")[0][0])
        rss = peak_rss_mb(proc.popen.pid)
        where = breakdown(proc, t_end - spawned)
        cpu = meter.per_event_us()
    finally:
        bench.stop(proc)
    return Drained(
        events_per_s=counted / seconds if seconds > 0 else float("nan"),
        seconds=seconds,
        startup_s=t0 - spawned,
        counted_events=counted,
        cost_ok=cost_ok,
        stored_cost=str(stored_cost),
        expected_cost=str(expected),
        peak_rss_mb=rss,
        alerts=alerts,
        breakdown=where,
        cpu_us=cpu,
    )


# -- baseline --------------------------------------------------------------------------


def run_naive(
    bench: Bench, args: argparse.Namespace, topic: str, produced: Produced
) -> tuple[float, bool]:
    prefix = bench.prefix("naive")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLMTEL_", "BENCH_NAIVE_"))}
    env.update(
        {
            "BENCH_NAIVE_BOOTSTRAP": bench.bootstrap,
            "BENCH_NAIVE_TOPIC": topic,
            "BENCH_NAIVE_APP_ID": f"{prefix}-app",
            "BENCH_NAIVE_PARTITIONS": str(args.partitions),
            "BENCH_NAIVE_WEB_PORT": str(port),
            "BENCH_NAIVE_DATA_DIR": str(bench.root / prefix),
            "BENCH_NAIVE_SESSION_TIMEOUT": "6",
        }
    )
    proc = bench.spawn("naive", "bench.naive", [], env, port)
    try:
        last, last_change = -1, time.monotonic()
        while True:
            proc.check()
            progress = proc.get("/progress")
            if progress["processed"] >= produced.events:
                break
            if progress["processed"] != last:
                last, last_change = progress["processed"], time.monotonic()
            elif time.monotonic() - last_change > 120:
                raise BenchError(
                    f"naive: no progress for 120 s at {last}/{produced.events}; log {proc.log}"
                )
            time.sleep(0.5)
    finally:
        bench.stop(proc)
    seconds = progress["last_at"] - progress["first_at"]
    rate = (progress["processed"] - 1) / seconds if seconds > 0 else float("nan")
    return rate, progress["cost_pico"] == produced.cost_pico


# -- alert latency ---------------------------------------------------------------------


class AlertWatcher:
    """Consumes the alerts topic in a thread; notes when each budget_exceeded alert arrives."""

    def __init__(self, bench: Bench, topic: str) -> None:
        self.consumer = Consumer(
            {
                "bootstrap.servers": bench.bootstrap,
                "group.id": f"{bench.prefix('alerts')}-{uuid.uuid4().hex[:6]}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "session.timeout.ms": 6000,  # the embedded broker holds a JoinGroup for half of it
                "fetch.wait.max.ms": 10,
                "log_level": 2,
            }
        )
        self.assigned = threading.Event()
        self.exceeded: dict[str, float] = {}  # tenant -> wall time the alert was consumed
        self.alerts = 0
        self.stop = threading.Event()
        self.consumer.subscribe([topic], on_assign=lambda c, parts: self.assigned.set())
        self.thread = threading.Thread(target=self._run, name="alerts", daemon=True)
        self.thread.start()
        bench.threads.append((self.thread, self.stop))

    def _run(self) -> None:
        try:
            while not self.stop.is_set():
                msg = self.consumer.poll(0.05)
                if msg is None or msg.error():
                    continue
                at = time.time()
                self.alerts += 1
                alert = orjson.loads(msg.value())
                if alert.get("rule") == "budget_exceeded" and alert.get("state") == "firing":
                    self.exceeded.setdefault(alert.get("tenant_id") or "", at)
        finally:
            self.consumer.close()


def incident_event(
    tenant: str, cost: str, input_tokens: int, output_tokens: int, ts: float
) -> bytes:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z"
    return orjson.dumps(
        {
            "event_id": uuid.uuid4().hex,
            "event_type": "llm_call",
            "timestamp": stamp,
            "tenant_id": tenant,
            "trace_id": uuid.uuid4().hex,
            "span_id": uuid.uuid4().hex[:16],
            "session_id": f"sess_{uuid.uuid4().hex[:16]}",
            "agent_id": "research-agent",
            "model": "gpt-4o",
            "provider": "openai",
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "cost_usd": cost,
            "latency_ms": 4200.0,
            "status": "ok",
        }
    )


@dataclass
class Latency:
    samples: list[float]
    incidents: int
    produced: int
    stored_at_end: int
    achieved_rate: float
    alerts: int
    breakdown: str


def run_latency(bench: Bench, args: argparse.Namespace, prices: PriceTable) -> Latency:
    prefix = bench.prefix("latency")
    tenants = tenant_names(args.tenants)
    policy = write_policy(bench.root / "latency-policy.yaml", tenants)
    _, plan = load_policy(policy).plan_of("incident-x")
    budget = Decimal(plan.daily_budget_usd)
    pre_calls = 20
    pre_cost = (budget * Decimal("0.98") / pre_calls).quantize(Decimal("0.000001"))
    cross_cost = (budget * Decimal("0.05")).quantize(Decimal("0.000001"))
    env = worker_env(bench, prefix, args, policy)
    events_topic, alerts_topic = env["LLMTEL_EVENTS_TOPIC"], env["LLMTEL_ALERTS_TOPIC"]
    ensure_topics(bench.bootstrap, [events_topic, alerts_topic], args.partitions)
    watcher = AlertWatcher(bench, alerts_topic)
    proc = start_worker(bench, "worker-latency", env)
    mix = Mix(
        tenants,
        zipf_weights(args.tenants, args.zipf),
        prices=prices,
        expected_events=int(args.rate * args.latency_seconds),
        seed=args.seed + 2,
    )
    sender = Sender(make_producer(bench.bootstrap, **{"linger.ms": 5}))
    try:
        # warm up: the worker owns its partitions and has stored a batch, the watcher is assigned
        warm = mix.generate(200, time.time(), time.time())
        for key, value in zip(warm.keys, warm.values, strict=True):
            sender.send(events_topic, key, value)
        sender.producer.flush(30)
        deadline = time.monotonic() + 90
        while int(proc.query("SELECT count() FROM events")[0][0]) < len(warm):
            proc.check()
            if time.monotonic() > deadline:
                raise BenchError(f"latency: the worker stored nothing in 90 s; log {proc.log}")
            time.sleep(0.2)
        if not watcher.assigned.wait(30):
            raise BenchError("latency: the alerts consumer got no assignment in 30 s")

        duration = args.latency_seconds
        # The steady load is generated before its clock starts, a second of event time at a
        # time (its events are stamped within the second they are sent in): the generator
        # shares the two cores with the worker, so JSON encoding during the load would be
        # measured against the worker. The incidents' events are made when they are sent.
        seconds = math.ceil(duration)
        base = time.time() + 1.0 + 1e-5 * args.rate * seconds  # about when generating is done
        keys: list[bytes] = []
        values: list[bytes] = []
        for second in range(seconds):
            chunk = mix.generate(int(args.rate), base + second, base + second + 1)
            keys += chunk.keys
            values += chunk.values
        time.sleep(max(0.0, base - time.time()))
        lead = min(3.0, duration / 5)  # steady load before the first incident
        gap = (duration - lead - 1.0) / args.incidents
        schedule: list[tuple[float, str, str]] = []  # (offset s, what, tenant)
        for i in range(args.incidents):
            tenant = f"incident-{i:03d}"
            at = lead + 1.0 + i * gap
            schedule.append((at - 1.0, "pre", tenant))
            schedule.append((at, "cross", tenant))
        schedule.sort()
        crossed: dict[str, float] = {}
        start = time.time()
        produced = 0
        nxt = 0
        while True:
            now = time.time()
            elapsed = now - start
            if elapsed >= duration:
                break
            due = min(int(args.rate * elapsed), len(values)) - produced
            if due > 0:
                for i in range(produced, produced + due):
                    sender.send(events_topic, keys[i], values[i])
                produced += due
            while nxt < len(schedule) and schedule[nxt][0] <= elapsed:
                _, what, tenant = schedule[nxt]
                nxt += 1
                key = tenant.encode()
                if what == "pre":
                    for _ in range(pre_calls):
                        sender.send(
                            events_topic,
                            key,
                            incident_event(tenant, str(pre_cost), 80_000, 4_000, time.time()),
                        )
                else:
                    value = incident_event(tenant, str(cross_cost), 90_000, 2_500, time.time())
                    crossed[tenant] = time.time()
                    sender.send(events_topic, key, value)
                sender.producer.poll(0)
            sender.producer.poll(0)
            time.sleep(max(0.0, 0.01 - (time.time() - now)))
        load_seconds = time.time() - start
        sender.flush(30)
        stored_at_end = int(proc.query("SELECT count() FROM events")[0][0]) - len(warm)
        # the missing alerts come while the worker works through its backlog (up to 10 min)
        deadline = time.monotonic() + 600
        stored, last_change, next_check = stored_at_end, time.monotonic(), 0.0
        while not set(crossed) <= set(watcher.exceeded):
            proc.check()
            now = time.monotonic()
            if now > next_check:
                count = int(proc.query("SELECT count() FROM events")[0][0]) - len(warm)
                if count != stored:
                    stored, last_change = count, now
                next_check = now + 2
            if now > deadline or now - last_change > 30:
                break
            time.sleep(0.2)
        where = breakdown(proc, time.time() - start)
    finally:
        bench.stop(proc)
        watcher.stop.set()
        watcher.thread.join(10)
    samples = [
        (watcher.exceeded[t] - sent) * 1000 for t, sent in crossed.items() if t in watcher.exceeded
    ]
    return Latency(
        samples=samples,
        incidents=len(crossed),
        produced=produced,
        stored_at_end=stored_at_end,
        achieved_rate=produced / load_seconds,
        alerts=watcher.alerts,
        breakdown=where,
    )


# -- memory ----------------------------------------------------------------------------


def run_rss(
    bench: Bench, args: argparse.Namespace, prices: PriceTable
) -> tuple[float | None, float | None, int, dict[str, float]]:
    prefix = bench.prefix("rss")
    tenants = tenant_names(args.rss_tenants, "org")
    policy = write_policy(bench.root / "rss-policy.yaml", tenants)
    env = worker_env(bench, prefix, args, policy)
    topic = env["LLMTEL_EVENTS_TOPIC"]
    ensure_topics(bench.bootstrap, [topic], args.partitions)
    # every tenant active: flat traffic (each gets about rss_events / rss_tenants events)
    mix = Mix(
        tenants,
        [1.0] * len(tenants),
        prices=prices,
        expected_events=args.rss_events,
        seed=args.seed + 3,
    )
    sender = Sender(bulk_producer(bench.bootstrap))
    now = time.time()
    records = Records()
    llm_calls = 0
    for start in range(0, args.rss_events, 100_000):
        n = min(100_000, args.rss_events - start)
        records = mix.generate(
            n,
            now - HOUR + HOUR * start / args.rss_events,
            now - HOUR + HOUR * (start + n) / args.rss_events,
        )
        llm_calls += records.llm_calls
        for key, value in zip(records.keys, records.values, strict=True):
            sender.send(topic, key, value)
    sender.flush()
    proc = start_worker(bench, "worker-rss", env)
    idle = peak_rss_mb(proc.popen.pid, "VmRSS")  # started, tables ready, nothing consumed yet
    sampler = RssSampler(proc.popen.pid)
    try:
        wait_drained(proc, args.rss_events, llm_calls)
        active = int(proc.query("SELECT uniqExact(tenant_id) FROM events")[0][0])
        rss = peak_rss_mb(proc.popen.pid)
    finally:
        largest = sampler.stop()
        bench.stop(proc)
    return rss, idle, active, largest


# -- main ------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--events", type=int, default=1_000_000, help="events to pre-produce (1,000,000)"
    )
    p.add_argument(
        "--partitions",
        type=int,
        default=int(os.environ.get("LLMTEL_PARTITIONS", "8")),
        help="partitions of the topics (LLMTEL_PARTITIONS, default 8)",
    )
    p.add_argument("--tenants", type=int, default=1000, help="tenants of the mix (1000)")
    p.add_argument("--zipf", type=float, default=1.1, help="Zipf exponent of tenant traffic (1.1)")
    p.add_argument(
        "--batched", action="store_true", help="also measure arrays of up to 100 events per record"
    )
    p.add_argument(
        "--rate", type=float, default=10_000, help="events/s of the latency phase (10,000)"
    )
    p.add_argument(
        "--latency-seconds", type=float, default=30, help="duration of the latency phase (30)"
    )
    p.add_argument(
        "--incidents", type=int, default=24, help="budget crossings in the latency phase (24)"
    )
    p.add_argument(
        "--rss-tenants", type=int, default=10_000, help="tenants of the memory phase (10,000)"
    )
    p.add_argument(
        "--rss-events", type=int, default=200_000, help="events of the memory phase (200,000)"
    )
    p.add_argument("--batch-max", type=int, default=10_000, help="LLMTEL_BATCH_MAX (10000)")
    p.add_argument(
        "--batch-within", type=float, default=0.2, help="LLMTEL_BATCH_WITHIN, s (0.2, as the tests)"
    )
    p.add_argument(
        "--span",
        type=float,
        default=HOUR,
        help="seconds of event time the pre-produced events cover (3600: a backlog of the "
        "last hour; rules run at every minute boundary a tenant crosses, so a shorter span, "
        "as live traffic at the measured rate has, costs less)",
    )
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--skip-throughput", action="store_true", help="skip the llmtel throughput phase"
    )
    p.add_argument("--skip-baseline", action="store_true", help="skip the naive Faust reference")
    p.add_argument("--skip-latency", action="store_true", help="skip the alert latency phase")
    p.add_argument("--skip-rss", action="store_true", help="skip the memory phase")
    p.add_argument(
        "--profile",
        metavar="DIR",
        help="sample the throughput workers with py-spy (if installed) into DIR",
    )
    p.add_argument("--keep", action="store_true", help="keep the temp dir (logs, data) at the end")
    return p.parse_args(argv)


def _r(value: float | None, digits: int = 1) -> float | None:
    return None if value is None or math.isnan(value) else round(value, digits)


def run(args: argparse.Namespace, bench: Bench, result: dict[str, Any]) -> None:
    """Run the phases, filling ``result`` as they complete."""
    info = machine()
    result["settings"] = {
        "partitions": args.partitions,
        "batch_max": args.batch_max,
        "batch_within": args.batch_within,
    }
    result["machine"] = info
    say(
        f"machine: {info['nproc']} cores, {info['cpu']}, load average "
        + " ".join(f"{x:.2f}" for x in info["loadavg_start"])
        + " (figures are only meaningful on a quiet machine)"
    )
    prices = PriceTable.shipped()
    bench.start_broker()
    say(f"broker: embedded Tansu at {bench.bootstrap}; temp dir {bench.root}")

    need_input = not (args.skip_throughput and args.skip_baseline) or args.batched
    if need_input:
        tenants = tenant_names(args.tenants)
        policy = write_policy(bench.root / "policy.yaml", tenants)
        mix = Mix(
            tenants,
            zipf_weights(args.tenants, args.zipf),
            prices=prices,
            expected_events=args.events,
            seed=args.seed,
        )
        single_prefix = bench.prefix("single")
        arrays_prefix = bench.prefix("arrays")
        single_topic = f"{single_prefix}.events"
        arrays_topic = f"{arrays_prefix}.events" if args.batched else None
        ensure_topics(
            bench.bootstrap, [t for t in (single_topic, arrays_topic) if t], args.partitions
        )
        say(
            f"input: {args.events:,} events, {args.tenants} tenants (Zipf s={args.zipf}), "
            f"{len(mix.models)} models, {args.partitions} partitions"
        )
        t0 = time.perf_counter()
        single, arrays = produce_input(bench, args, mix, single_topic, arrays_topic)
        sizes = ", ".join(
            f"{kind} {count / single.events:.0%} ~{nbytes / max(count, 1):.0f} B"
            for kind, (count, nbytes) in sorted(single.sizes.items(), key=lambda kv: -kv[1][0])
        )
        say(
            f"  produced in {time.perf_counter() - t0:.1f} s: {single.records:,} records "
            f"({single.nbytes / 1e6:,.0f} MB)"
            + (f" and {arrays.records:,} array records" if arrays_topic else "")
            + f"; {sizes}",
            f"  {single.llm_calls:,} llm_calls, expected cost ${Decimal(single.cost_pico).scaleb(-12)}",
        )
        result.update(events=args.events, llm_calls=single.llm_calls)

        if not args.skip_throughput:
            say("throughput: one llmtel worker drains the topic ...")
            d = drain(bench, args, "worker-single", single_prefix, single, policy)
            say(
                f"  llmtel: {d.events_per_s:,.0f} events/s per worker process "
                f"({d.counted_events:,} events in {d.seconds:.1f} s after the first stored batch; "
                f"start-up to first batch {d.startup_s:.1f} s)",
                f"  exactness: sum(cost_usd) {d.stored_cost} vs generator {d.expected_cost}: "
                + ("OK" if d.cost_ok else "MISMATCH"),
                f"  alerts raised: {d.alerts}; worker peak RSS {d.peak_rss_mb or 0:.0f} MB",
            )
            if d.breakdown:
                say(f"  worker metrics: {d.breakdown}")
            say_cpu(d.cpu_us)
            result.update(
                events_per_s=_r(d.events_per_s),
                cost_exact="OK" if d.cost_ok else "MISMATCH",
                startup_s=_r(d.startup_s, 2),
                throughput_worker_peak_rss_mb=_r(d.peak_rss_mb),
                cpu_us_per_event=_r(d.cpu_us[0], 1) if d.cpu_us else None,
                main_thread_cpu_us_per_event=_r(d.cpu_us[1], 1) if d.cpu_us else None,
            )
        if args.batched:
            say("throughput, batched records (arrays of up to 100 events of one tenant) ...")
            d = drain(bench, args, "worker-arrays", arrays_prefix, arrays, policy)
            say(
                f"  llmtel, batched: {d.events_per_s:,.0f} events/s per worker process "
                f"({d.counted_events:,} events in {d.seconds:.1f} s)",
                "  exactness: "
                + ("OK" if d.cost_ok else f"MISMATCH {d.stored_cost} vs {d.expected_cost}"),
            )
            say_cpu(d.cpu_us)
            result.update(
                batched_events_per_s=_r(d.events_per_s),
                batched_cost_exact="OK" if d.cost_ok else "MISMATCH",
            )
        if not args.skip_baseline:
            say("baseline: naive Faust agent (per event: pydantic, table[tenant] += cost) ...")
            rate, naive_ok = run_naive(bench, args, single_topic, single)
            say(
                f"  naive: {rate:,.0f} events/s"
                + ("" if naive_ok else " (its cost total differs from the generator's!)")
            )
            result["baseline_events_per_s"] = _r(rate)
            if result["events_per_s"]:
                result["ratio"] = _r(result["events_per_s"] / rate, 2)
                say(f"  ratio llmtel/naive: {result['ratio']:.2f}x")

    if not args.skip_latency:
        say(
            f"alert latency: {args.rate:,.0f} events/s for {args.latency_seconds:.0f} s, "
            f"{args.incidents} starter tenants crossing their daily budget ..."
        )
        lat = run_latency(bench, args, prices)
        p50, p99 = percentile(lat.samples, 0.5), percentile(lat.samples, 0.99)
        say(
            f"  load: {lat.achieved_rate:,.0f} events/s produced; stored by the end of the load: "
            f"{lat.stored_at_end:,} of {lat.produced:,}",
            f"  budget_exceeded alerts received: {len(lat.samples)} of {lat.incidents} "
            f"(alerts on the topic: {lat.alerts})",
            f"  alert latency (produce -> consume): p50 {p50 or float('nan'):,.0f} ms, "
            f"p99 {p99 or float('nan'):,.0f} ms, max {max(lat.samples, default=float('nan')):,.0f} ms",
        )
        if lat.breakdown:
            say(f"  worker metrics: {lat.breakdown}")
        if lat.stored_at_end < 0.9 * lat.produced:
            say(
                f"  NOTE: the worker fell behind the load (stored {lat.stored_at_end / max(lat.produced, 1):.0%} of it by the end), so "
                "these latencies include a growing backlog"
            )
        result.update(
            alert_latency_p50_ms=_r(p50),
            alert_latency_p99_ms=_r(p99),
            alert_samples=len(lat.samples),
            latency_load_events_per_s=_r(lat.achieved_rate),
        )

    if not args.skip_rss:
        say(
            f"memory: a worker drains {args.rss_events:,} events of {args.rss_tenants:,} tenants ..."
        )
        rss, idle, active, largest = run_rss(bench, args, prices)
        say(
            f"  peak RSS (VmHWM, chDB included) with {active:,} active tenants: {rss or 0:.0f} MB "
            f"(RSS of the started worker before its first record: {idle or 0:.0f} MB)"
        )
        if largest:
            say(
                f"  largest RSS sampled every 0.1 s: {largest['VmRSS']:.0f} MB, of it "
                f"{largest['RssAnon']:.0f} MB anonymous (Python's and chDB's heaps) and "
                f"{largest['RssFile']:.0f} MB file-backed (mapped libraries, chDB's above all)"
            )
        result.update(
            peak_rss_mb=_r(rss),
            idle_rss_mb=_r(idle),
            rss_tenants=active,
            peak_rss_anon_mb=_r(largest.get("RssAnon")),
            peak_rss_file_mb=_r(largest.get("RssFile")),
        )

    info["loadavg_end"] = list(os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with it ignored
    bench = Bench(keep=args.keep)
    result: dict[str, Any] = {
        "events_per_s": None,
        "baseline_events_per_s": None,
        "ratio": None,
        "alert_latency_p50_ms": None,
        "alert_latency_p99_ms": None,
        "peak_rss_mb": None,
    }
    code = 0
    try:
        run(args, bench, result)
    except KeyboardInterrupt:
        say("interrupted; stopping everything ...")
        code = 130
    except BenchError as exc:
        say(f"bench failed: {exc}")
        result["error"] = str(exc).splitlines()[0][:300]
        code = 1
    except Exception as exc:  # a bug or an unexpected failure: cleanup first, then the trace
        traceback.print_exc()
        result["error"] = repr(exc)[:300]
        code = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not stop the cleanup
        bench.close()
    if code != 130:  # the figures of the phases that completed, as the last line
        print(orjson.dumps(result).decode(), flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
