"""The tenant-state changelog: created co-partitioned with the events, read back per partition."""

import asyncio

import orjson
import pytest

from streams.errors import ConfigError
from streams.ingest import read_states
from streams.kafka import ensure_state_topic, ensure_topics, make_producer, partition_count
from tests.integration.harness import unique_prefix


def test_state_topic_takes_the_partition_count_of_the_events_topic(bootstrap):
    prefix = unique_prefix("states")
    ensure_topics(bootstrap, [f"{prefix}.events"], 6)
    ensure_state_topic(bootstrap, f"{prefix}.events", f"{prefix}-states", partitions=8)
    assert partition_count(bootstrap, f"{prefix}-states") == 6


def test_a_state_topic_with_fewer_partitions_fails_at_start(bootstrap):
    prefix = unique_prefix("states")
    ensure_topics(bootstrap, [f"{prefix}.events"], 4)
    ensure_topics(bootstrap, [f"{prefix}-states"], 2)
    with pytest.raises(ConfigError, match=r"has 2 partitions but .*\.events has 4"):
        ensure_state_topic(bootstrap, f"{prefix}.events", f"{prefix}-states", partitions=4)


def test_read_states_keeps_the_last_value_per_tenant_of_the_partitions_asked(bootstrap):
    topic = f"{unique_prefix('states')}-states"
    ensure_topics(bootstrap, [topic], 3)
    producer = make_producer(bootstrap)
    writes = [
        (0, b"a", {"offset": 1}),
        (0, b"b", {"offset": 2}),
        (0, b"a", {"offset": 7}),  # a newer value of a
        (1, b"c", {"offset": 3}),
        (1, b"c", None),  # a tombstone: c is gone
        (2, b"d", {"offset": 4}),
    ]
    for partition, key, value in writes:
        body = None if value is None else orjson.dumps(value)
        producer.produce(topic, body, key, partition=partition)
    assert producer.flush(30) == 0

    found = asyncio.run(read_states(bootstrap, topic, {0, 1}, {}))
    assert found == {0: {"a": {"offset": 7}, "b": {"offset": 2}}, 1: {}}
    assert asyncio.run(read_states(bootstrap, topic, set(), {})) == {}
