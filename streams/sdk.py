"""The Python SDK: send telemetry events to llmtel and follow its alerts and degrade commands.

What a service owner adds::

    from streams.sdk import AlertSubscriber, TelemetryProducer

    telemetry = TelemetryProducer("kafka:9092")  # one per process; flushed at exit
    with telemetry.track_llm_call("acme", "gpt-4o", agent_id="support-bot") as call:
        call.record(client.chat.completions.create(model="gpt-4o", messages=messages))
    telemetry.feedback("acme", 4, user_id="u-7")

    degraded = set()  # (tenant_id, mode) pairs llmtel currently asks this service to apply
    def on_degrade(cmd):
        if cmd.state == "enter":
            degraded.add((cmd.tenant_id, cmd.mode))
        else:
            degraded.discard((cmd.tenant_id, cmd.mode))
    AlertSubscriber("kafka:9092", on_degrade=on_degrade).start()  # a daemon thread

Sending never blocks the caller: events are validated at once (a bad event raises ValueError,
the caller's bug), then buffered per tenant and sent by a background thread as one Kafka
record per tenant batch (a JSON array), keyed by ``tenant_id`` with the murmur2 partitioner.
"""

from __future__ import annotations

import atexit
import functools
import inspect
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal, TypedDict, TypeVar, Unpack

import orjson
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaException, Producer
from pydantic import BaseModel, ValidationError

from schemas.events import EVENT_ADAPTER, EVENT_TYPES
from schemas.outputs import Alert, DegradeCommand
from streams.kafka import producer_config

__all__ = [
    "MAX_RECORD_BYTES",
    "AlertSubscriber",
    "LlmCallTracker",
    "TelemetryProducer",
    "extract_usage",
]

log = logging.getLogger(__name__)

MAX_RECORD_BYTES = 512 * 1024
"""Largest record the producer builds (the worker's default limit is 1 MiB)."""

_PARTITIONERS = ("murmur2_random", "murmur2")  # how Kafka's Java client and the workers hash
_IDLE_WAIT = 1.0  # seconds the sender sleeps with nothing buffered and nothing in flight
_POLL_WAIT = 0.05  # ... and with records in flight (delivery reports are served on poll)

F = TypeVar("F", bound=Callable[..., Any])


class Ids(TypedDict, total=False):
    """Optional fields every helper takes (``None`` means absent)."""

    event_id: str  # default: a new uuid4 hex
    timestamp: str | datetime  # default: now, UTC; a datetime must carry its zone
    trace_id: str
    span_id: str
    parent_span_id: str
    session_id: str
    agent_id: str
    user_id: str


_ID_FIELDS = frozenset(Ids.__annotations__)


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _iso(value: str | datetime) -> str | datetime:
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return value  # a naive datetime or a string: validation decides


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")  # every digit, as the worker reads decimal strings exactly
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _describe(exc: ValidationError) -> str:
    """``input_tokens: Input should be greater than or equal to 0``, as the worker's DLQ says."""
    parts = []
    for err in exc.errors(include_url=False)[:5]:
        loc = err["loc"]
        msg = err["msg"].removeprefix("Value error, ")
        if not loc and err["type"].startswith("union_tag"):
            parts.append(f"event_type: {msg}")
        elif len(loc) > 1:
            parts.append(f"{'.'.join(str(p) for p in loc[1:])}: {msg}")
        else:  # a rule over several fields names them in its message
            parts.append(msg)
    return "; ".join(parts)


def _is_timeout(exc: BaseException) -> bool:
    """TimeoutError, or a client library's timeout (``openai.APITimeoutError``, ``httpx.ReadTimeout``)."""
    return isinstance(exc, TimeoutError) or any(
        "Timeout" in cls.__name__ for cls in type(exc).__mro__
    )


# -- usage extraction --------------------------------------------------------------------


