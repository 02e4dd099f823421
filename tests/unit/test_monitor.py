"""The monitor on real parsed events, in event time, without Kafka."""

import random
from datetime import UTC, datetime, timedelta

from streams.monitor import Monitor, TenantState
from streams.parse import ParseLimits, parse_record
from streams.policy import Policy
from streams.pricing import PriceTable
from streams.windows import TenantWindow, bucket_value, latency_bucket, quantile
from tests.factories import event, iso, record

PRICES = PriceTable.shipped()
DAY_START = datetime(2026, 11, 20, tzinfo=UTC)


class Feed:
    """Feeds events to a monitor in offset order, as the worker does per batch."""

    def __init__(self, policy=None):
        self.monitor = Monitor(policy or Policy(), PRICES)
        self.offset = 0
        self.stored = {}
        self.alerts, self.degrades = [], []

    def send(self, *docs, now=None):
        batch = []
        for doc in docs:
            items, rejected = parse_record(
                *record(doc),
                prices=PRICES,
                limits=ParseLimits(max_event_age=timedelta(days=3650)),
                now=now or datetime.now(UTC),
            )
            assert rejected == []
            batch.extend((0, self.offset, item) for item in items)
            self.offset += 1
        out = self.monitor.apply_batch(batch, self.stored.get)
        for tenant, state in out.changed.items():
            self.stored[tenant] = state.to_json()
        self.alerts += out.alerts
        self.degrades += out.degrades
        return out


def call(tenant, at, cost="0.01", **fields):
    return event(tenant_id=tenant, timestamp=iso(at), cost_usd=cost, **fields)


def test_starter_tenant_over_4_then_5_dollars_gets_one_warning_one_exceeded_one_degrade():
    feed = Feed()
    t = DAY_START + timedelta(hours=9)
    feed.send(call("shop", t, "3.90"))
    feed.send(call("shop", t + timedelta(minutes=1), "0.20"))  # $4.10: warning
    feed.send(
        call("shop", t + timedelta(minutes=2), "0.20"),
        call("shop", t + timedelta(minutes=3), "0.20"),
    )
    feed.send(call("shop", t + timedelta(minutes=4), "0.60", model="gpt-4o"))  # $5.10: exceeded
    feed.send(call("shop", t + timedelta(minutes=5), "1.00"))
    assert [(a.rule, a.state) for a in feed.alerts] == [
        ("budget_warning", "firing"),
        ("budget_exceeded", "firing"),
    ]
    warning, exceeded = feed.alerts
    assert (warning.value, warning.threshold) == (4.10, 4.0)
    assert (exceeded.value, exceeded.threshold, exceeded.severity) == (5.10, 5.0, "critical")
    [enter] = feed.degrades
    assert (enter.mode, enter.state, enter.reason) == (
        "route_cheaper_model",
        "enter",
        "budget_exceeded",
    )
    assert enter.recommendation.startswith("route gpt-4o to ")

    # the next UTC day resolves both alerts and exits the degraded mode, once
    feed.send(call("shop", DAY_START + timedelta(days=1, minutes=5), "0.01"))
    assert [(a.rule, a.state) for a in feed.alerts[2:]] == [
        ("budget_warning", "resolved"),
        ("budget_exceeded", "resolved"),
    ]
    assert (
        feed.alerts[2].alert_id == warning.alert_id and feed.alerts[3].alert_id == exceeded.alert_id
    )
    assert [(d.mode, d.state) for d in feed.degrades[1:]] == [("route_cheaper_model", "exit")]
    assert feed.degrades[1].event_time == DAY_START + timedelta(days=1)


def test_one_call_jumping_past_both_levels_fires_both_and_the_plans_modes():
    policy = Policy.model_validate(
        {
            "tenants": {"big": {"plan": "pro"}},
            "plans": {
                "starter": {"daily_budget_usd": 5},
                "pro": {"daily_budget_usd": 50, "on_exceeded": ["route_cheaper_model", "block"]},
            },
        }
    )
    feed = Feed(policy)
    feed.send(call("big", DAY_START + timedelta(hours=1), "60"))
    assert [a.rule for a in feed.alerts] == ["budget_warning", "budget_exceeded"]
    assert [d.mode for d in feed.degrades] == ["route_cheaper_model", "block"]


