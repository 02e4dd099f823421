"""Hostile records through the real broker and a real worker: each one lands in the DLQ with its
reason and its original bytes, and every good event sent between them is stored."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, NamedTuple

import orjson

from tests.factories import event, iso
from tests.integration.harness import consume, produce, wait_for

LIMIT = 65536  # LLMTEL_MAX_RECORD_BYTES of the worker under test
POLICY = "accept_unknown_tenants: false\ntenants:\n  acme: {}\n  beta: {}\n"


class Bad(NamedTuple):
    """A hostile record and the DLQ records it must become: (reason, value, element index)."""

    name: str
    key: bytes | None
    value: bytes | None
    expected: list[tuple[str, bytes, int | None]]
    error: str = ""  # a part of the llmtel.error header, when the message must name something


def whole(name, key, value, reason, error=""):
    """A record refused as a whole: it goes to the DLQ as it came."""
    return Bad(name, key, value, [(reason, value or b"", None)], error)


def doc(event_type="llm_call", **fields):
    return event(event_type, **({"tenant_id": "acme"} | fields))


def one(name, reason, event_type="llm_call", key=b"acme", error="", **fields):
    """A single event that must be refused with ``reason``."""
    return whole(name, key, orjson.dumps(doc(event_type, **fields)), reason, error)


def raw_field(base: dict[str, Any], name: str, literal: bytes) -> bytes:
    """``base`` as JSON with one more field written as ``literal`` (which may not be JSON)."""
    return orjson.dumps(base)[:-1] + b',"' + name.encode() + b'":' + literal + b"}"


def deep(levels: int) -> bytes:
    return b"[" * levels + b"]" * levels


def sized(base: dict[str, Any], size: int) -> bytes:
    """``base`` padded with an unknown field to exactly ``size`` bytes of JSON."""
    overhead = len(orjson.dumps({**base, "pad": ""}))
    value = orjson.dumps({**base, "pad": "x" * (size - overhead)})
    assert len(value) == size
    return value


def without(event_type: str, *fields: str, **changes: Any) -> dict[str, Any]:
    missing = doc(event_type, **changes)
    for field in fields:
        del missing[field]
    return missing


def corpus(now: datetime) -> tuple[list[Bad], list[dict[str, Any]]]:
    """The hostile records, and the good events some of them hold (in arrays)."""
    bad: list[Bad] = []
    siblings: list[dict[str, Any]] = []
    base = doc()

    # not JSON, not UTF-8
    bad += [
        whole("not json", b"acme", b"this is not json", "not_json"),
        whole("truncated json", b"acme", orjson.dumps(base)[:-1], "not_json"),
        whole("empty value", b"acme", b"", "not_json"),
        whole("tombstone", b"acme", None, "not_json"),
        whole("utf-8 byte order mark", b"acme", b"\xef\xbb\xbf" + orjson.dumps(base), "not_json"),
        whole(
            "invalid utf-8",
            b"acme",
            orjson.dumps(base).replace(b'"acme"', b'"ac\xffme"'),
            "not_utf8",
        ),
        whole("overlong utf-8", b"acme", b'{"event_id": "\xc0\xaf"}', "not_utf8"),
        whole("encoded surrogate", b"acme", b'{"event_id": "\xed\xa0\x80"}', "not_utf8"),
        whole(
            "lone surrogate escape",
            b"acme",
            orjson.dumps(base).replace(b'"acme"', b'"\\ud800"'),
            "not_json",
        ),
    ]
    # NaN and Infinity: not JSON as literals; as huge numbers, orjson refuses them too
    for name, literal in [
        ("NaN", b"NaN"),
        ("Infinity", b"Infinity"),
        ("-Infinity", b"-Infinity"),
        ("1e400", b"1e400"),
        ("-1e400", b"-1e400"),
    ]:
        bad.append(whole(f"cost {name}", b"acme", raw_field(base, "cost_usd", literal), "not_json"))
    bad.append(
        whole(
            "score 1e400",
            b"acme",
            raw_field(without("evaluation", "score"), "score", b"1e400"),
            "not_json",
        )
    )
    bad.append(whole("latency NaN", b"acme", raw_field(base, "latency_ms", b"NaN"), "not_json"))
    bad += [
        one("cost 'NaN'", "invalid_event", cost_usd="NaN", error="cost_usd"),
        one("cost 'Infinity'", "invalid_event", cost_usd="Infinity", error="cost_usd"),
        one("cost 1e308", "invalid_event", cost_usd=1e308, error="cost_usd"),
        one("tokens 2**64", "invalid_event", error="input_tokens", input_tokens=2**64 - 1),
    ]
    bad.append(
        whole(
            "tokens 1e30",
            b"acme",
            raw_field(doc(), "output_tokens", b"1000000000000000000000000000000"),
            "invalid_event",
            "output_tokens",
        )
    )

    # not an object: scalars, scalars in an array, empty arrays
    scalars = [b"1", b'"two"', b"null", b"true", b"[]"]
    array = b"[" + b", ".join(scalars) + b"]"
    bad += [
        Bad(
            "array of scalars",
            b"acme",
            array,
            [("not_an_object", v, i) for i, v in enumerate(scalars)],
        ),
        whole("empty array", b"acme", b"[]", "empty_array"),
        whole("empty array, spaced", b"acme", b" [ \n ] ", "empty_array"),
        whole("a string", b"acme", b'"llm_call"', "not_an_object"),
        whole("null", b"acme", b"null", "not_an_object"),
        whole("a number", b"acme", b"42", "not_an_object"),
        whole("false", b"acme", b"false", "not_an_object"),
    ]

    # deeply nested: over the size limit, over the parser's depth limit, and within both
    hundred_k = deep(100_000)
    assert len(hundred_k) > LIMIT
    objects = b'{"a":' * 10_000 + b"1" + b"}" * 10_000
    bad += [
        whole("100000 nested arrays", b"acme", hundred_k, "too_large"),
        whole("30000 nested arrays", b"acme", deep(30_000), "not_json"),
        whole("10000 nested objects", b"acme", objects, "not_json"),
        whole(
            "event with a 20000-deep extra field",
            b"acme",
            raw_field(base, "extra", deep(20_000)),
            "not_json",
        ),
        whole(
            "invalid event with a 500-deep extra field",
            b"acme",
            raw_field(doc(input_tokens=-1), "extra", deep(500)),
            "invalid_event",
            "input_tokens",
        ),
    ]
    # an array whose bad element is nested deeper than orjson re-encodes: it goes to the DLQ as
    # written, and its good sibling is stored
    sibling = doc(cost_usd="0.000000000777")
    siblings.append(sibling)
    nested_bad = raw_field(doc("llm_kall"), "extra", deep(500))
    deep_array = b"[" + nested_bad + b"," + orjson.dumps(sibling) + b"]"
    bad.append(
        Bad("array, deep element", b"acme", deep_array, [("unknown_event_type", nested_bad, 0)])
    )

    # over the size limit
    bad += [
        whole("one byte over", b"acme", sized(doc(), LIMIT + 1), "too_large"),
        whole("half a megabyte", b"acme", sized(doc(), 500_000), "too_large"),
    ]

    # wrong types
    for field, value in [
        ("input_tokens", "12"),
        ("input_tokens", 1.5),
        ("input_tokens", True),
        ("output_tokens", None),
        ("model", 5),
        ("model", ""),
        ("tenant_id", 7),
        ("event_id", ["a"]),
        ("timestamp", int(now.timestamp())),
        ("timestamp", str(int(now.timestamp()))),
        ("timestamp", "yesterday"),
        ("timestamp", iso(now).removesuffix("Z")),  # no zone
        ("cost_usd", True),
        ("cost_usd", [1]),
        ("cost_usd", "1_000"),
        ("cost_usd", "\u0663"),
        ("cost_usd", " 1"),
        ("cost_usd", "-0.1"),
        ("cost_usd", 1000.01),
        ("latency_ms", True),
        ("latency_ms", "120"),
        ("latency_ms", -1),
        ("latency_ms", 3_600_001),
        ("status", "fine"),
        ("json_valid", "yes"),
        ("abstained", 1),
        ("cache", None),
    ]:
        bad.append(one(f"{field}={value!r}", "invalid_event", error=field, **{field: value}))
    bad += [
        one("tool_name 0", "invalid_event", "tool_call", error="tool_name", tool_name=0),
        one("chunks '5'", "invalid_event", "rag_retrieval", error="chunks", chunks_retrieved="5"),
        one("top_score true", "invalid_event", "rag_retrieval", error="top_score", top_score=True),
        one("action 1", "invalid_event", "guardrail", error="action", action=1),
    ]

    # missing fields
    for event_type, field in [  # missing fields
        ("llm_call", "event_id"),
        ("llm_call", "timestamp"),
        ("llm_call", "tenant_id"),
        ("llm_call", "model"),
        ("tool_call", "tool_name"),
        ("evaluation", "score"),
        ("evaluation", "name"),
        ("feedback", "score"),
        ("guardrail", "action"),
    ]:
        value = orjson.dumps(without(event_type, field))
        bad.append(whole(f"{event_type} without {field}", b"acme", value, "invalid_event", field))
    no_type = orjson.dumps(without("llm_call", "event_type"))
    bad.append(whole("no event_type", b"acme", no_type, "unknown_event_type"))
    bad.append(whole("only a tenant", b"acme", b'{"tenant_id": "acme"}', "unknown_event_type"))
    bad.append(whole("empty object", b"acme", b"{}", "unknown_event_type"))

    # token counts: negative, absurd, cached above input
    bad += [
        one("input -1", "invalid_event", input_tokens=-1, error="input_tokens"),
        one("output -5", "invalid_event", output_tokens=-5, error="output_tokens"),
        one("cached -1", "invalid_event", cached_input_tokens=-1, error="cached_input_tokens"),
        one("input 10000001", "invalid_event", input_tokens=10_000_001, error="input_tokens"),
        one("output 10**12", "invalid_event", output_tokens=10**12, error="output_tokens"),
        whole(
            "otel input 10000001",
            b"acme",
            orjson.dumps(
                without("llm_call", "input_tokens", **{"gen_ai.usage.input_tokens": 10_000_001})
            ),
            "invalid_event",
            "input_tokens",
        ),
        one(
            "cached above input",
            "invalid_event",
            input_tokens=10,
            cached_input_tokens=11,
            error="cached_input_tokens",
        ),
    ]

    # scores out of range
    bad += [
        one("evaluation 1.5", "invalid_event", "evaluation", score=1.5, error="score"),
        one("evaluation -0.01", "invalid_event", "evaluation", score=-0.01, error="score"),
        one("evaluation '0.5'", "invalid_event", "evaluation", score="0.5", error="score"),
        one("evaluation true", "invalid_event", "evaluation", score=True, error="score"),
        one("feedback 0", "invalid_event", "feedback", score=0, error="score"),
        one("feedback 6", "invalid_event", "feedback", score=6, error="score"),
        one("feedback 5.0001", "invalid_event", "feedback", score=5.0001, error="score"),
    ]

    # unknown event types
    for value in ["llm_calls", "LLM_CALL", "", " llm_call", 5, None, ["llm_call"], {"t": 1}]:
        typed = orjson.dumps(doc() | {"event_type": value})
        bad.append(whole(f"event_type {value!r}", b"acme", typed, "unknown_event_type"))
    long_type = orjson.dumps(doc() | {"event_type": "x" * 5000})
    bad.append(whole("event_type of 5000 chars", b"acme", long_type, "unknown_event_type"))

    # timestamps out of range
    for name, ts in [
        ("2 hours ahead", iso(now + timedelta(hours=2))),
        ("3 days ahead", iso(now + timedelta(days=3))),
        ("year 9999", "9999-12-31T23:59:59Z"),
        ("year 9999 at -23:59", "9999-12-31T23:59:59-23:59"),
        ("31 days ago", iso(now - timedelta(days=31))),
        ("1970", "1970-01-01T00:00:00Z"),
        ("year 1", "0001-01-01T00:00:00+23:59"),
    ]:
        bad.append(one(f"timestamp {name}", "timestamp_out_of_range", timestamp=ts))

    # keys and tenants
    bad += [
        one("unknown tenant", "unknown_tenant", key=b"globex", tenant_id="globex"),
        one("no key", "missing_key", key=None),
        one("empty key", "missing_key", key=b""),
        one("key of another tenant", "key_mismatch", key=b"beta"),
        one("key in upper case", "key_mismatch", key=b"ACME"),
        one("key with a space", "key_mismatch", key=b"acme "),
        one("key not utf-8", "key_mismatch", key=b"\xff", tenant_id="\ufffd"),
        one("key of 600 kB", "key_mismatch", key=b"k" * 600_000),
    ]
    # an array of one tenant's events holding bad ones: each goes alone, re-encoded
    good_a = doc(cost_usd="0.000000001001")
    good_b = doc("guardrail")
    siblings += [good_a, good_b]
    elements = [good_a, doc(input_tokens=-5), good_b, doc(tenant_id="beta"), 7]
    bad.append(
        Bad(
            "array with bad elements",
            b"acme",
            orjson.dumps(elements),
            [
                ("invalid_event", orjson.dumps(elements[1]), 1),
                ("key_mismatch", orjson.dumps(elements[3]), 3),
                ("not_an_object", b"7", 4),
            ],
        )
    )
    return bad, siblings


def stored_count(worker: Any) -> int:
    if worker.proc.poll() is not None:
        raise AssertionError(f"the worker stopped:\n{worker.log.read_text()[-3000:]}")
    return worker.scalar("SELECT count() FROM events")


def good_events(count: int, now: datetime) -> list[dict[str, Any]]:
    """Valid events of both tenants, each call with its own exact cost."""
    kinds = ["llm_call"] * 4 + ["tool_call", "rag_retrieval", "evaluation", "feedback", "guardrail"]
    docs = []
    for i in range(count):
        fields: dict[str, Any] = {
            "tenant_id": ("acme", "beta")[i % 2],
            "timestamp": iso(now - timedelta(seconds=i)),
        }
        kind = kinds[i % len(kinds)]
        if kind == "llm_call":
            fields["cost_usd"] = f"0.{(i * 7919) % 10**12:012d}"
        docs.append(event(kind, **fields))
    return docs


def test_hostile_records_reach_the_dlq_and_good_events_are_all_stored(
    bootstrap, start_worker, tmp_path
):
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    worker = start_worker(LLMTEL_MAX_RECORD_BYTES=str(LIMIT), LLMTEL_POLICY=str(policy))
    now = datetime.now(UTC)
    bad, siblings = corpus(now)
    good = [(d["tenant_id"].encode(), orjson.dumps(d)) for d in good_events(len(bad) + 1, now)]
    at_limit = event(tenant_id="beta", cost_usd="0.5")  # exactly LIMIT bytes: accepted
    good.append((b"beta", sized(at_limit, LIMIT)))

    records: list[tuple[bytes | None, bytes | None]] = []
    for i, item in enumerate(bad):  # good, bad, good, bad, ..., good, good
        records += [good[i], (item.key, item.value)]
    records += good[len(bad) :]
    produce(bootstrap, worker.env["LLMTEL_EVENTS_TOPIC"], records)

    stored = [orjson.loads(value) for _, value in good] + siblings
    total = sum(Decimal(d["cost_usd"]) for d in stored if "cost_usd" in d)
    wait_for(
        lambda: stored_count(worker) >= len(stored),
        timeout=120,
        what=f"{len(stored)} good events stored",
    )
    assert stored_count(worker) == len(stored)
    assert Decimal(worker.scalar("SELECT toString(sum(cost_usd)) FROM events")) == total
    assert worker.scalar("SELECT uniqExact(event_id) FROM events") == len(stored)
    by_tenant = dict(worker.query("SELECT tenant_id, count() FROM events GROUP BY tenant_id"))
    assert set(by_tenant) == {"acme", "beta"}

    expected = Counter(
        (item.key or b"", reason, value, index)
        for item in bad
        for reason, value, index in item.expected
    )
    dlq = consume(bootstrap, worker.env["LLMTEL_DLQ_TOPIC"], sum(expected.values()), timeout=90)
    got = Counter()
    errors: dict[tuple, str] = {}
    for m in dlq:
        headers = dict(m.headers())
        index = headers.get("llmtel.element_index")
        entry = (
            m.key() or b"",
            headers["llmtel.reason"].decode(),
            m.value() or b"",
            int(index) if index is not None else None,
        )
        got[entry] += 1
        errors[entry] = headers["llmtel.error"].decode()
        assert headers["llmtel.source"].decode().startswith(worker.env["LLMTEL_EVENTS_TOPIC"] + "/")
        assert 0 < len(headers["llmtel.error"]) <= 1000
    missing, extra = expected - got, got - expected
    names = {(i.key or b"", r, v, x): i.name for i in bad for r, v, x in i.expected}
    assert not missing and not extra, (
        f"missing from the DLQ: {[(names[e], e[1]) for e in missing]}; "
        f"unexpected: {[(e[1], e[2][:80]) for e in extra]}"
    )
    for item in bad:
        if item.error:
            reason, value, index = item.expected[0]
            message = errors[(item.key or b"", reason, value, index)]
            assert item.error in message, (item.name, message)