def _get(obj: Any, name: str) -> Any:
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def extract_usage(result: Any) -> dict[str, int] | None:
    """Token counts of a model response, as llmtel counts them; None when none are found.

    Reads ``result.usage`` (or ``result["usage"]``, or ``result`` itself when it is the usage):

    - OpenAI chat completions: ``prompt_tokens``, ``completion_tokens``,
      ``prompt_tokens_details.cached_tokens``;
    - Anthropic messages: ``input_tokens`` + ``cache_read_input_tokens`` +
      ``cache_creation_input_tokens`` (Anthropic's ``input_tokens`` excludes the cached and
      cache-written tokens; llmtel's includes every prompt token), ``output_tokens``, and
      ``cache_read_input_tokens`` as the cached part;
    - OpenAI responses and similar: ``input_tokens`` (cached included), ``output_tokens``,
      ``input_tokens_details.cached_tokens``.
    """
    usage = _get(result, "usage")
    if usage is None:
        usage = result
    if _get(usage, "prompt_tokens") is not None or _get(usage, "completion_tokens") is not None:
        return {
            "input_tokens": _count(_get(usage, "prompt_tokens")),
            "output_tokens": _count(_get(usage, "completion_tokens")),
            "cached_input_tokens": _count(
                _get(_get(usage, "prompt_tokens_details"), "cached_tokens")
            ),
        }
    if _get(usage, "input_tokens") is None and _get(usage, "output_tokens") is None:
        return None
    read = _get(usage, "cache_read_input_tokens")
    written = _get(usage, "cache_creation_input_tokens")
    if read is not None or written is not None:  # Anthropic
        cached = _count(read)
        return {
            "input_tokens": _count(_get(usage, "input_tokens")) + cached + _count(written),
            "output_tokens": _count(_get(usage, "output_tokens")),
            "cached_input_tokens": cached,
        }
    return {
        "input_tokens": _count(_get(usage, "input_tokens")),
        "output_tokens": _count(_get(usage, "output_tokens")),
        "cached_input_tokens": _count(_get(_get(usage, "input_tokens_details"), "cached_tokens")),
    }


# -- producer ----------------------------------------------------------------------------


class _Batch:
    """Encoded events of one tenant waiting to be sent as one record."""

    __slots__ = ("key", "parts", "size", "started")

    def __init__(self, key: bytes, started: float) -> None:
        self.key = key
        self.parts: list[bytes] = []
        self.size = 1  # "[" and "]", less the comma the first part does not need
        self.started = started

    def add(self, part: bytes) -> None:
        self.parts.append(part)
        self.size += len(part) + 1

    def payload(self) -> bytes:
        return b"[" + b",".join(self.parts) + b"]"


