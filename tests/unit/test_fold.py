from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sinks.ddl import EVENTS_COLUMNS, ROLLUP_COLUMNS
from streams.fold import event_row, fold_llm_call, minute_of, rollup_rows
from streams.parse import ParseLimits, parse_record
from streams.pricing import PriceTable
from tests.factories import NOW, event, iso, record

PRICES = PriceTable.shipped()


def accepted(doc):
    items, rejected = parse_record(*record(doc), prices=PRICES, limits=ParseLimits(), now=NOW)
    assert rejected == []
    return items


def test_minute_of_truncates_event_time():
    ts = datetime(2026, 11, 22, 10, 7, 59, 999000, tzinfo=UTC)
    assert minute_of(ts.timestamp()) == int(datetime(2026, 11, 22, 10, 7, tzinfo=UTC).timestamp())


def test_calls_fold_per_tenant_model_agent_and_minute():
    rollups = {}
    base = NOW.replace(second=0) - timedelta(hours=1)
    at = lambda seconds: iso(base + timedelta(seconds=seconds))  # noqa: E731
    docs = [
        event(cost_usd="0.1", timestamp=at(1), agent_id="a"),
        event(cost_usd="0.2", timestamp=at(59), agent_id="a", status="error"),
        event(cost_usd="0.4", timestamp=at(60), agent_id="a"),
        event(cost_usd="0.8", timestamp=at(30), agent_id="b"),
    ]
    for offset, doc in enumerate(docs):
        for item in accepted(doc):
            fold_llm_call(rollups, 3, offset + 100, item)
    rows = {
        (r[0], int((r[1] - base).total_seconds()) // 60, r[3]): r
        for r in rollup_rows("src", rollups)
    }
    names = [name for name, _ in ROLLUP_COLUMNS]
    first = dict(zip(names, rows[("acme", 0, "a")], strict=True))
    assert (first["requests"], first["errors"], first["cost_usd"]) == (2, 1, Decimal("0.3"))
    assert rows[("acme", 1, "a")][names.index("cost_usd")] == Decimal("0.4")
    assert rows[("acme", 0, "b")][names.index("cost_usd")] == Decimal("0.8")
    # every row of the partition records the batch's highest offset
    assert {r[names.index("max_offset")] for r in rows.values()} == {103}


def test_event_rows_match_the_table_columns():
    for event_type in (
        "llm_call",
        "tool_call",
        "rag_retrieval",
        "evaluation",
        "feedback",
        "guardrail",
    ):
        [item] = accepted(event(event_type))
        row = event_row("src", 0, 7, item)
        assert len(row) == len(EVENTS_COLUMNS)
        assert row[5] == event_type
