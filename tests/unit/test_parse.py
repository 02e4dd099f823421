from datetime import timedelta
from decimal import Decimal

import orjson
import pytest

from streams import parse
from streams.parse import ParseLimits, parse_record
from streams.pricing import COST_FROM_EVENT, COST_FROM_PRICE_TABLE, PriceTable, pico_to_usd
from tests.factories import NOW, event, iso, record

PRICES = PriceTable.shipped()


def run(key, value, **limits):
    return parse_record(key, value, prices=PRICES, limits=ParseLimits(**limits), now=NOW)


def test_valid_event_is_accepted_with_its_computed_cost():
    accepted, rejected = run(
        *record(event(model="gpt-4o", input_tokens=1000, cached_input_tokens=0, output_tokens=0))
    )
    assert rejected == []
    [item] = accepted
    assert item.cost_source == COST_FROM_PRICE_TABLE
    assert pico_to_usd(item.cost_pico) == Decimal("0.0025")


def test_cost_given_by_the_producer_wins_over_the_price_table():
    [item], _ = run(*record(event(cost_usd="0.123456789012")))
    assert (item.cost_source, pico_to_usd(item.cost_pico)) == (
        COST_FROM_EVENT,
        Decimal("0.123456789012"),
    )


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"not json", parse.NOT_JSON),
        (b'{"event_id": "x", "tenant_id": "\xff"}', parse.NOT_UTF8),
        (b"42", parse.NOT_AN_OBJECT),
        (b"[]", parse.EMPTY_ARRAY),
        (b"[" * 5000 + b"]" * 5000, parse.NOT_JSON),
        (b"", parse.NOT_JSON),
    ],
)
def test_unparseable_records_are_rejected_whole_with_a_reason(value, reason):
    accepted, [rejection] = run(b"acme", value)
    assert accepted == []
    assert rejection.reason == reason
    assert rejection.payload == value
    assert rejection.index is None


def test_array_of_scalars_rejects_each_element():
    accepted, rejected = run(b"acme", b"[1, 2, 3]")
    assert accepted == []
    assert [(r.index, r.reason, r.payload) for r in rejected] == [
        (0, parse.NOT_AN_OBJECT, b"1"),
        (1, parse.NOT_AN_OBJECT, b"2"),
        (2, parse.NOT_AN_OBJECT, b"3"),
    ]


def test_oversized_record_is_rejected_before_parsing():
    value = orjson.dumps(event(comment="x" * 2000))
    _, [rejection] = run(b"acme", value, max_record_bytes=1000)
    assert rejection.reason == parse.TOO_LARGE
    assert "1000" in rejection.detail


@pytest.mark.parametrize(
    ("doc", "reason", "field"),
    [
        (event(input_tokens=-1), parse.INVALID_EVENT, "input_tokens"),
        (event(event_type="llm_kall"), parse.UNKNOWN_EVENT_TYPE, "llm_kall"),
        ({"tenant_id": "acme"}, parse.UNKNOWN_EVENT_TYPE, "None"),
        (event("evaluation", score=3), parse.INVALID_EVENT, "score"),
        (event(timestamp=iso(NOW + timedelta(days=2))), parse.TIMESTAMP_OUT_OF_RANGE, "ahead"),
        (event(timestamp=iso(NOW - timedelta(days=90))), parse.TIMESTAMP_OUT_OF_RANGE, "older"),
    ],
)
def test_invalid_events_name_the_problem(doc, reason, field):
    _, [rejection] = run(*record(doc))
    assert rejection.reason == reason
    assert field in rejection.detail


def test_record_key_must_be_the_tenant():
    _, [missing] = run(*record(event(), key=None))
    _, [other] = run(*record(event(tenant_id="acme"), key="globex"))
    assert missing.reason == parse.MISSING_KEY
    assert other.reason == parse.KEY_MISMATCH


def test_allow_list_refuses_unknown_tenants():
    accepted, rejected = run(*record(event(tenant_id="acme")), allowed_tenants=frozenset({"acme"}))
    assert (len(accepted), rejected) == (1, [])
    _, [rejection] = run(*record(event(tenant_id="evil")), allowed_tenants=frozenset({"acme"}))
    assert rejection.reason == parse.UNKNOWN_TENANT


def test_bad_element_of_an_array_is_rejected_alone():
    good1, bad, good2 = event(), event(score=9, event_type="feedback"), event("guardrail")
    accepted, [rejection] = run(*record([good1, bad, good2]))
    assert [a.index for a in accepted] == [0, 2]
    assert rejection.index == 1
    assert orjson.loads(rejection.payload) == bad
