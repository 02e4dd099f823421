"""Turn raw Kafka records into validated events or rejections.

Runs once per record on the hot path. A bad record is data, not an exception: it comes back
as a ``Rejection`` with a reason code and a message naming the field, and goes to the DLQ.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any, NamedTuple

import orjson
from pydantic import ValidationError

from schemas.events import EVENT_ADAPTER, EVENT_TYPES, Event
from streams.pricing import COST_FROM_EVENT, PriceTable, usd_to_pico

# Reason codes (the ``llmtel.reason`` header of a DLQ record).
TOO_LARGE = "too_large"
NOT_UTF8 = "not_utf8"
NOT_JSON = "not_json"
NOT_AN_OBJECT = "not_an_object"
EMPTY_ARRAY = "empty_array"
UNKNOWN_EVENT_TYPE = "unknown_event_type"
INVALID_EVENT = "invalid_event"
TIMESTAMP_OUT_OF_RANGE = "timestamp_out_of_range"
MISSING_KEY = "missing_key"
KEY_MISMATCH = "key_mismatch"
UNKNOWN_TENANT = "unknown_tenant"

REASONS = (
    TOO_LARGE,
    NOT_UTF8,
    NOT_JSON,
    NOT_AN_OBJECT,
    EMPTY_ARRAY,
    UNKNOWN_EVENT_TYPE,
    INVALID_EVENT,
    TIMESTAMP_OUT_OF_RANGE,
    MISSING_KEY,
    KEY_MISMATCH,
    UNKNOWN_TENANT,
)


class Accepted(NamedTuple):
    """A valid event and its cost in pico-USD (0 for events that are not LLM calls)."""

    index: int  # position in the record's array, 0 for a single object
    event: Event
    cost_pico: int
    cost_source: str
    ts: float  # event time, epoch seconds


class Rejection(NamedTuple):
    """Why a record, or one element of its array, was refused."""

    index: int | None  # None: the whole record
    reason: str
    detail: str
    payload: bytes  # what goes to the DLQ: the record's bytes, or the element re-encoded


class ParseLimits(NamedTuple):
    """What the parser accepts beyond the schema."""

    max_record_bytes: int = 1_048_576
    max_event_age: timedelta = timedelta(days=30)
    max_future: timedelta = timedelta(hours=1)
    allowed_tenants: frozenset[str] | None = None  # None: any tenant


_validate = EVENT_ADAPTER.validator.validate_python  # the adapter's method, minus its wrapper


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False)[:5]:
        loc = ".".join(str(p) for p in err["loc"][1:]) or "event"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


def parse_record(
    key: bytes | None,
    value: bytes | None,
    *,
    prices: PriceTable,
    limits: ParseLimits,
    now: datetime,
) -> tuple[list[Accepted], list[Rejection]]:
    """Parse one Kafka record holding an event object or a JSON array of them.

    Each element stands alone: one bad element is rejected, its siblings are accepted.
    """
    return Parser(prices, limits, now).record(key, value)


class Parser:
    """``parse_record`` for the records of one batch: the limits worked out once, and every
    record judged at the same instant ``now``."""

    def __init__(self, prices: PriceTable, limits: ParseLimits, now: datetime) -> None:
        self.prices = prices
        self.limits = limits
        self.now = now.timestamp()
        self.max_age = limits.max_event_age.total_seconds()
        self.max_future = limits.max_future.total_seconds()

    def record(
        self, key: bytes | None, value: bytes | None
    ) -> tuple[list[Accepted], list[Rejection]]:
        """Parse one Kafka record holding an event object or a JSON array of them."""
        raw = value or b""
        limits = self.limits
        if len(raw) > limits.max_record_bytes:
            detail = f"record is {len(raw)} bytes, the limit is {limits.max_record_bytes}"
            return [], [Rejection(None, TOO_LARGE, detail, raw)]
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            return [], [Rejection(None, _undecodable(raw), str(exc)[:300], raw)]
        # surrogateescape: a key that is not UTF-8 equals no tenant_id
        # ("replace" made b"\xff" "\ufffd")
        tenant_key = key.decode("utf-8", "surrogateescape") if key else ""
        if isinstance(doc, dict):
            result = self._element(0, doc, tenant_key)
            if isinstance(result, Accepted):
                return [result], []
            return [], [Rejection(None, result[0], result[1], raw)]
        if not isinstance(doc, list):
            kind = type(doc).__name__
            detail = f"expected an object or array, got {kind}"
            return [], [Rejection(None, NOT_AN_OBJECT, detail, raw)]
        if not doc:
            return [], [Rejection(None, EMPTY_ARRAY, "the array holds no events", raw)]
        accepted: list[Accepted] = []
        rejected: list[Rejection] = []
        written: list[bytes] | None = None
        for index, element in enumerate(doc):
            result = self._element(index, element, tenant_key)
            if isinstance(result, Accepted):
                accepted.append(result)
                continue
            try:
                payload = orjson.dumps(element)
            except orjson.JSONEncodeError:  # nested deeper than orjson encodes (254 levels)
                written = written or _elements_as_written(raw)
                payload = written[index]
            rejected.append(Rejection(index, result[0], result[1], payload))
        return accepted, rejected

    def _element(self, index: int, element: Any, tenant_key: str) -> Accepted | tuple[str, str]:
        if not isinstance(element, dict):
            return NOT_AN_OBJECT, f"expected an event object, got {type(element).__name__}"
        event_type = element.get("event_type")
        if event_type not in EVENT_TYPES:
            return (
                UNKNOWN_EVENT_TYPE,
                f"event_type {_shown(event_type)} is not one of {', '.join(EVENT_TYPES)}",
            )
        try:
            event = _validate(element)
        except ValidationError as exc:
            return INVALID_EVENT, _describe(exc)
        ts = event.timestamp.timestamp()
        age = self.now - ts
        if age > self.max_age:
            return (
                TIMESTAMP_OUT_OF_RANGE,
                f"timestamp {event.timestamp.isoformat()} is older than "
                f"{self.limits.max_event_age}",
            )
        if -age > self.max_future:
            return (
                TIMESTAMP_OUT_OF_RANGE,
                f"timestamp {event.timestamp.isoformat()} is more than "
                f"{self.limits.max_future} ahead",
            )
        tenant = event.tenant_id
        if tenant_key != tenant:
            if not tenant_key:
                return MISSING_KEY, "the record has no key; key each record by its tenant_id"
            return (
                KEY_MISMATCH,
                f"record key {_shown(tenant_key)} differs from tenant_id {tenant!r}",
            )
        allowed = self.limits.allowed_tenants
        if allowed is not None and tenant not in allowed:
            return UNKNOWN_TENANT, f"tenant {tenant!r} is not in the policy's allow-list"
        if event_type == "llm_call":
            if event.cost_usd is not None:
                return Accepted(index, event, usd_to_pico(event.cost_usd), COST_FROM_EVENT, ts)
            cost, source = self.prices.cost(
                event.model, event.input_tokens, event.cached_input_tokens, event.output_tokens
            )
            return Accepted(index, event, cost, source, ts)
        return Accepted(index, event, 0, "", ts)


_JSON_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{},]', re.DOTALL)


def _elements_as_written(raw: bytes) -> list[bytes]:
    """The bytes of each element of ``raw``, a valid JSON array, as written (no recursion)."""
    elements: list[bytes] = []
    depth = start = 0
    for token in _JSON_TOKEN.finditer(raw):  # strings are skipped whole, with their brackets
        char = raw[token.start()]
        if char in b"[{":
            depth += 1
            if depth == 1:
                start = token.end()
        elif char in b",]}":
            if depth == 1:
                elements.append(raw[start : token.start()].strip())
                start = token.end()
            if char != ord(","):
                depth -= 1
    return elements


def _undecodable(raw: bytes) -> str:
    """Why orjson refused ``raw``: not UTF-8 at all, or UTF-8 but not JSON (a BOM, say)."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return NOT_UTF8
    return NOT_JSON


def _shown(value: Any, limit: int = 100) -> str:
    """A producer's value in a message (a Kafka header): its repr, cut short."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"