def test_budget_state_survives_a_restart_of_the_monitor():
    feed = Feed()
    t = DAY_START + timedelta(hours=2)
    feed.send(call("shop", t, "4.50"))
    restarted = Feed()
    restarted.stored, restarted.offset = feed.stored, feed.offset
    restarted.send(call("shop", t + timedelta(minutes=1), "0.60"))
    assert [a.rule for a in feed.alerts] == ["budget_warning"]
    assert [a.rule for a in restarted.alerts] == ["budget_exceeded"]
    assert TenantState.from_json(restarted.stored["shop"]).budget.spend_pico == 5_100_000_000_000


def test_replayed_offsets_are_not_applied_twice():
    feed = Feed()
    t = DAY_START + timedelta(hours=2)
    feed.send(call("shop", t, "3"))
    feed.offset = 0  # the same record read again after a crash
    feed.send(call("shop", t, "3"))
    assert TenantState.from_json(feed.stored["shop"]).budget.spend_pico == 3 * 10**12
    assert feed.alerts == []


def test_steady_clean_traffic_raises_nothing():
    feed = Feed()
    start = DAY_START + timedelta(hours=8)
    for minute in range(90):
        at = start + timedelta(minutes=minute)
        feed.send(
            *[
                call(
                    "calm",
                    at + timedelta(seconds=s),
                    "0.001",
                    latency_ms=400,
                    input_tokens=1000,
                    output_tokens=400,
                    session_id=f"s{minute}",
                )
                for s in range(0, 60, 6)
            ],
            event(
                "evaluation", tenant_id="calm", timestamp=iso(at), name="hallucination", score=0.05
            ),
            event(
                "evaluation", tenant_id="calm", timestamp=iso(at), name="faithfulness", score=0.93
            ),
            event("feedback", tenant_id="calm", timestamp=iso(at), score=5),
        )
    assert feed.alerts == [] and feed.degrades == []


def test_hallucination_surge_over_40_minutes_fires_once_and_resolves_once():
    feed = Feed()
    start = DAY_START + timedelta(hours=10)

    def minute(i, hallucinated):
        at = start + timedelta(minutes=i)
        return [
            event(
                "evaluation",
                tenant_id="rag",
                timestamp=iso(at + timedelta(seconds=s)),
                name="hallucination",
                score=0.9 if s < hallucinated * 6 else 0.1,
            )
            for s in range(0, 60, 6)
        ]

    for i in range(30):
        feed.send(*minute(i, hallucinated=0))  # 0 %
    for i in range(30, 70):
        feed.send(*minute(i, hallucinated=5))  # 50 % for 40 minutes
    for i in range(70, 200):
        feed.send(*minute(i, hallucinated=0))
    rules = [(a.rule, a.state) for a in feed.alerts]
    assert rules == [("hallucination_rate_high", "firing"), ("hallucination_rate_high", "resolved")]
    firing, resolved = feed.alerts
    assert firing.alert_id == resolved.alert_id
    # pending once the hourly rate passes 15 %, firing 15 minutes of event time later
    assert firing.event_time - firing.started_at == timedelta(minutes=15)
    assert firing.started_at > start + timedelta(minutes=30)
    assert [(d.mode, d.state, d.reason) for d in feed.degrades] == [
        ("safe_answers", "enter", "hallucination_rate_high"),
        ("safe_answers", "exit", "hallucination_rate_high"),
    ]


def test_out_of_order_events_within_the_lateness_land_in_their_minute():
    feed = Feed()
    t = DAY_START + timedelta(hours=3)
    feed.send(call("late", t + timedelta(minutes=4), latency_ms=100))
    feed.send(call("late", t + timedelta(minutes=1), latency_ms=200))  # 3 minutes late: inside 5m
    out = feed.send(call("late", t - timedelta(minutes=10), latency_ms=300))  # too late for windows
    window = feed.monitor.windows[0]["late"]
    minute1 = int((t + timedelta(minutes=1)).timestamp())
    assert window.minutes[minute1].calls == 1
    assert out.late_events == 1
    assert sum(agg.calls for agg in window.minutes.values()) == 2


def test_p95_from_log_buckets_is_within_one_percent():
    values = list(range(1, 2001))
    hist = {}
    for v in values:
        b = latency_bucket(v)
        hist[b] = hist.get(b, 0) + 1
    exact = sorted(values)[int(0.95 * (len(values) - 1))]
    assert abs(quantile(hist, 0.95) - exact) / exact < 0.01


