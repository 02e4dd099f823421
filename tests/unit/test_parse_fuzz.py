"""Property-based tests of ``parse_record``: hostile bytes and JSON never make it raise, nothing
it accepts breaks the published JSON Schema, and every event valid by construction is accepted
and priced by the price-table formula."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from decimal import ROUND_HALF_EVEN, Decimal
from importlib import resources
from typing import Any

import orjson
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from schemas import EVENT_TYPES, event_json_schema
from schemas.events import (
    MAX_COST_USD,
    MAX_LATENCY_MS,
    MAX_TOKENS,
    Evaluation,
    Feedback,
    Guardrail,
    LlmCall,
    RagRetrieval,
    ToolCall,
)
from streams import parse
from streams.parse import REASONS, ParseLimits, parse_record
from streams.pricing import COST_FROM_EVENT, COST_FROM_PRICE_TABLE, COST_UNKNOWN_MODEL, PriceTable

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
PRICES = PriceTable.shipped()
OPEN = ParseLimits()
ALLOW_LIST = ParseLimits(max_record_bytes=65536, allowed_tenants=frozenset({"acme", "beta"}))
SCHEMA = event_json_schema()
PRICE_FILE = yaml.safe_load(resources.files("streams").joinpath("prices.yaml").read_text())
PRICED_MODELS = sorted(PRICE_FILE["models"])
CLASSES = {
    "llm_call": LlmCall,
    "tool_call": ToolCall,
    "rag_retrieval": RagRetrieval,
    "evaluation": Evaluation,
    "feedback": Feedback,
    "guardrail": Guardrail,
}
EPOCH = int(NOW.timestamp()) - 60  # a minute ago, as a Unix time: no zone, not ISO 8601

FUZZ = settings(
    max_examples=250,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# --- the oracle: the JSON Schema, read by a small validator, plus what it cannot express ---


def _aliases(cls: type) -> dict[str, tuple[str, ...]]:
    """Field name -> the input names pydantic reads it from, first present wins."""
    names = {}
    for field, info in cls.model_fields.items():
        alias = info.validation_alias
        names[field] = tuple(alias.choices) if alias is not None else (field,)
    return names


ALIASES = {event_type: _aliases(cls) for event_type, cls in CLASSES.items()}


def canonical(element: dict[str, Any]) -> dict[str, Any]:
    """The element with OpenTelemetry aliases renamed as pydantic reads them."""
    names = ALIASES[element["event_type"]]
    every_alias = {a for choices in names.values() for a in choices}
    out = {k: v for k, v in element.items() if k not in every_alias}
    for field, choices in names.items():
        for name in choices:
            if name in element:
                out[field] = element[name]
                break
    return out


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _json_equal(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b


def _ecma(pattern: str) -> str:
    # ECMA-262 `$` (no multiline) matches only at the very end; `\d` is ASCII (re.ASCII below)
    return pattern[:-1] + r"\Z" if pattern.endswith("$") else pattern


def schema_problems(value: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """Where ``value`` breaks ``schema`` (the keywords pydantic's export uses); [] if nowhere."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        return schema_problems(value, SCHEMA["$defs"][name], path)
    problems: list[str] = []
    if "oneOf" in schema:
        matching = [s for s in schema["oneOf"] if not schema_problems(value, s, path)]
        if len(matching) != 1:
            problems.append(f"{path}: matches {len(matching)} of oneOf")
    if "anyOf" in schema and not any(not schema_problems(value, s, path) for s in schema["anyOf"]):
        problems.append(f"{path}: matches none of anyOf")
    if "const" in schema and not _json_equal(value, schema["const"]):
        problems.append(f"{path}: {value!r} is not {schema['const']!r}")
    if "enum" in schema and not any(_json_equal(value, v) for v in schema["enum"]):
        problems.append(f"{path}: {value!r} not in {schema['enum']}")
    kind = schema.get("type")
    type_ok = {
        None: True,
        "string": isinstance(value, str),
        "integer": _is_number(value) and float(value).is_integer(),
        "number": _is_number(value),
        "boolean": isinstance(value, bool),
        "null": value is None,
        "object": isinstance(value, dict),
    }[kind]
    if not type_ok:
        return [*problems, f"{path}: {value!r} is not of type {kind}"]
    if _is_number(value):
        if "minimum" in schema and not value >= schema["minimum"]:
            problems.append(f"{path}: {value!r} < {schema['minimum']}")
        if "maximum" in schema and not value <= schema["maximum"]:
            problems.append(f"{path}: {value!r} > {schema['maximum']}")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            problems.append(f"{path}: shorter than {schema['minLength']}")
        if len(value) > schema.get("maxLength", len(value)):
            problems.append(f"{path}: longer than {schema['maxLength']}")
        if "pattern" in schema and not re.search(_ecma(schema["pattern"]), value, re.ASCII):
            problems.append(f"{path}: {value!r} does not match {schema['pattern']}")
    if isinstance(value, dict):
        problems += [f"{path}.{k}: required" for k in schema.get("required", ()) if k not in value]
        for k, sub in schema.get("properties", {}).items():
            if k in value:
                problems += schema_problems(value[k], sub, f"{path}.{k}")
    return problems


ZONED = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([Zz]|[+-]\d{2}:?\d{2})$")


def pico_of(amount: Decimal) -> int:
    return int((amount * 10**12).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def table_cost_pico(model: str, input_tokens: int, cached: int, output: int) -> int:
    """The README's formula over prices.yaml, computed here independently of llmtel's code."""
    p = PRICE_FILE["models"][model]
    per_million = (
        (input_tokens - cached) * Decimal(str(p["input"]))
        + cached * Decimal(str(p.get("cached_input", p["input"])))
        + output * Decimal(str(p["output"]))
    )
    return int(per_million * 10**6)  # exact: prices have at most 6 decimals


def check_accepted(key: bytes | None, value: bytes, limits: ParseLimits, accepted: list) -> None:
    """Everything the schema and the README promise of accepted events, checked on the input."""
    if not accepted:
        return
    doc = orjson.loads(value)
    elements = [doc] if isinstance(doc, dict) else doc
    for item in accepted:
        element, event = elements[item.index], item.event
        assert element.get("event_type") in EVENT_TYPES
        assert element["event_type"] == event.event_type
        assert type(event) is CLASSES[event.event_type]
        flat = canonical(element)
        assert schema_problems(flat, SCHEMA) == [], (flat, schema_problems(flat, SCHEMA))

        # the timestamp: an ISO 8601 string with a zone, within the accepted window
        assert isinstance(flat["timestamp"], str) and ZONED.match(flat["timestamp"]), flat
        assert event.timestamp.utcoffset() is not None
        assert NOW - limits.max_event_age <= event.timestamp <= NOW + limits.max_future
        # the key is the tenant, byte for byte (it decides the partition)
        assert key == event.tenant_id.encode("utf-8")
        assert event.tenant_id == flat["tenant_id"]
        if limits.allowed_tenants is not None:
            assert event.tenant_id in limits.allowed_tenants

        if isinstance(event, LlmCall):
            tokens = (event.input_tokens, event.cached_input_tokens, event.output_tokens)
            for field, count in zip(
                ("input_tokens", "cached_input_tokens", "output_tokens"), tokens, strict=True
            ):
                assert type(count) is int and 0 <= count <= MAX_TOKENS
                assert _json_equal(flat.get(field, 0), count)
            assert event.cached_input_tokens <= event.input_tokens
            assert event.model == flat["model"]
            if event.latency_ms is not None:
                assert 0 <= event.latency_ms <= MAX_LATENCY_MS
            given_cost = flat.get("cost_usd")
            if given_cost is not None:
                written = Decimal(repr(given_cost) if isinstance(given_cost, float) else given_cost)
                assert 0 <= written <= MAX_COST_USD
                assert (item.cost_pico, item.cost_source) == (pico_of(written), COST_FROM_EVENT)
            elif event.model in PRICE_FILE["models"]:
                expected = table_cost_pico(event.model, *tokens)
                assert (item.cost_pico, item.cost_source) == (expected, COST_FROM_PRICE_TABLE)
            else:
                assert item.cost_source in (COST_FROM_PRICE_TABLE, COST_UNKNOWN_MODEL)
                assert item.cost_pico >= 0
                if item.cost_source == COST_UNKNOWN_MODEL:
                    assert item.cost_pico == 0
        else:
            assert item.cost_pico == 0
        if isinstance(event, Evaluation):
            assert _is_number(flat["score"]) and 0 <= event.score <= 1
        if isinstance(event, Feedback):
            assert _is_number(flat["score"]) and 1 <= event.score <= 5
        if isinstance(event, RagRetrieval):
            assert type(event.chunks_retrieved) is int and 0 <= event.chunks_retrieved <= 100_000


def check_shape(key: bytes | None, value: bytes | None, accepted: list, rejected: list) -> None:
    """What holds for any input: known reasons, one verdict per element, payloads to resend."""
    raw = value or b""
    for r in rejected:
        assert r.reason in REASONS
        assert isinstance(r.detail, str) and r.detail
        assert len(r.detail) <= 1000  # it goes into a Kafka header
        assert isinstance(r.payload, bytes)
    whole = [r for r in rejected if r.index is None]
    if whole:
        assert (accepted, len(rejected)) == ([], 1)
        assert whole[0].payload == raw
        if whole[0].reason in (parse.NOT_JSON, parse.NOT_UTF8):
            try:
                raw.decode("utf-8")
                utf8 = True
            except UnicodeDecodeError:
                utf8 = False
            assert (whole[0].reason == parse.NOT_UTF8) == (not utf8), whole[0]
        return
    doc = orjson.loads(raw)
    if isinstance(doc, dict):
        assert len(accepted) + len(rejected) == 1
        assert [a.index for a in accepted] in ([], [0])
        return
    assert isinstance(doc, list) and doc
    indexes = [a.index for a in accepted] + [r.index for r in rejected]
    assert sorted(indexes) == list(range(len(doc)))
    for r in rejected:  # an element alone, re-encoded (or as written, if too deep for orjson)
        assert orjson.loads(r.payload) == doc[r.index]


def run(key: bytes | None, value: bytes | None, limits: ParseLimits) -> tuple[list, list]:
    accepted, rejected = parse_record(key, value, prices=PRICES, limits=limits, now=NOW)
    check_shape(key, value, accepted, rejected)
    return accepted, rejected


# --- strategies ---

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=16,
)

zones = st.sampled_from([UTC, *(timezone(timedelta(minutes=m)) for m in (330, -480, 840, -765))])


@st.composite
def timestamps(draw: st.DrawFn, earliest: timedelta, latest: timedelta) -> str:
    """An ISO 8601 time with a zone, between NOW - earliest and NOW + latest."""
    seconds = draw(st.integers(-int(earliest.total_seconds()), int(latest.total_seconds())))
    ts = (NOW + timedelta(seconds=seconds)).astimezone(draw(zones))
    spec = draw(st.sampled_from(["seconds", "milliseconds", "microseconds"]))
    if spec != "seconds":
        ts = ts.replace(microsecond=draw(st.integers(0, 999_999)))
        if seconds == int(latest.total_seconds()):
            ts = ts.replace(microsecond=0)
    text = ts.isoformat(timespec=spec)
    return text.replace("+00:00", "Z") if draw(st.booleans()) else text


valid_times = timestamps(timedelta(days=30) - timedelta(seconds=1), timedelta(seconds=3599))
ids = st.text(min_size=1, max_size=64)
names = st.text(min_size=1, max_size=128)
optional_ids = st.none() | st.text(max_size=256)
latencies = st.none() | st.integers(0, 3_600_000) | st.floats(0, MAX_LATENCY_MS)


@st.composite
def costs(draw: st.DrawFn) -> tuple[Any, int]:
    """A cost as a producer writes it, and its exact pico-USD."""
    pico = draw(st.integers(0, 1000 * 10**12))
    form = draw(st.sampled_from(["string", "trimmed", "int", "float"]))
    if form == "int":
        return pico // 10**12, (pico // 10**12) * 10**12
    if form == "float":
        usd = draw(st.floats(0, 1000))
        return usd, pico_of(Decimal(repr(usd)))
    text = f"{pico // 10**12}.{pico % 10**12:012d}"
    if form == "trimmed":
        text = text.rstrip("0").rstrip(".")
    return text, pico


@st.composite
def valid_events(draw: st.DrawFn, tenant: str | None = None) -> tuple[dict[str, Any], int | None]:
    """A valid event of any type (with optional fields, aliases) and, for a call, its cost."""
    event_type = draw(st.sampled_from(EVENT_TYPES))
    doc: dict[str, Any] = {
        "event_id": draw(ids),
        "event_type": event_type,
        "timestamp": draw(valid_times),
        "tenant_id": tenant if tenant is not None else draw(names),
    }
    for field in ("trace_id", "span_id", "parent_span_id", "session_id", "agent_id", "user_id"):
        if draw(st.booleans()):
            doc[field] = draw(optional_ids)
    cost = None
    if event_type == "llm_call":
        known = draw(st.booleans())
        doc["model"] = (
            draw(st.sampled_from(PRICED_MODELS))
            if known
            else f"zz-in-house-{draw(st.integers(0, 99))}"
        )
        input_tokens = draw(st.integers(0, MAX_TOKENS))
        cached = draw(st.integers(0, input_tokens))
        output = draw(st.integers(0, MAX_TOKENS))
        for field, count in (
            ("input_tokens", input_tokens),
            ("cached_input_tokens", cached),
            ("output_tokens", output),
        ):
            if count or draw(st.booleans()):  # an absent count is 0
                doc[field] = count
        if draw(st.booleans()):
            doc["cost_usd"], cost = draw(costs())
        elif known:
            cost = table_cost_pico(doc["model"], input_tokens, cached, output)
        else:
            cost = 0
        optional = {
            "provider": st.none() | st.text(max_size=128),
            "latency_ms": latencies,
            "status": st.sampled_from(["ok", "error", "timeout", "provider_error"]),
            "json_valid": st.none() | st.booleans(),
            "cache": st.sampled_from(["none", "exact", "semantic"]),
            "abstained": st.booleans(),
        }
    elif event_type == "tool_call":
        doc["tool_name"] = draw(names)
        optional = {
            "status": st.sampled_from(["ok", "error", "blocked_injection"]),
            "latency_ms": latencies,
        }
    elif event_type == "rag_retrieval":
        optional = {
            "chunks_retrieved": st.integers(0, 100_000),
            "top_score": st.none() | st.floats(allow_nan=False, allow_infinity=False),
            "latency_ms": latencies,
        }
    elif event_type == "evaluation":
        doc["name"] = draw(names)
        doc["score"] = draw(st.floats(0, 1) | st.sampled_from([0, 1]))
        optional = {"label": st.none() | st.text(max_size=256)}
    elif event_type == "feedback":
        doc["score"] = draw(st.floats(1, 5) | st.integers(1, 5))
        optional = {"comment": st.none() | st.text(max_size=300)}
    else:
        doc["kind"] = draw(names)
        doc["action"] = draw(st.sampled_from(["blocked", "flagged", "allowed"]))
        optional = {}
    for field, strategy in optional.items():
        if draw(st.booleans()):
            doc[field] = draw(strategy)
    # producers speaking OpenTelemetry use the GenAI attribute names instead
    for field, choices in ALIASES[event_type].items():
        if field in doc and len(choices) > 1 and draw(st.integers(0, 3)) == 0:
            doc[draw(st.sampled_from(choices[1:]))] = doc.pop(field)
    return doc, cost


NASTY = [
    None, True, False, 0, -1, 1, 1.5, -0.0, 1e-320, 1e308, 0.999999, 5.000001,
    MAX_TOKENS, MAX_TOKENS + 1, 2**63 - 1, 2**64 - 1, -(2**63), 3_600_000, 3_600_000.5,
    "", " ", "0", "12", "1e3", "1e-3", "1E+2", "1_000", "+1", " 1", "1 ", "\u0663", "\uff11",
    "NaN", "Infinity", "-0", "-0.0", "0.5", ".5", "5.", "1.0", "1000.000000000001",
    "0.0000000000005", "0x10", "1\n", "ok", "none", "blocked", "llm_call", "LLM_CALL",
    "2026-11-22T10:00:00", "2026-11-22T09:59:00Z", "2026-11-22", "09:59:00Z",
    "2026-11-22T09:59:00+0000", "2026-11-22 09:59:00+00:00", "2026-11-22T09:59Z",
    EPOCH, EPOCH * 1000, EPOCH + 0.5, str(EPOCH), str(EPOCH * 1000), f"{EPOCH}.5",
    "9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59", "1970-01-01T00:00:00Z",
    [], {}, [1], {"a": 1}, ["llm_call"], "acme", "\ufffd", "x" * 129, "x" * 257,
]  # fmt: skip
nasty_values = st.one_of(
    st.sampled_from(NASTY),
    json_values,
    st.integers(min_value=-(2**63), max_value=2**64 - 1),  # what orjson writes
    st.floats(allow_nan=False, allow_infinity=False),
    st.from_regex(r"\A[+-]?\d{0,4}(\.\d{0,14})?([eE][+-]?\d{1,3})?\Z"),
    timestamps(timedelta(days=400), timedelta(days=400)),
    st.text(max_size=40),
)
FIELD_NAMES = sorted(
    {"event_type"} | {a for names in ALIASES.values() for c in names.values() for a in c}
)


@st.composite
def mutated_events(draw: st.DrawFn) -> dict[str, Any]:
    """A valid event with up to three fields set to nasty values, renamed or removed."""
    doc, _ = draw(valid_events(tenant=draw(st.sampled_from(["acme", "beta", "globex", "\ufffd"]))))
    for _ in range(draw(st.integers(0, 3))):
        action = draw(st.sampled_from(["set", "set", "set", "delete", "extra"]))
        if action == "delete" and doc:
            doc.pop(draw(st.sampled_from(sorted(doc))))
        elif action == "extra":
            doc[draw(st.text(max_size=12))] = draw(json_values)
        else:
            doc[draw(st.sampled_from(FIELD_NAMES))] = draw(nasty_values)
    return doc


def with_deep_extra(doc: dict[str, Any], depth: int) -> bytes:
    """``doc`` as JSON with an extra field of ``depth`` nested arrays (too deep for orjson)."""
    body = orjson.dumps(doc)[1:-1]
    return b"{" + body + (b"," if body else b"") + b'"extra":' + b"[" * depth + b"]" * depth + b"}"


@st.composite
def hostile_records(draw: st.DrawFn) -> tuple[bytes | None, bytes | None]:
    """Any record a broken or hostile producer could send, keyed mostly by its tenant."""
    shape = draw(st.sampled_from(["bytes", "json", "event", "event", "array", "deep"]))
    if shape == "bytes":
        value = draw(st.none() | st.binary(max_size=200))
    elif shape == "json":
        value = orjson.dumps(draw(json_values))
    elif shape == "event":
        value = orjson.dumps(draw(mutated_events()))
    elif shape == "array":
        value = orjson.dumps(draw(st.lists(mutated_events() | json_values, max_size=5)))
    else:  # valid-looking events with a deeply nested extra field, alone or in arrays
        docs = draw(st.lists(mutated_events(), min_size=1, max_size=3))
        body = b",".join(with_deep_extra(d, draw(st.integers(1, 1100))) for d in docs)
        value = body if len(docs) == 1 and draw(st.booleans()) else b"[" + body + b"]"
    tenant = b"acme"
    if shape in ("event", "array"):
        first = orjson.loads(value)
        first = first if isinstance(first, dict) else (first[0] if first else None)
        if isinstance(first, dict) and isinstance(first.get("tenant_id"), str):
            tenant = first["tenant_id"].encode()
    elif shape == "deep" and isinstance(docs[0].get("tenant_id"), str):
        tenant = docs[0]["tenant_id"].encode()
    key = draw(
        st.sampled_from([tenant] * 6 + [None, b"", b"acme", b"\xff", tenant + b" "])
        | st.binary(max_size=8)
    )
    return key, value


# --- (a) it never raises; (b) it never accepts what the schema forbids ---


@FUZZ
@given(key=st.none() | st.binary(max_size=40), value=st.none() | st.binary(max_size=400))
@example(key=b"acme", value=b"\xef\xbb\xbf{}")  # a UTF-8 byte order mark: UTF-8, not JSON
@example(key=b"acme", value=b'{"a": "\xff"}')
@example(key=b"acme", value=b"[" * 100_000 + b"]" * 100_000)
@example(key=b"acme", value=b'{"a": NaN, "b": Infinity}')
@example(key=b"acme", value=b"[1e400]")
def test_arbitrary_bytes_never_raise(key, value):
    for limits in (OPEN, ALLOW_LIST):
        accepted, _ = run(key, value, limits)
        check_accepted(key, value or b"", limits, accepted)


@FUZZ
@given(key=st.none() | st.binary(max_size=20), doc=json_values)
def test_arbitrary_json_never_raises(key, doc):
    value = orjson.dumps(doc)
    for limits in (OPEN, ALLOW_LIST):
        accepted, _ = run(key, value, limits)
        check_accepted(key, value, limits, accepted)


def _keyed(doc: dict[str, Any]) -> tuple[bytes, bytes]:
    return doc["tenant_id"].encode(), orjson.dumps(doc)


_BASE = {
    "event_id": "e1",
    "event_type": "llm_call",
    "timestamp": "2026-11-22T09:59:00Z",
    "tenant_id": "acme",
    "model": "gpt-4o",
}


@FUZZ
@given(record=hostile_records())
@example(record=(b"\xff", orjson.dumps({**_BASE, "tenant_id": "\ufffd"})))  # key is not UTF-8
@example(record=_keyed({**_BASE, "timestamp": EPOCH}))  # Unix time, no zone
@example(record=_keyed({**_BASE, "timestamp": str(EPOCH)}))
@example(record=_keyed({**_BASE, "cost_usd": "\u0663"}))  # an Arabic-Indic 3
@example(record=_keyed({**_BASE, "cost_usd": "1_000"}))
@example(
    record=(b"acme", b"[%s,%s]" % (orjson.dumps(_BASE), with_deep_extra({"event_type": "x"}, 300)))
)
@example(record=(b"acme", b"[%s,%s]" % (orjson.dumps(_BASE), with_deep_extra({"a": 1}, 1000))))
@example(record=(b"a" * 5000, orjson.dumps(_BASE)))  # a huge key: the detail stays short
@example(record=(b"acme", orjson.dumps({**_BASE, "event_type": "x" * 5000})))
def test_hostile_records_never_raise_nor_pass_what_the_schema_forbids(record):
    key, value = record
    for limits in (OPEN, ALLOW_LIST):
        accepted, _ = run(key, value, limits)
        check_accepted(key, value or b"", limits, accepted)


# --- (c) what is valid by construction is accepted, and priced by the formula ---


@FUZZ
@given(generated=valid_events())
def test_valid_events_are_accepted_and_priced_by_the_formula(generated):
    doc, cost = generated
    key, value = doc["tenant_id"].encode(), orjson.dumps(doc)
    accepted, rejected = run(key, value, OPEN)
    assert rejected == [], rejected
    [item] = accepted
    assert (item.index, item.event.event_type) == (0, doc["event_type"])
    assert item.event.event_id == doc["event_id"]
    if doc["event_type"] == "llm_call":
        assert item.cost_pico == cost
        given_cost = "cost_usd" in doc
        known = item.event.model in PRICE_FILE["models"]
        assert item.cost_source == (
            COST_FROM_EVENT
            if given_cost
            else (COST_FROM_PRICE_TABLE if known else COST_UNKNOWN_MODEL)
        )
    else:
        assert (item.cost_pico, item.cost_source) == (0, "")
    check_accepted(key, value, OPEN, accepted)


@FUZZ
@given(
    tenant=st.sampled_from(["acme", "beta"]),
    data=st.data(),
)
def test_arrays_of_valid_events_of_one_tenant_are_accepted_whole(tenant, data):
    generated = data.draw(st.lists(valid_events(tenant=tenant), min_size=1, max_size=5))
    docs = [doc for doc, _ in generated]
    key, value = tenant.encode(), orjson.dumps(docs)
    accepted, rejected = run(key, value, ALLOW_LIST)
    assert rejected == []
    assert [a.index for a in accepted] == list(range(len(docs)))
    assert [a.cost_pico for a in accepted] == [
        cost if doc["event_type"] == "llm_call" else 0 for doc, cost in generated
    ]
    check_accepted(key, value, ALLOW_LIST, accepted)
