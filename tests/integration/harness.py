"""Real parts for integration tests: the embedded broker, worker processes, Kafka clients."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Consumer

from streams.kafka import make_producer

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(
    check: Callable[[], Any], timeout: float = 90.0, interval: float = 0.3, what: str = ""
) -> Any:
    """Poll ``check`` until it returns a truthy value; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or check}: last={last!r}")


class Worker:
    """An ``llmtel worker`` process with its own data dir, web port and log."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log = log
        self.web_port = int(env["LLMTEL_WEB_PORT"])
        self.proc: subprocess.Popen | None = None

    def start(self) -> Worker:
        out = open(self.log, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "worker"],
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        wait_for(self._web_up, timeout=60, what=f"worker web port {self.web_port} (log {self.log})")
        return self

    def _web_up(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(
                f"worker exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}"
            )
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", self.web_port)) == 0

    def query(self, sql: str) -> list[list[Any]]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.web_port}/query",
            data=orjson.dumps({"sql": sql}),
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            return orjson.loads(response.read())["rows"]

    def scalar(self, sql: str) -> Any:
        return self.query(sql)[0][0]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


def worker_env(bootstrap: str, data_dir: Path, topic_prefix: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMTEL_")}
    env.update(
        {
            "LLMTEL_KAFKA_BOOTSTRAP": bootstrap,
            "LLMTEL_DATA_DIR": str(data_dir),
            "LLMTEL_WEB_PORT": str(free_port()),
            "LLMTEL_APP_ID": f"{topic_prefix}-app",
            "LLMTEL_EVENTS_TOPIC": f"{topic_prefix}.events",
            "LLMTEL_DLQ_TOPIC": f"{topic_prefix}.events.dlq",
            "LLMTEL_ALERTS_TOPIC": f"{topic_prefix}.alerts",
            "LLMTEL_DEGRADE_TOPIC": f"{topic_prefix}.degrade",
            "LLMTEL_PARTITIONS": "4",
            "LLMTEL_SESSION_TIMEOUT": "6",
            "LLMTEL_BATCH_WITHIN": "0.2",
            "LLMTEL_LOG_LEVEL": "info",
            **extra,
        }
    )
    return env


def unique_prefix(name: str) -> str:
    return f"t{uuid.uuid4().hex[:8]}-{name}"


def produce(bootstrap: str, topic: str, records: Iterable[tuple[bytes | None, bytes]]) -> int:
    producer = make_producer(bootstrap)
    count = 0
    for key, value in records:
        while True:
            try:
                producer.produce(topic, value, key)
                break
            except BufferError:
                producer.poll(0.1)
        count += 1
    assert producer.flush(30) == 0
    return count


def consume(bootstrap: str, topic: str, expected: int, timeout: float = 60.0) -> list[Any]:
    """Read ``expected`` records of ``topic`` from the beginning (fewer if the time runs out)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": 6000,  # the embedded broker holds a JoinGroup for half of it
            "log_level": 2,
        }
    )
    consumer.subscribe([topic])
    messages: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while len(messages) < expected and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            messages.append(msg)
    finally:
        consumer.close()
    return messages