class TelemetryProducer:
    """Sends llmtel events to Kafka without ever blocking the caller.

    Each helper (``llm_call``, ``tool_call``, ``rag_retrieval``, ``evaluation``, ``feedback``,
    ``guardrail``) and ``emit`` validates the event with llmtel's own schema, raising
    ``ValueError`` naming the field when it is invalid, then enqueues it and returns True (or
    False when it was dropped). A background thread sends each tenant's events as one record
    holding a JSON array, keyed by ``tenant_id``, once the tenant has ``batch_max`` events or
    its oldest has waited ``linger_ms`` (records stay under 512 KiB).

    At most ``max_buffer`` events wait (buffered or not yet acknowledged by Kafka); beyond
    that new events are dropped and counted in ``dropped``. ``sent`` and ``failed`` count
    events from Kafka's delivery reports. ``flush()`` waits for delivery, ``close()`` (or the
    ``with`` block, or interpreter exit) flushes and stops.

    ``kafka_config`` is passed to confluent-kafka (dotted names: ``**{"acks": "all"}``);
    the partitioner must stay murmur2 for records to land where the workers keep each
    tenant's state. Create one producer per process, after any fork (librdkafka's threads
    do not survive a fork: in a pre-forking server, create it in each worker).
    """

    def __init__(
        self,
        bootstrap: str,
        *,
        topic: str = "llm.events",
        max_buffer: int = 100_000,
        batch_max: int = 100,
        linger_ms: float = 20,
        **kafka_config: Any,
    ) -> None:
        if max_buffer < 1 or batch_max < 1 or linger_ms < 0:
            raise ValueError("max_buffer and batch_max must be >= 1, linger_ms >= 0")
        partitioner = kafka_config.get("partitioner", "murmur2_random")
        if partitioner not in _PARTITIONERS:
            raise ValueError(
                f"partitioner {partitioner!r}: llmtel needs murmur2 (murmur2_random), "
                "or a tenant's events land on a partition other than its state's"
            )
        config = {"linger.ms": 5, "enable.idempotence": True, **kafka_config}
        self.topic = topic
        self.max_buffer = max_buffer
        self.batch_max = batch_max
        self.linger = linger_ms / 1000
        self.sent = 0
        self.failed = 0
        self.dropped = 0
        self._producer = Producer(producer_config(bootstrap, **config))
        self._cond = threading.Condition()
        self._send_lock = threading.Lock()  # one sender at a time keeps a tenant's order
        self._batches: dict[bytes, _Batch] = {}  # open, oldest first
        self._ready: deque[_Batch] = deque()  # full or due, to send now
        self._pending = 0  # events buffered or in flight
        self._buffered = 0  # events in _batches and _ready
        self._closed = False
        self._stopping = False
        self._warned_full = False
        self._thread = threading.Thread(target=self._run, name="llmtel-sdk-producer", daemon=True)
        self._thread.start()
        atexit.register(self._atexit)

    # -- typed helpers ------------------------------------------------------------------

    def llm_call(
        self,
        tenant_id: str,
        model: str,
        *,
        input_tokens: int = 0,
        output_tokens: int = 0,
        cached_input_tokens: int = 0,
        cost_usd: float | str | Decimal | None = None,
        latency_ms: float | None = None,
        status: Literal["ok", "error", "timeout", "provider_error"] = "ok",
        provider: str | None = None,
        json_valid: bool | None = None,
        cache: Literal["none", "exact", "semantic"] | None = None,
        abstained: bool | None = None,
        **ids: Unpack[Ids],
    ) -> bool:
        """One model call. ``input_tokens`` counts every prompt token, cached ones included."""
        return self.emit(
            _event(
                "llm_call",
                tenant_id,
                ids,
                model=model,
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                cached_input_tokens=cached_input_tokens,
                cost_usd=cost_usd,
                latency_ms=latency_ms,
                status=status,
                provider=provider,
                json_valid=json_valid,
                cache=cache,
                abstained=abstained,
            )
        )

    def tool_call(
        self,
        tenant_id: str,
        tool_name: str,
        *,
        status: Literal["ok", "error", "blocked_injection"] = "ok",
        latency_ms: float | None = None,
        **ids: Unpack[Ids],
    ) -> bool:
        """One tool (function) execution."""
        return self.emit(
            _event(
                "tool_call",
                tenant_id,
                ids,
                tool_name=tool_name,
                status=status,
                latency_ms=latency_ms,
            )
        )

    def rag_retrieval(
        self,
        tenant_id: str,
        *,
        chunks_retrieved: int = 0,
        top_score: float | None = None,
        latency_ms: float | None = None,
        **ids: Unpack[Ids],
    ) -> bool:
        """One retrieval from a vector store or search index."""
        return self.emit(
            _event(
                "rag_retrieval",
                tenant_id,
                ids,
                chunks_retrieved=chunks_retrieved,
                top_score=top_score,
                latency_ms=latency_ms,
            )
        )

    def evaluation(
        self,
        tenant_id: str,
        name: str,
        score: float,
        *,
        label: str | None = None,
        **ids: Unpack[Ids],
    ) -> bool:
        """A quality score in [0, 1] (``faithfulness``, ``hallucination``: 1 = hallucinated, ...)."""
        return self.emit(_event("evaluation", tenant_id, ids, name=name, score=score, label=label))

    def feedback(
        self, tenant_id: str, score: float, *, comment: str | None = None, **ids: Unpack[Ids]
    ) -> bool:
        """A user's rating, 1 (bad) to 5 (good)."""
        return self.emit(_event("feedback", tenant_id, ids, score=score, comment=comment))

    def guardrail(
        self,
        tenant_id: str,
        kind: str,
        action: Literal["blocked", "flagged", "allowed"],
        **ids: Unpack[Ids],
    ) -> bool:
        """A guardrail verdict (``prompt_injection``, ``pii``, ...: blocked, flagged, allowed)."""
        return self.emit(_event("guardrail", tenant_id, ids, kind=kind, action=action))

    def emit(self, event: Mapping[str, Any]) -> bool:
        """Validate and enqueue one event given as a dict (the wire format); False if dropped.

        Raises ValueError naming the field when the event is invalid, or when it encodes to
        more than ``MAX_RECORD_BYTES``.
        """
        if not isinstance(event, Mapping):
            raise ValueError(f"an event is a dict, not {type(event).__name__}")
        try:
            valid = EVENT_ADAPTER.validate_python(event)
        except ValidationError as exc:
            kind = event.get("event_type")
            what = f"invalid {kind} event" if kind in EVENT_TYPES else "invalid event"
            raise ValueError(f"{what}: {_describe(exc)}") from exc
        data = orjson.dumps(event, default=_json_default)
        if len(data) + 2 > MAX_RECORD_BYTES:
            raise ValueError(f"event is {len(data)} bytes encoded; at most {MAX_RECORD_BYTES - 2}")
        return self._enqueue(valid.tenant_id.encode(), data)

    # -- tracking ----------------------------------------------------------------------

    @contextmanager
    def track_llm_call(self, tenant_id: str, model: str, **fields: Any) -> Iterator[LlmCallTracker]:
        """Time a model call and emit its ``llm_call`` when the block ends.

        ``fields``: any ``llm_call`` keyword (``provider``, ``agent_id``, ``session_id``, ...).
        The block gets a ``LlmCallTracker``: ``call.record(response)`` reads the token counts
        from the response, ``call.set(json_valid=True)`` sets other fields. The status is
        ``ok``, ``timeout`` when the block raises a timeout, ``error`` for any other exception
        (which is re-raised). Invalid ``tenant_id``, ``model`` or fields raise ValueError on
        entry, before the call is made.
        """
        tracker = LlmCallTracker(tenant_id, model, fields)
        tracker.build(0.0)  # a caller's bug fails here, not after the model call
        started = time.perf_counter()
        try:
            yield tracker
        except BaseException as exc:
            latency = (time.perf_counter() - started) * 1000
            status = "timeout" if _is_timeout(exc) else "error"
            if isinstance(exc, Exception):  # not for KeyboardInterrupt, cancellation, ...
                self._emit_quietly(tracker.build(latency, status))
            raise
        latency = (time.perf_counter() - started) * 1000
        self.emit(tracker.build(latency))

    def traced(self, tenant_id: str, model: str, **fields: Any) -> Callable[[F], F]:
        """Decorator: ``track_llm_call`` around each call, recording the return value's usage.

        Works on plain and ``async`` functions::

            @telemetry.traced(tenant_id="acme", model="gpt-4o")
            def answer(question): return client.chat.completions.create(...)
        """

        def decorate(func: F) -> F:
            if inspect.iscoroutinefunction(func):

                @functools.wraps(func)
                async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                    with self.track_llm_call(tenant_id, model, **fields) as call:
                        return call.record(await func(*args, **kwargs))

                return async_wrapper  # type: ignore[return-value]

            @functools.wraps(func)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                with self.track_llm_call(tenant_id, model, **fields) as call:
                    return call.record(func(*args, **kwargs))

            return wrapper  # type: ignore[return-value]

        return decorate

    def _emit_quietly(self, event: dict[str, Any]) -> None:
        # while the caller's exception propagates, a telemetry problem must not replace it
        try:
            self.emit(event)
        except ValueError as exc:
            log.warning("llm_call not sent: %s", exc)

    # -- buffer and sending ------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Events buffered or sent and not yet acknowledged."""
        return self._pending

    def _enqueue(self, key: bytes, data: bytes) -> bool:
        with self._cond:
            if self._closed or self._pending >= self.max_buffer:
                self.dropped += 1
                if not self._warned_full and not self._closed:
                    self._warned_full = True
                    log.warning(
                        "llmtel producer buffer full (%d events waiting): dropping events; "
                        "see .dropped",
                        self.max_buffer,
                    )
                return False
            self._pending += 1
            self._buffered += 1
            wake = False
            batch = self._batches.get(key)
            if batch is not None and batch.size + len(data) + 1 > MAX_RECORD_BYTES:
                self._ready.append(self._batches.pop(key))
                batch, wake = None, True
            if batch is None:
                batch = self._batches[key] = _Batch(key, time.monotonic())
                wake = wake or len(self._batches) == 1  # the sender may sleep past its linger
            batch.add(data)
            if len(batch.parts) >= self.batch_max:
                self._ready.append(self._batches.pop(key))
                wake = True
            if wake:
                self._cond.notify()
            return True

    def _take(self, force: bool) -> list[_Batch]:
        """Under ``_cond``: the batches to send now (all of them with ``force``)."""
        now = time.monotonic()
        while self._batches:
            key, batch = next(iter(self._batches.items()))
            if not force and now - batch.started < self.linger:
                break  # oldest first: the others are younger
            self._ready.append(self._batches.pop(key))
        taken = list(self._ready)
        self._ready.clear()
        return taken

    def _send(self, batches: list[_Batch], deadline: float) -> None:
        """Hand batches to librdkafka (under ``_send_lock``); unsent ones go back in front."""
        for i, batch in enumerate(batches):
            n = len(batch.parts)
            while True:
                try:
                    self._producer.produce(
                        self.topic,
                        batch.payload(),
                        batch.key,
                        on_delivery=functools.partial(self._delivered, n),
                    )
                except BufferError:  # librdkafka's queue is full: wait for deliveries
                    if time.monotonic() >= deadline:
                        with self._cond:
                            self._ready.extendleft(reversed(batches[i:]))
                        return
                    self._producer.poll(0.05)
                    continue
                except KafkaException as exc:
                    log.warning("llmtel record of %d events not sent: %s", n, exc)
                    with self._cond:
                        self._buffered -= n
                        self._pending -= n
                        self.failed += n
                    break
                with self._cond:
                    self._buffered -= n
                break

    def _delivered(self, n: int, err: Any, _msg: Any) -> None:
        with self._cond:
            self._pending -= n
            if err is None:
                self.sent += n
            else:
                self.failed += n
        if err is not None and not self._stopping:
            log.warning("llmtel record of %d events not delivered: %s", n, err)

    def _run(self) -> None:
        while True:
            with self._cond:
                if self._stopping:
                    return
                if not self._ready:
                    if self._batches:
                        oldest = next(iter(self._batches.values())).started
                        wait = oldest + self.linger - time.monotonic()
                    else:
                        wait = _IDLE_WAIT
                    if self._pending > self._buffered:  # in flight: serve delivery reports
                        wait = min(wait, _POLL_WAIT)
                    if wait > 0:
                        self._cond.wait(wait)
            with self._send_lock:
                with self._cond:
                    batches = self._take(force=False)
                if batches:
                    self._send(batches, deadline=time.monotonic() + 1.0)
            self._producer.poll(0)

    def flush(self, timeout: float = 10.0) -> int:
        """Send everything buffered and wait for delivery; return the events still pending."""
        deadline = time.monotonic() + timeout
        with self._send_lock:
            with self._cond:
                batches = self._take(force=True)
            self._send(batches, deadline)
        self._producer.flush(max(0.0, deadline - time.monotonic()))
        return self._pending

    def close(self, timeout: float = 10.0) -> None:
        """Flush (up to ``timeout`` seconds), then stop; what was not delivered counts as failed.

        Later events are dropped. Safe to call twice.
        """
        with self._cond:
            if self._closed:
                return
            self._closed = True
        atexit.unregister(self._atexit)
        left = self.flush(timeout)
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join(5)
        if left:
            self._producer.purge()  # delivery reports with an error come on the next poll
            self._producer.flush(1.0)
            with self._cond:
                unsent = self._buffered  # still in _batches or _ready: never handed over
                self._batches.clear()
                self._ready.clear()
                self.failed += unsent
                self._pending -= unsent
                self._buffered = 0
            log.warning(
                "llmtel producer closed with %d events not delivered (failed=%d)",
                left,
                self.failed,
            )

    def _atexit(self) -> None:
        self.close(timeout=5.0)

    def __enter__(self) -> TelemetryProducer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"TelemetryProducer(topic={self.topic!r}, pending={self._pending}, sent={self.sent}, "
            f"failed={self.failed}, dropped={self.dropped})"
        )


