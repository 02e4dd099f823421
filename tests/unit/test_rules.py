import pytest

from streams.durations import format_duration, parse_duration
from streams.rules import DEFAULT_RULES, RuleSpec, step

ERRORS = DEFAULT_RULES["error_rate_high"]  # > 0.10 over 5m for 5m, at least 20 calls
FAITH = DEFAULT_RULES["faithfulness_low"]  # < 0.75


@pytest.mark.parametrize(("value", "breached"), [(0.0999, False), (0.10, False), (0.1001, True)])
def test_greater_than_rules_breach_only_above_the_threshold(value, breached):
    assert ERRORS.breached(value) is breached


@pytest.mark.parametrize(("value", "breached"), [(0.7499, True), (0.75, False), (0.7501, False)])
def test_less_than_rules_breach_only_below_the_threshold(value, breached):
    assert FAITH.breached(value) is breached


def test_condition_must_hold_for_the_for_duration_before_firing():
    state, t = step(ERRORS, None, 0.2, 100, at=1000, key="acme")
    assert (state.status, t) == ("pending", None)
    state, t = step(ERRORS, state, 0.2, 100, at=1000 + 299, key="acme")
    assert (state.status, t) == ("pending", None)
    state, t = step(ERRORS, state, 0.2, 100, at=1000 + 300, key="acme")
    assert state.status == "firing"
    assert (t.state, t.alert_id, t.started_at, t.at) == (
        "firing",
        "error_rate_high:acme:1000",
        1000,
        1300,
    )


def test_a_dip_during_pending_restarts_the_for_duration():
    state, _ = step(ERRORS, None, 0.2, 100, at=1000, key="acme")
    state, _ = step(ERRORS, state, 0.05, 100, at=1100, key="acme")
    assert state is None
    state, _ = step(ERRORS, state, 0.2, 100, at=1200, key="acme")
    state, t = step(ERRORS, state, 0.2, 100, at=1450, key="acme")
    assert (state.status, t) == ("pending", None)


def test_firing_rule_fires_once_and_resolves_once_past_the_hysteresis():
    rule = RuleSpec("r", "error_rate", ">", 0.10, 300, 0, hysteresis=0.1)
    state, t = step(rule, None, 0.2, 50, at=0, key="k")
    assert t.state == "firing"
    state, t = step(rule, state, 0.3, 50, at=60, key="k")
    assert t is None  # still firing: no second alert
    state, t = step(rule, state, 0.095, 50, at=120, key="k")
    assert t is None  # under the threshold but inside the hysteresis band
    state, t = step(rule, state, 0.09, 50, at=180, key="k")
    assert (state, t.state, t.alert_id) == (None, "resolved", "r:k:0")


def test_too_few_samples_keep_a_rule_silent():
    state, t = step(ERRORS, None, 0.9, 19, at=0, key="acme")
    assert (state, t) == (None, None)
    zero_for = RuleSpec("r", "error_rate", ">", 0.1, 300, 0, min_samples=20)
    state, t = step(zero_for, None, 0.9, 20, at=0, key="acme")
    assert t.state == "firing"
    state, t = step(zero_for, state, 0.9, 3, at=60, key="acme")
    assert t.state == "resolved"  # the signal went away


def test_defaults_match_the_runbook():
    spec = {name: (r.op, r.threshold, r.window, r.for_) for name, r in DEFAULT_RULES.items()}
    assert spec["cost_spike"] == (">", 50, 3600, 300)
    assert spec["latency_p95_high"] == (">", 5000, 300, 600)
    assert spec["hallucination_rate_high"] == (">", 0.15, 3600, 900)
    assert spec["user_satisfaction_low"] == ("<", 3.5, 86400, 0)
    assert DEFAULT_RULES["latency_p95_high"].severity == "warning"


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30), ("5m", 300), ("1h", 3600), ("1d", 86400), (90, 90)]
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds
    assert parse_duration(format_duration(seconds)) == seconds


@pytest.mark.parametrize("bad", ["5 minutes", "-1m", "", True, -3])
def test_bad_durations_are_refused(bad):
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_every_rule_links_a_runbook_that_exists():
    from pathlib import Path

    from streams.monitor import BUDGET_RUNBOOK

    root = Path(__file__).resolve().parents[2]
    for link in [r.runbook for r in DEFAULT_RULES.values()] + [BUDGET_RUNBOOK]:
        path, _, anchor = link.partition("#")
        text = (root / path).read_text()
        if anchor:
            headings = {
                line.lstrip("#").strip().lower().replace(" ", "-")
                for line in text.splitlines()
                if line.startswith("#")
            }
            assert anchor in headings, link