def test_quantile_of_a_histogram_is_the_sample_at_its_rank():
    rng = random.Random(5)
    for _ in range(300):
        samples = sorted(rng.choice([1, 3, 40, 41, 900]) for _ in range(rng.randrange(1, 60)))
        hist = {}
        for v in samples:
            hist[latency_bucket(v)] = hist.get(latency_bucket(v), 0) + 1
        for q in (0.0, 0.5, 0.95, 0.99, 1.0):
            expected = samples[int(q * (len(samples) - 1))]
            assert quantile(hist, q) == bucket_value(latency_bucket(expected))
    assert quantile({}, 0.95) is None


def test_session_rules_see_the_busiest_session():
    window = TenantWindow()
    t = DAY_START + timedelta(hours=4)
    for i in range(101):
        [item] = parse_record(
            *record(call("bot", t + timedelta(seconds=i), "0.001", session_id="loop")),
            prices=PRICES,
            limits=ParseLimits(max_event_age=timedelta(days=3650)),
            now=datetime.now(UTC),
        )[0]
        window.add(item.event, item.cost_pico, item.ts)
    value, samples, labels = window.summary(window.watermark, 3600).measure("max_session_calls")
    assert (value, samples, labels) == (101, 1, {"session_id": "loop"})


def test_every_element_of_an_array_record_counts_in_budgets_and_windows():
    monitor = Monitor(Policy(), PRICES)
    docs = [call("shop", DAY_START + timedelta(hours=1, seconds=i), "3") for i in range(2)]
    items, _ = parse_record(
        *record(docs),
        prices=PRICES,
        limits=ParseLimits(max_event_age=timedelta(days=3650)),
        now=datetime.now(UTC),
    )
    out = monitor.apply_batch([(0, 7, item) for item in items], lambda t: None)
    assert [a.rule for a in out.alerts] == ["budget_warning", "budget_exceeded"]  # $6 of $5
    state = out.changed["shop"]
    assert (state.budget.spend_pico, state.offset, state.index) == (6 * 10**12, 7, 1)
    assert sum(agg.calls for agg in monitor.windows[0]["shop"].minutes.values()) == 2
    again = monitor.apply_batch([(0, 7, item) for item in items], lambda t: None)  # replayed
    assert again.alerts == [] and state.budget.spend_pico == 6 * 10**12


def test_buckets_keep_what_the_longest_window_reading_them_reaches():
    default = Monitor(Policy(), PRICES)
    # 1 h rules + 5 min lateness + the minute in progress; latencies only for the 5 min p95
    assert default.retention == (3600 + 300 + 60, 300 + 300 + 60, 3600 + 300 + 60)
    slower = Policy.model_validate(
        {"allowed_lateness": "1m", "rules": {"latency_p95_high": {"window": "30m"}}}
    )
    assert Monitor(slower, PRICES).retention == (3600 + 120, 1800 + 120, 3600 + 120)


class Unskipping(Monitor):
    """Evaluates every quiet tenant at every batch, as the monitor did before it skipped."""

    def _settled(self, state, window, at):
        return False


def test_skipping_a_quiet_tenant_in_the_same_minute_changes_no_alert():
    # "flaky" fails for 3 minutes, then goes quiet while its alert is pending; "steady" keeps
    # its partition's watermark moving, one event per batch, so "flaky" is ticked at every
    # batch while it is active: its alert fires and resolves in ticks
    feeds = {"skipping": Feed(), "unskipping": Feed()}
    feeds["unskipping"].monitor = Unskipping(Policy(), PRICES)
    evaluations = {}
    for name, feed in feeds.items():
        counted = feed.monitor._evaluate
        evaluations[name] = 0

        def counting(*args, _counted=counted, _name=name):
            evaluations[_name] += 1
            return _counted(*args)

        feed.monitor._evaluate = counting
        start = DAY_START + timedelta(hours=9)
        for second in range(0, 40 * 60, 7):
            at = start + timedelta(seconds=second)
            docs = [call("steady", at, "0.001", status="ok")]
            if second < 3 * 60:
                docs += [
                    call("flaky", at + timedelta(seconds=s), "0.001", status="error")
                    for s in range(3)
                ]
            for doc in docs:
                feed.send(doc)
    skipping, unskipping = feeds["skipping"], feeds["unskipping"]
    rules = [(a.rule, a.state, a.tenant_id) for a in skipping.alerts]
    assert ("error_rate_high", "firing", "flaky") in rules
    assert ("error_rate_high", "resolved", "flaky") in rules
    assert [a.model_dump() for a in skipping.alerts] == [a.model_dump() for a in unskipping.alerts]
    assert skipping.degrades == unskipping.degrades
    assert skipping.stored == unskipping.stored
    assert evaluations["skipping"] < evaluations["unskipping"]
