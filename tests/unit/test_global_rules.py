from streams.global_rules import GlobalState
from streams.rules import DEFAULT_RULES

SPIKE = DEFAULT_RULES["cost_spike_global"]  # > $50 over 1h, for 5m
USD = 10**12


def test_spend_across_partitions_fires_once_after_the_for_duration():
    state = GlobalState()
    fired = []
    for minute in range(20):  # $3 a minute from each of two partitions: $6 a minute in all
        for partition in (0, 1):
            assert state.fold(partition, minute, {minute * 60: 3 * USD}, now=1000.0)
            fired += state.evaluate([SPIKE], now=1000.0)
    assert [(a.rule, a.state, a.tenant_id) for a in fired] == [
        ("cost_spike_global", "firing", None)
    ]
    # over $50 once minutes 0-8 are complete (9 x $6 = $54), firing 5 minutes of event time later
    assert (fired[0].started_at.timestamp(), fired[0].event_time.timestamp()) == (540, 840)


def test_one_large_batch_per_partition_fires_as_live_traffic_would():
    state = GlobalState()
    fired = []
    for partition in (0, 1):  # a backlog: one batch holds every minute of both partitions
        state.fold(partition, 500, {m * 60: 3 * USD for m in range(20)}, now=1000.0)
    fired += state.evaluate([SPIKE], now=1000.0)
    assert [(a.started_at.timestamp(), a.event_time.timestamp()) for a in fired] == [(540, 840)]


def test_an_idle_partition_stops_holding_back_event_time():
    state = GlobalState()
    state.fold(0, 1, {0: USD}, now=1000.0)
    state.fold(1, 1, {600: USD}, now=1000.0)
    assert state.watermark(now=1000.0) == 0  # partition 0 holds event time at minute 0
    state.fold(1, 2, {1200: USD}, now=1100.0)
    assert state.watermark(now=1100.0) == 1200  # partition 0 silent for 100 s


def test_a_delta_forwarded_twice_is_folded_once():
    state = GlobalState()
    assert state.fold(3, 100, {0: 40 * USD}, now=0.0)
    assert not state.fold(3, 100, {0: 40 * USD}, now=0.0)
    assert not state.fold(3, 99, {0: 40 * USD}, now=0.0)
    assert state.minutes == {0: 40 * USD}
    restored = GlobalState.from_json(state.to_json())
    assert not restored.fold(3, 100, {0: 40 * USD}, now=0.0)
