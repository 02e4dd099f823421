"""``llmtel alerts``: follow the alerts and degrade topics and print one line per record.

A fresh consumer group per run (nothing is committed), reading both topics from the beginning
or only what is published after the start. Each record becomes one readable line, or its JSON
as published with ``as_json``; records that are not an alert or a degrade command are printed
as ``?? <raw>`` (on stderr with ``as_json``, so stdout stays one JSON object per line).
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TextIO

import orjson
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaException
from pydantic import BaseModel, ValidationError

from schemas.outputs import Alert, DegradeCommand
from streams.errors import ConfigError
from streams.kafka import cluster_id, ensure_topics
from streams.settings import Settings

ASSIGN_TIMEOUT = 60.0  # seconds to wait for the partitions before giving up (with idle_exit)
POLL_INTERVAL = 0.2


def _time(t: datetime) -> str:
    """``2026-11-22T10:15:00Z``: UTC, seconds (milliseconds when there are any)."""
    t = t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)
    spec = "milliseconds" if t.microsecond else "seconds"
    return t.replace(tzinfo=None).isoformat(timespec=spec) + "Z"


def _num(v: float) -> str:
    """A number as people read it: ``0.31``, ``50``, ``1234567.5``."""
    if not math.isfinite(v):
        return str(v)
    if v == int(v) and abs(v) < 1e15:
        return str(int(v))
    if abs(v) >= 1e5:
        return f"{v:.2f}".rstrip("0").rstrip(".")
    return f"{v:.6g}"


def _relation(a: Alert) -> str:
    """How the value stands to the threshold: ``>`` for a high rule firing, ``<`` for a low one.

    The records do not carry the rule's direction, so the line states the fact: a firing
    ``faithfulness_low`` reads ``0.6 < 0.75``, a resolved ``hallucination_rate_high``
    ``0.1 < 0.15``, a budget reached exactly ``10 >= 10``.
    """
    if a.value > a.threshold:
        return ">"
    if a.value < a.threshold:
        return "<"
    return ">=" if a.state == "firing" else "<="


def format_alert(a: Alert) -> str:
    """One line: time, state, severity, rule, tenant, value against threshold, id, runbook."""
    parts = [
        _time(a.event_time),
        a.state.upper().ljust(8),
        a.severity.ljust(8),
        a.rule,
        f"tenant={a.tenant_id if a.tenant_id is not None else '*'}",
        f"value={_num(a.value)} {_relation(a)} {_num(a.threshold)} ({a.window})",
        f"id={a.alert_id}",
    ]
    if a.runbook:
        parts.append(f"runbook={a.runbook}")
    return " ".join(parts)


def format_degrade(d: DegradeCommand) -> str:
    """One line: time, ``DEGRADE``, enter/exit, mode, tenant, reason: recommendation."""
    reason = f"reason={d.reason}"
    if d.recommendation:
        reason += f": {d.recommendation}"
    return " ".join(
        [_time(d.event_time), "DEGRADE ", d.state.ljust(5), d.mode, f"tenant={d.tenant_id}", reason]
    )


def _one_line(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace").replace("\r", "\\r").replace("\n", "\\n")


class _Printer:
    """Turns one record into its line (or nothing, when the tenant filter drops it)."""

    def __init__(
        self, settings: Settings, as_json: bool, tenant: str | None, out: TextIO, err: TextIO
    ) -> None:
        self.as_json = as_json
        self.tenant = tenant
        self.out = out
        self.err = err
        models: dict[str, list[type[BaseModel]]] = {}
        models.setdefault(settings.alerts_topic, []).append(Alert)
        models.setdefault(settings.degrade_topic, []).append(DegradeCommand)
        self.models = models

    def _parse(self, topic: str, raw: bytes) -> Alert | DegradeCommand | None:
        for model in self.models.get(topic, [Alert, DegradeCommand]):
            try:
                return model.model_validate_json(raw)  # type: ignore[return-value]
            except ValidationError:
                continue
        return None

    def handle(self, topic: str, key: bytes | None, raw: bytes | None) -> None:
        raw = raw or b""
        record = self._parse(topic, raw) if raw else None
        if self.tenant is not None:
            tenant = record.tenant_id if record is not None else _key(key)
            if tenant != self.tenant:
                return
        if record is None:
            stream = self.err if self.as_json else self.out
            self._write(stream, f"?? {_one_line(raw)}")
            return
        if self.as_json:
            line = raw.decode()
            if "\n" in line or "\r" in line:
                line = orjson.dumps(orjson.loads(raw)).decode()
        elif isinstance(record, Alert):
            line = format_alert(record)
        else:
            line = format_degrade(record)
        self._write(self.out, line)

    @staticmethod
    def _write(stream: TextIO, line: str) -> None:
        stream.write(line + "\n")
        stream.flush()


def _key(key: bytes | None) -> str | None:
    return key.decode("utf-8", errors="replace") if key else None


def _on_assign(from_beginning: bool, assigned: list[bool]) -> Callable[[Any, list[Any]], None]:
    """Start every partition at its beginning, or at its end as of now.

    The end is read here (the high watermark) rather than left to ``auto.offset.reset``, so
    a record published once the partitions are assigned is never skipped.
    """

    def on_assign(consumer: Consumer, partitions: list[Any]) -> None:
        for p in partitions:
            if from_beginning:
                p.offset = OFFSET_BEGINNING
                continue
            try:
                _, high = consumer.get_watermark_offsets(p, timeout=10)
                p.offset = high
            except KafkaException:
                p.offset = OFFSET_END
        consumer.assign(partitions)
        assigned[0] = True

    return on_assign


def follow(
    settings: Settings,
    *,
    as_json: bool,
    from_beginning: bool,
    idle_exit: float | None,
    out: TextIO,
    tenant: str | None = None,
    on_ready: Callable[[], None] | None = None,
) -> int:
    """Print the records of the alerts and degrade topics as they come; return 0.

    ``idle_exit``: stop after that many seconds without a record (counted from the moment the
    partitions are assigned); None: run until KeyboardInterrupt. ``tenant``: only that
    tenant's records (records that are not valid JSON are matched on their key). ``on_ready``
    is called once the partitions are assigned: from then on no new record is missed (a new
    group's assignment takes a few seconds). Raises ConfigError when Kafka cannot be reached.
    """
    cluster_id(
        settings.bootstrap, timeout=10, **settings.kafka_client_config()
    )  # a clear error now
    topics = list(dict.fromkeys([settings.alerts_topic, settings.degrade_topic]))
    # as the worker does at start, so following before the first worker starts works; a
    # client not allowed to create topics follows whatever exists
    with contextlib.suppress(KafkaException):
        ensure_topics(
            settings.bootstrap, topics, settings.partitions, **settings.kafka_client_config()
        )
    printer = _Printer(settings, as_json, tenant, out, sys.stderr)
    consumer = Consumer(
        {
            "bootstrap.servers": settings.bootstrap,
            "group.id": f"llmtel-alerts-{uuid.uuid4().hex[:12]}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest" if from_beginning else "latest",
            "session.timeout.ms": int(settings.session_timeout * 1000),
            "log_level": 2,
            **settings.kafka_client_config(),
        }
    )
    assigned = [False]
    try:
        consumer.subscribe(topics, on_assign=_on_assign(from_beginning, assigned))
        started = time.monotonic()
        last = started
        while True:
            msg = consumer.poll(POLL_INTERVAL)
            now = time.monotonic()
            if not assigned[0]:
                last = now
                if idle_exit is not None and now - started > max(ASSIGN_TIMEOUT, idle_exit):
                    raise ConfigError(
                        f"no partitions of {', '.join(topics)} assigned at {settings.bootstrap} "
                        f"after {max(ASSIGN_TIMEOUT, idle_exit):.0f}s"
                    )
            if assigned[0] and on_ready is not None:
                on_ready()
                on_ready = None
            if msg is None or msg.error():
                if idle_exit is not None and assigned[0] and now - last >= idle_exit:
                    return 0
                continue
            last = now
            printer.handle(msg.topic(), msg.key(), msg.value())
    except (KeyboardInterrupt, BrokenPipeError):
        return 0
    finally:
        consumer.close()
