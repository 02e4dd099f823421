"""BatchProcessor against the real ClickHouse engine (chDB in this process)."""

import asyncio
from decimal import Decimal

import pytest

from sinks.clickhouse import ClickHouseSink
from sinks.ddl import EVENTS_MERGE_SETTINGS, create_statements
from sinks.errors import SinkError
from streams.parse import ParseLimits
from streams.pipeline import BatchProcessor, SourceRecord
from streams.pricing import PriceTable
from tests.factories import NOW, event, record

PRICES = PriceTable.shipped()


@pytest.fixture
def sink(tmp_path):
    sink = ClickHouseSink(f"chdb://{tmp_path}/ch")
    sink.ensure_tables()
    yield sink
    sink.close()


class FlakySink:
    """The real sink, with the next inserts into one table failing."""

    def __init__(self, sink, table, failures, retriable):
        self.sink, self.table, self.failures, self.retriable = sink, table, failures, retriable

    def applied_offsets(self, source):
        return self.sink.applied_offsets(source)

    def recent_event_ids(self, *args):
        return self.sink.recent_event_ids(*args)

    def insert(self, table, *args):
        if table == self.table and self.failures > 0:
            self.failures -= 1
            error = SinkError(f"injected failure on {table}")
            error.retriable = self.retriable
            raise error
        return self.sink.insert(table, *args)


def make_processor(dlq):
    async def sink_call(fn, *args):
        return fn(*args)

    async def publish(key, value, headers):
        dlq.append((key, value, dict(headers)))

    return BatchProcessor(
        source="cluster-1/llm.events",
        topic="llm.events",
        prices=PRICES,
        limits=ParseLimits(),
        sink_call=sink_call,
        dlq_publish=publish,
        clock=lambda: NOW,
        retry_delay=0.01,
    )


def records(n, partition=0, start=0):
    out = []
    for i in range(n):
        key, value = record(event(tenant_id=f"t{i % 3}", cost_usd=f"0.00{i % 10}1"))
        out.append(SourceRecord(partition, start + i, key, value))
    return out


def totals(sink):
    [(events, event_cost)] = sink.query("SELECT count(), sum(cost_usd) FROM events")[2]
    [(requests, rollup_cost)] = sink.query("SELECT sum(requests), sum(cost_usd) FROM rollups_1m")[2]
    return events, event_cost, requests, rollup_cost


def expected_cost(recs):
    import orjson

    return sum(Decimal(orjson.loads(r.value)["cost_usd"]) for r in recs)


def test_batch_is_stored_exactly_and_bad_records_reach_the_dlq(sink):
    dlq = []
    recs = [*records(50), SourceRecord(0, 50, b"t1", b"{oops")]
    result = asyncio.run(make_processor(dlq).process(sink, recs))
    assert (result.consumed, len(result.accepted), len(result.rejected)) == (51, 50, 1)
    assert totals(sink) == (50, expected_cost(recs[:50]), 50, expected_cost(recs[:50]))
    [(key, value, headers)] = dlq
    assert (key, value, headers["llmtel.reason"]) == (b"t1", b"{oops", b"not_json")
    assert headers["llmtel.source"] == b"llm.events/0/50"


def test_replay_after_restart_stores_nothing_twice(sink):
    first = records(40)
    asyncio.run(make_processor([]).process(sink, first))
    # A restarted worker re-reads from an older committed offset: overlap plus new records.
    replay = first[10:] + records(20, start=40)
    result = asyncio.run(make_processor([]).process(sink, replay))
    assert result.skipped == 30
    everything = first + records(20, start=40)
    assert totals(sink) == (60, expected_cost(everything), 60, expected_cost(everything))


def test_crash_between_events_and_rollups_is_repaired_on_replay(sink):
    recs = records(30)
    broken = FlakySink(sink, "rollups_1m", failures=1, retriable=False)
    with pytest.raises(SinkError):
        asyncio.run(make_processor([]).process(broken, recs))
    assert totals(sink)[0] == 30 and totals(sink)[2] == 0  # events stored, rollups not
    asyncio.run(make_processor([]).process(sink, recs))
    assert totals(sink) == (30, expected_cost(recs), 30, expected_cost(recs))


