"""A real Prometheus server scrapes a real worker and evaluates the shipped alert rules.

Needs the ``prometheus`` binary (Debian package ``prometheus``); skipped when it is absent.
Prometheus listens on 127.0.0.1 only and keeps its data in the test's temp dir.
"""

import json
import shutil
import subprocess
import urllib.parse
import urllib.request
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from tests.factories import event, record
from tests.integration.harness import ROOT, free_port, produce, wait_for

ALERT_RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"


def prometheus_binary() -> str:
    found = shutil.which("prometheus") or (
        "/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None
    )
    if found is None:
        pytest.skip("the prometheus binary is not installed (Debian: apt-get install prometheus)")
    return found


class Prometheus:
    """A Prometheus server on a free local port scraping ``target`` every second."""

    def __init__(self, binary: str, target: str, workdir: Path) -> None:
        self.port = free_port()
        config = {
            "global": {
                "scrape_interval": "1s",
                "scrape_timeout": "1s",
                "evaluation_interval": "1s",
            },
            "rule_files": [str(ALERT_RULES)],
            "scrape_configs": [
                {
                    "job_name": "llmtel",
                    "metrics_path": "/metrics",
                    "static_configs": [{"targets": [target]}],
                }
            ],
        }
        config_file = workdir / "prometheus.yml"
        config_file.write_text(yaml.safe_dump(config))
        self.log = workdir / "prometheus.log"
        self.proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config_file}",
                f"--storage.tsdb.path={workdir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
            cwd=workdir,
        )
        wait_for(self._ready, timeout=60, what=f"Prometheus ready (log {self.log})")

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(
                f"prometheus exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}"
            )
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.port}/-/ready", timeout=2
            ) as response:
                return response.status == 200
        except OSError:
            return False

    def api(self, path: str, **params: str) -> object:
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        with urllib.request.urlopen(url, timeout=10) as response:
            body = json.loads(response.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, promql: str) -> dict[frozenset, float]:
        """An instant vector as {labels without __name__, job, instance: value}."""
        data = self.api("query", query=promql)
        assert data["resultType"] == "vector", data
        skip = {"__name__", "job", "instance"}
        return {
            frozenset((k, v) for k, v in item["metric"].items() if k not in skip): float(
                item["value"][1]
            )
            for item in data["result"]
        }

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def prometheus(tmp_path):
    binary = prometheus_binary()
    servers = []

    def start(target: str) -> Prometheus:
        workdir = tmp_path / f"prometheus{len(servers)}"
        workdir.mkdir()
        server = Prometheus(binary, target, workdir)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def test_prometheus_scrapes_the_worker_and_evaluates_the_rules(bootstrap, start_worker, prometheus):
    worker = start_worker()
    topic = f"{start_worker.prefix}.events"
    costs = {"acme": ["0.125", "2.000000000001"], "globex": ["0.5"]}
    docs = [
        event(tenant_id=tenant, agent_id="support", model="gpt-4o", cost_usd=cost)
        for tenant, amounts in costs.items()
        for cost in amounts
    ]
    produce(bootstrap, topic, [record(doc) for doc in docs])
    wait_for(lambda: worker.scalar("SELECT count() FROM events") == len(docs), what="stored")

    server = prometheus(f"127.0.0.1:{worker.web_port}")
    expected = {
        frozenset({("agent_id", "support"), ("model", "gpt-4o"), ("tenant_id", tenant)}): float(
            sum(map(Decimal, amounts))
        )
        for tenant, amounts in costs.items()
    }
    series = wait_for(
        lambda: (got := server.query("llm_cost_usd_total")) == expected and got,
        timeout=60,
        what="llm_cost_usd_total scraped with the produced costs",
    )
    acme = frozenset({("agent_id", "support"), ("model", "gpt-4o"), ("tenant_id", "acme")})
    assert series[acme] == 2.125000000001  # $0.125 + $2.000000000001, not a float sum

    # the scrape target is healthy and the shipped rules load and evaluate without error
    assert server.query('up{job="llmtel"}') == {frozenset(): 1.0}

    def evaluated_groups():
        groups = server.api("rules")["groups"]
        return groups and all(g["lastEvaluation"][:4] != "0001" for g in groups) and groups

    groups = wait_for(evaluated_groups, what="alert rules evaluated")
    rules = {rule["name"]: rule for group in groups for rule in group["rules"]}
    assert {"LLMCostSpikeHigh", "RAGQualityDegraded"} <= set(rules)
    assert all(rule["health"] == "ok" for rule in rules.values()), rules

    # no faithfulness score yet: the gauge is absent, not 0, so RAGQualityDegraded is quiet
    assert server.query("rag_faithfulness") == {}
    assert rules["RAGQualityDegraded"]["state"] == "inactive"

    produce(
        bootstrap,
        topic,
        [
            record(event("evaluation", tenant_id="acme", name="faithfulness", score=score))
            for score in (0.5, 0.6)
        ],
    )
    wait_for(
        lambda: abs(server.query("rag_faithfulness").get(frozenset(), 0) - 0.55) < 1e-9,
        timeout=60,
        what="rag_faithfulness scraped",
    )
    # below 0.75: the rule goes pending (it fires only after its 30m `for`)
    wait_for(
        lambda: any(
            alert["labels"]["alertname"] == "RAGQualityDegraded" and alert["state"] == "pending"
            for alert in server.api("alerts")["alerts"]
        ),
        timeout=30,
        what="RAGQualityDegraded pending",
    )