def _event(
    event_type: str, tenant_id: str, ids: Mapping[str, Any], **fields: Any
) -> dict[str, Any]:
    """The wire dict of one event: ids and time filled in, ``None`` fields left out."""
    unknown = set(ids) - _ID_FIELDS
    if unknown:
        raise TypeError(f"unexpected keyword argument(s): {', '.join(sorted(unknown))}")
    event: dict[str, Any] = {
        "event_id": uuid.uuid4().hex if ids.get("event_id") is None else ids["event_id"],
        "event_type": event_type,
        "timestamp": _iso(ids["timestamp"]) if ids.get("timestamp") is not None else _now_iso(),
        "tenant_id": tenant_id,
    }
    for name, value in ids.items():
        if name not in event and value is not None:
            event[name] = value
    for name, value in fields.items():
        if value is not None:
            event[name] = format(value, "f") if isinstance(value, Decimal) else value
    return event


class LlmCallTracker:
    """What a ``track_llm_call`` block fills in: token counts from the response, other fields."""

    def __init__(self, tenant_id: str, model: str, fields: dict[str, Any]) -> None:
        self.tenant_id = tenant_id
        self.model = model
        self.fields: dict[str, Any] = dict(fields)
        self.usage: dict[str, int] | None = None

    def record(self, result: Any) -> Any:
        """Read the token counts of ``result`` (see ``extract_usage``); return ``result``."""
        usage = extract_usage(result)
        if usage is not None:
            self.usage = usage
        return result

    def set(self, **fields: Any) -> None:
        """Set ``llm_call`` fields: ``json_valid``, ``cache``, ``cost_usd``, ``status``, ..."""
        self.fields.update(fields)

    def build(self, latency_ms: float, status: str | None = None) -> dict[str, Any]:
        fields = {**self.fields, **(self.usage or {})}
        if status is not None:
            fields["status"] = status
        fields.setdefault("status", "ok")
        fields["latency_ms"] = round(latency_ms, 3)
        ids = {k: fields.pop(k) for k in list(fields) if k in _ID_FIELDS}
        event = _event("llm_call", self.tenant_id, ids, model=self.model, **fields)
        try:
            EVENT_ADAPTER.validate_python(event)
        except ValidationError as exc:
            raise ValueError(f"invalid llm_call event: {_describe(exc)}") from exc
        return event


