"""The SLI query against the real ClickHouse engine (chDB in this process)."""

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from sinks.clickhouse import ClickHouseSink
from streams.parse import ParseLimits
from streams.pipeline import BatchProcessor, SourceRecord
from streams.pricing import PriceTable
from streams.slo import BURN_WINDOWS, sli_row
from tests.factories import event, iso, record

END = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)


@pytest.fixture
def sink(tmp_path):
    sink = ClickHouseSink(f"chdb://{tmp_path}/ch")
    sink.ensure_tables()
    yield sink
    sink.close()


def store(sink, docs):
    async def call(fn, *args):
        return fn(*args)

    async def dlq(*_):
        raise AssertionError("nothing here is invalid")

    processor = BatchProcessor(
        source="c/llm.events",
        topic="llm.events",
        prices=PriceTable.shipped(),
        limits=ParseLimits(),
        sink_call=call,
        dlq_publish=dlq,
    )
    records = [SourceRecord(0, i, *record(d)) for i, d in enumerate(docs)]
    asyncio.run(processor.process(sink, records))


def rows(sink, **kw):
    args = dict(
        evaluation_window=1800,
        burn_windows=BURN_WINDOWS,
        budget_window=30 * 86400,
        exclude_provider_errors=False,
        maintenance=[],
    )
    args.update(kw)
    return {r.tenant_id: r for r in map(sli_row, sink.sli_rows([0], **args))}


def test_slis_over_the_window_ending_at_the_tenants_newest_event(sink):
    docs = [
        event(
            tenant_id="t",
            timestamp=iso(END - timedelta(seconds=i)),
            latency_ms=float(i + 1),
            cost_usd="0.001",
            json_valid=i % 10 != 0,
        )
        for i in range(100)
    ]
    docs += [
        event(
            tenant_id="t", timestamp=iso(END - timedelta(hours=2)), latency_ms=99999, status="error"
        )
    ]  # outside 30m
    docs += [
        event(
            tenant_id="t",
            timestamp=iso(END - timedelta(minutes=5)),
            status="provider_error",
            latency_ms=10,
        )
    ]
    docs += [
        event("evaluation", tenant_id="t", timestamp=iso(END), name="groundedness", score=s)
        for s in (0.5, 0.7, 0.9)
    ]
    docs += [
        event("tool_call", tenant_id="t", timestamp=iso(END), status=s)
        for s in ("ok", "ok", "error")
    ]
    store(sink, docs)
    r = rows(sink)["t"]
    assert (r.calls, r.ok, r.latency_n) == (101, 100, 101)
    assert (
        r.latency_p95 == 95.0
    )  # exact: element floor(0.95 * 101) of 1..100 ms plus one 10 ms call
    assert (r.json_reported, r.json_valid) == (100, 90)  # the provider error reports none
    assert r.groundedness_sum / r.groundedness_n == pytest.approx(0.7)
    assert (r.tool_calls, r.tool_ok, r.top_model) == (3, 2, "gpt-4o-mini")
    assert (r.budget_calls, r.budget_bad) == (102, 2)
    assert r.latest == END.timestamp()

    excluded = rows(sink, exclude_provider_errors=True)["t"]
    assert (excluded.calls, excluded.ok, excluded.budget_bad) == (100, 100, 1)


def test_maintenance_windows_are_left_out(sink):
    store(
        sink,
        [
            event(tenant_id=t, timestamp=iso(END - timedelta(minutes=m)), status="error")
            for t in ("a", "b")
            for m in range(10)
        ],
    )
    window = (END - timedelta(minutes=5, seconds=30), END + timedelta(seconds=1), ["a"])
    result = rows(sink, maintenance=[window])
    assert result["a"].calls == 4  # minutes 6-9 only
    assert result["b"].calls == 10  # the window names tenant a only