def test_retriable_failures_are_retried_without_duplicates(sink):
    recs = records(25, partition=2)
    flaky = FlakySink(sink, "events", failures=3, retriable=True)
    asyncio.run(make_processor([]).process(flaky, recs))
    assert totals(sink) == (25, expected_cost(recs), 25, expected_cost(recs))
    assert sink.applied_offsets("cluster-1/llm.events") == {
        "events": {2: 24},
        "rollups_1m": {2: 24},
    }


def test_offsets_of_another_broker_incarnation_do_not_skip_records(sink):
    asyncio.run(make_processor([]).process(sink, records(10)))
    other = make_processor([])
    other.source = "cluster-2/llm.events"  # a fresh embedded broker starts again at offset 0
    result = asyncio.run(other.process(sink, records(10)))
    assert result.skipped == 0
    assert totals(sink)[0] == 20


def test_a_resent_event_is_counted_once_even_after_a_restart(sink):
    doc = event(tenant_id="t1", cost_usd="0.5")
    key, value = record(doc)
    first = [
        SourceRecord(0, 0, key, value),
        SourceRecord(0, 1, *record(event(tenant_id="t1", cost_usd="0.25"))),
    ]
    result = asyncio.run(make_processor([]).process(sink, [*first, SourceRecord(0, 2, key, value)]))
    assert (len(result.accepted), result.duplicates) == (2, 1)
    restarted = make_processor([])  # rebuilds its resend index from what ClickHouse holds
    result = asyncio.run(
        restarted.process(sink, [SourceRecord(0, 0, key, value), SourceRecord(0, 3, key, value)])
    )
    assert result.duplicates == 1  # offset 3 is a resend; offset 0 is the same record read again
    assert totals(sink) == (2, Decimal("0.75"), 2, Decimal("0.75"))


@pytest.mark.parametrize("store_content", [False, True])
def test_prompts_are_stored_only_when_enabled_and_then_redacted(sink, store_content):
    processor = make_processor([])
    processor.store_content = store_content
    doc = event(
        tenant_id="t1",
        prompt="reach me at bob@corp.example, key sk-abcdefghijklmnopqrstu",
        completion="ok",
    )
    asyncio.run(processor.process(sink, [SourceRecord(0, 0, *record(doc))]))
    [(prompt, completion)] = sink.query("SELECT prompt, completion FROM events")[2]
    if store_content:
        assert (prompt, completion) == ("reach me at [EMAIL], key [API_KEY]", "ok")
    else:
        assert (prompt, completion) == ("", "")


def test_a_record_delivered_twice_in_one_batch_is_stored_once(sink):
    recs = records(5)
    result = asyncio.run(make_processor([]).process(sink, [*recs, recs[2]]))
    assert len(result.accepted) == 5
    assert totals(sink) == (5, expected_cost(recs), 5, expected_cost(recs))


def test_events_merge_column_by_column_on_new_and_older_tables(tmp_path):
    sink = ClickHouseSink(f"chdb://{tmp_path}/ch")
    try:
        # the events table as an earlier llmtel created it: merges with every column open
        sink.command(create_statements()[0].replace(", " + EVENTS_MERGE_SETTINGS, ""))

        def engine():
            sql = "SELECT engine_full FROM system.tables WHERE name = 'events'"
            return sink.query(sql)[2][0][0]

        assert "vertical_merge_algorithm_min_rows_to_activate" not in engine()
        sink.ensure_tables()
        assert "vertical_merge_algorithm_min_rows_to_activate = 1" in engine()
        assert "vertical_merge_algorithm_min_columns_to_activate = 1" in engine()

        # batches stored as parts, then merged column by column: nothing lost, cost exact
        recs = records(90)
        for start in range(0, 90, 30):
            asyncio.run(make_processor([]).process(sink, recs[start : start + 30]))
        sink.command("OPTIMIZE TABLE events FINAL")
        parts = "SELECT count() FROM system.parts WHERE table = 'events' AND active"
        assert sink.query(parts)[2] == [(1,)]
        assert totals(sink) == (90, expected_cost(recs), 90, expected_cost(recs))
    finally:
        sink.close()