# -- subscriber --------------------------------------------------------------------------


class AlertSubscriber:
    """Calls ``on_alert(Alert)`` and ``on_degrade(DegradeCommand)`` for llmtel's records.

    Consumes the alerts and degrade topics. With ``group_id=None`` (the default) each
    subscriber is its own consumer group and sees every record, which is what a service
    switching behaviour on degrade commands wants; nothing is committed and it starts at the
    end of the topics (or their beginning with ``from_beginning``). With a ``group_id``,
    subscribers of that group share the partitions and resume from the committed offsets.

    Records that are not an alert or a degrade command are counted in ``invalid`` and
    skipped; an exception in a callback is logged and counted in ``callback_errors``.
    ``run()`` blocks, ``start()`` runs it in a daemon thread, ``stop()`` ends it.
    ``kafka_config`` overrides the consumer's settings (dotted names).
    """

    def __init__(
        self,
        bootstrap: str,
        *,
        alerts_topic: str = "llm.alerts",
        degrade_topic: str = "llm.degrade",
        group_id: str | None = None,
        from_beginning: bool = False,
        on_alert: Callable[[Alert], Any] | None = None,
        on_degrade: Callable[[DegradeCommand], Any] | None = None,
        **kafka_config: Any,
    ) -> None:
        self.topics = list(dict.fromkeys([alerts_topic, degrade_topic]))
        self.on_alert = on_alert
        self.on_degrade = on_degrade
        self.from_beginning = from_beginning
        self.group_id = group_id
        self.invalid = 0
        self.callback_errors = 0
        self.received = 0
        self.ready = threading.Event()  # set once partitions are assigned
        models: dict[str, list[type[BaseModel]]] = {}
        models.setdefault(alerts_topic, []).append(Alert)
        models.setdefault(degrade_topic, []).append(DegradeCommand)
        self._models = models
        self._config: dict[str, Any] = {
            "bootstrap.servers": bootstrap,
            "group.id": group_id or f"llmtel-sdk-{uuid.uuid4().hex[:12]}",
            "enable.auto.commit": group_id is not None,
            "auto.offset.reset": "earliest" if from_beginning else "latest",
            "session.timeout.ms": 6000,
            "topic.metadata.refresh.interval.ms": 10_000,  # topics created later are found
            "log_level": 2,
            **kafka_config,
        }
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _parse(self, topic: str, raw: bytes | None) -> Alert | DegradeCommand | None:
        if not raw:
            return None
        for model in self._models.get(topic, [Alert, DegradeCommand]):
            try:
                return model.model_validate_json(raw)  # type: ignore[return-value]
            except ValidationError:
                continue
        return None

    def _on_assign(self, consumer: Consumer, partitions: list[Any]) -> None:
        if self.group_id is None:  # a group of its own: start where asked, not at a commit
            for p in partitions:
                if self.from_beginning:
                    p.offset = OFFSET_BEGINNING
                    continue
                try:  # the end as of now, so a record published after assignment is seen
                    p.offset = consumer.get_watermark_offsets(p, timeout=10)[1]
                except KafkaException:
                    p.offset = OFFSET_END
            consumer.assign(partitions)
        self.ready.set()

    def _handle(self, topic: str, raw: bytes | None) -> None:
        record = self._parse(topic, raw)
        if record is None:
            self.invalid += 1
            log.debug("skipped a record of %s that is no alert or degrade command", topic)
            return
        self.received += 1
        callback = self.on_alert if isinstance(record, Alert) else self.on_degrade
        if callback is None:
            return
        try:
            callback(record)  # type: ignore[arg-type]
        except Exception:
            self.callback_errors += 1
            log.exception("llmtel %s callback failed", type(record).__name__)

    def run(self, stop_after: float | None = None) -> None:
        """Consume until ``stop()`` (or ``stop_after`` seconds); callbacks run in this thread."""
        self._stop.clear()
        deadline = None if stop_after is None else time.monotonic() + stop_after
        consumer = Consumer(self._config)
        try:
            consumer.subscribe(self.topics, on_assign=self._on_assign)
            while not self._stop.is_set():
                if deadline is not None and time.monotonic() >= deadline:
                    break
                msg = consumer.poll(0.2)
                if msg is None:
                    continue
                if msg.error():
                    log.debug("consumer: %s", msg.error())
                    continue
                self._handle(msg.topic(), msg.value())
        finally:
            consumer.close()
            self.ready.clear()

    def start(self) -> AlertSubscriber:
        """Run in a daemon thread; returns self."""
        if self._thread is not None and self._thread.is_alive():
            return self
        self._stop.clear()
        self._thread = threading.Thread(target=self.run, name="llmtel-sdk-subscriber", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop consuming; waits for the thread started by ``start()`` (not from inside it)."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def __enter__(self) -> AlertSubscriber:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
