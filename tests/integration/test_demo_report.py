"""``llmtel demo`` against a real worker: its incidents come out as alerts and degrade
commands; ``llmtel report`` then renders that worker's data as one self-contained HTML file."""

from __future__ import annotations

import io
import urllib.request
from html.parser import HTMLParser

import orjson
import pytest

from schemas import Alert, DegradeCommand
from streams.demo import run_demo, write_demo_policy
from streams.policy import load_policy
from streams.report import write_report
from tests.integration.harness import Worker, consume, unique_prefix, wait_for, worker_env

DEMO_TENANTS = {"acme", "globex", "shop", "initech", "hooli", "umbrella"}
REQUIRED_ALERTS = {
    ("budget_warning", "shop"),
    ("budget_exceeded", "shop"),
    ("hallucination_rate_high", "initech"),
    ("prompt_injection_surge", "hooli"),
    ("agent_loop", "umbrella"),
    ("slo_latency", "globex"),
}
REQUIRED_DEGRADES = {
    ("shop", "route_cheaper_model"),
    ("initech", "safe_answers"),
    ("hooli", "read_only_tools"),
    ("globex", "route_cheaper_model"),
    ("globex", "reduce_top_k"),
}


@pytest.fixture(scope="module")
def demo(bootstrap, tmp_path_factory):
    """One worker on the demo policy, and one short run of the demo against it."""
    tmp = tmp_path_factory.mktemp("demo")
    policy_path = write_demo_policy(tmp / "demo-policy.yaml")
    env = worker_env(bootstrap, tmp / "data", unique_prefix("demo"), LLMTEL_POLICY=str(policy_path))
    worker = Worker(env, tmp / "worker.log").start()
    out = io.StringIO()
    try:
        result = run_demo(
            bootstrap,
            duration=30,
            speed=1.0,
            out=out,
            topic=env["LLMTEL_EVENTS_TOPIC"],
            alerts_topic=env["LLMTEL_ALERTS_TOPIC"],
            degrade_topic=env["LLMTEL_DEGRADE_TOPIC"],
            policy=load_policy(policy_path),
            tail=120,
        )
        yield worker, result, out.getvalue(), load_policy(policy_path), tmp
    finally:
        worker.stop()


def firing_alerts(bootstrap, topic):
    alerts = [Alert.model_validate_json(m.value()) for m in consume(bootstrap, topic, 10_000, 10)]
    return {(a.rule, a.tenant_id) for a in alerts if a.state == "firing"}


def entered_modes(bootstrap, topic):
    commands = [
        DegradeCommand.model_validate_json(m.value()) for m in consume(bootstrap, topic, 10_000, 10)
    ]
    return {(c.tenant_id, c.mode) for c in commands if c.state == "enter"}


def test_demo_sends_every_event_and_prints_a_timeline(demo):
    _, result, text, _, _ = demo
    assert result.events > 500
    assert (result.sent, result.failed, result.dropped) == (result.events, 0, 0)
    assert "shop (starter $5/day, bronze): spending fast" in text
    assert "globex (enterprise $500/day, gold)" in text
    assert "expect budget_warning, budget_exceeded, degrade route_cheaper_model" in text
    assert "FIRING" in text and "DEGRADE" in text
    assert result.missing == [], text


def until_all_of(required, read, what):
    """Read again until ``read()`` holds every item of ``required``; return what it read."""
    return wait_for(lambda: got if (got := read()) >= required else None, 180, what=what)


def test_demo_incidents_reach_the_alert_and_degrade_topics(bootstrap, demo):
    worker = demo[0]
    alerts = until_all_of(
        REQUIRED_ALERTS,
        lambda: firing_alerts(bootstrap, worker.env["LLMTEL_ALERTS_TOPIC"]),
        "the demo's alerts",
    )
    assert "acme" not in {tenant for _, tenant in alerts}  # the healthy tenant stays quiet
    modes = until_all_of(
        REQUIRED_DEGRADES,
        lambda: entered_modes(bootstrap, worker.env["LLMTEL_DEGRADE_TOPIC"]),
        "the demo's degrade commands",
    )
    assert "acme" not in {tenant for tenant, _ in modes}
    stored = {tuple(r) for r in worker.query("SELECT rule, tenant_id FROM alerts FINAL")}
    assert stored >= REQUIRED_ALERTS


class _Checker(HTMLParser):
    """Start and end tags must balance (void elements aside); collects attributes."""

    VOID = {"meta", "br", "hr", "img", "input", "link", "circle", "rect", "line", "path"}

    def __init__(self):
        super().__init__()
        self.stack: list[str] = []
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str | None]] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs.extend(attrs)
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs.extend(attrs)

    def handle_endtag(self, tag):
        if tag in self.VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:]}")
            return
        self.stack.pop()


def query_worker(worker):
    """(columns, rows) through the worker's POST /query, values as JSON gives them."""

    def fetch(sql):
        request = urllib.request.Request(
            f"http://127.0.0.1:{worker.web_port}/query",
            data=orjson.dumps({"sql": sql}),
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=120) as response:
            body = orjson.loads(response.read())
        return body["columns"], body["rows"]

    return fetch


def test_report_of_the_demo_is_one_self_contained_html_file(bootstrap, demo):
    worker, _, _, policy, tmp = demo
    wait_for(
        lambda: worker.scalar("SELECT uniqExact(tenant_id) FROM sla_snapshots") >= 6,
        timeout=120,
        what="an SLA snapshot of every demo tenant",
    )
    path = write_report(query_worker(worker), policy, 7 * 86400, tmp / "out" / "report.html")
    text = path.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    checker = _Checker()
    checker.feed(text)
    checker.close()
    assert checker.errors == [] and checker.stack == []
    assert {"html", "head", "style", "body", "svg", "polyline", "table"} <= set(checker.tags)
    # nothing is loaded from anywhere: no script, no external reference of any kind
    assert "script" not in checker.tags and "link" not in checker.tags and "img" not in checker.tags
    assert "http://" not in text and "https://" not in text
    assert not [a for a, v in checker.attrs if a in ("src", "href") or (v and "url(" in v)]
    for tenant in DEMO_TENANTS:
        assert f">{tenant}<" in text, tenant
    for section in ("Spend per tenant over time", "Budget burn today", "Quality", "SLO compliance"):
        assert section in text
    assert "exceeded" in text  # shop's budget
    assert "budget_exceeded" in text and "hallucination_rate_high" in text  # alerts table
    assert 'class="missed">' in text  # globex's latency against gold
    assert text.count("<svg") >= 4
