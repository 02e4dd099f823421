"""Checks of the deployment files: Prometheus rules, Grafana dashboard, runbooks, compose.

External tools (promtool, docker-compose) are optional: tests that need one are skipped
with the reason when it is not on PATH.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
ALERTS_TEST = DEPLOY / "prometheus" / "alerts_test.yml"
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "llmtel.json"
DATASOURCES = DEPLOY / "grafana" / "provisioning" / "datasources" / "datasources.yml"
RUNBOOKS = DEPLOY / "runbooks"
COMPOSE = REPO / "docker-compose.yml"

EXPECTED_ALERTS = {
    # name: (group, severity, for)
    "LLMCostSpikeHigh": ("ai_critical", "critical", "5m"),
    "AgentErrorRateHigh": ("ai_critical", "critical", "5m"),
    "HallucinationRateHigh": ("ai_critical", "critical", "15m"),
    "PromptInjectionSurge": ("ai_critical", "critical", "0m"),
    "LLMLatencyHigh": ("ai_quality", "warning", "10m"),
    "RAGQualityDegraded": ("ai_quality", "warning", "30m"),
}

EXPECTED_ROWS = {
    "Health": ["API p95", "Error rate", "Active sessions", "LLM availability"],
    "Costs": ["Daily spend by model", "Cost per tenant", "Cache hit rate", "Tokens today"],
    "AI quality": [
        "Hallucination rate",
        "User satisfaction",
        "RAG faithfulness",
        "Prompt injections blocked",
    ],
    "Operations": [
        "Active agents",
        "Tool executions per minute",
        "Alerts firing",
        "Degraded tenants",
        "Consumer lag",
    ],
}
CLICKHOUSE_PANELS = {"Daily spend by model", "Cost per tenant"}


def _run(cmd: list[str], cwd: Path = REPO, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def _require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} is not on PATH (Debian: apt-get install prometheus docker-compose)")
    return path


def _alert_rules() -> list[tuple[str, dict]]:
    doc = yaml.safe_load(ALERTS.read_text())
    return [
        (group["name"], rule)
        for group in doc["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]


def _dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def _rows(dashboard: dict) -> dict[str, list[dict]]:
    """Panels under each row, in layout order (a panel belongs to the row above it)."""
    rows: dict[str, list[dict]] = {}
    current: str | None = None
    ordered = sorted(dashboard["panels"], key=lambda p: (p["gridPos"]["y"], p["gridPos"]["x"]))
    for panel in ordered:
        if panel["type"] == "row":
            current = panel["title"]
            rows[current] = list(panel.get("panels", []))  # collapsed rows nest panels
        else:
            assert current is not None, f"panel {panel.get('title')!r} is above every row"
            rows[current].append(panel)
    return rows


# --------------------------------------------------------------- Prometheus


def test_promtool_check_rules():
    promtool = _require("promtool")
    result = _run([promtool, "check", "rules", str(ALERTS)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(EXPECTED_ALERTS)} rules found" in result.stdout


def test_promtool_test_rules():
    promtool = _require("promtool")
    result = _run([promtool, "test", "rules", str(ALERTS_TEST)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_check_config():
    promtool = _require("promtool")
    result = _run([promtool, "check", "config", str(PROMETHEUS_CONFIG)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_alerts_match_the_spec():
    rules = _alert_rules()
    found = {rule["alert"]: (group, rule) for group, rule in rules}
    assert len(rules) == len(found), "duplicate alert names"
    assert set(found) == set(EXPECTED_ALERTS)
    for name, (group, severity, for_) in EXPECTED_ALERTS.items():
        got_group, rule = found[name]
        assert got_group == group, name
        assert rule["labels"]["severity"] == severity, name
        assert rule["for"] == for_, name
        for key in ("summary", "description", "runbook_url"):
            assert rule["annotations"].get(key), f"{name} has no {key} annotation"


def test_every_alert_is_unit_tested_both_ways():
    doc = yaml.safe_load(ALERTS_TEST.read_text())
    fires: set[str] = set()
    quiet: set[str] = set()
    for case in doc["tests"]:
        for check in case.get("alert_rule_test", []):
            (fires if check.get("exp_alerts") else quiet).add(check["alertname"])
    assert fires == set(EXPECTED_ALERTS), "alerts without a firing test"
    assert quiet == set(EXPECTED_ALERTS), "alerts without a quiet test"


def test_prometheus_scrapes_both_workers_and_loads_the_rules():
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    assert config["rule_files"] == ["alerts.yml"]
    targets = {
        target
        for job in config["scrape_configs"]
        for static in job.get("static_configs", [])
        for target in static["targets"]
    }
    assert {"worker-1:6066", "worker-2:6067"} <= targets


# ------------------------------------------------------------------ Runbooks


def test_every_alert_has_a_runbook_file():
    index = (RUNBOOKS / "README.md").read_text()
    for _, rule in _alert_rules():
        url = rule["annotations"]["runbook_url"]
        assert not url.startswith(("/", "http")), f"{rule['alert']}: runbook link must be relative"
        page = REPO / url
        assert page.is_file(), f"{rule['alert']}: {url} does not exist"
        assert page.parent == RUNBOOKS
        assert f"]({page.name})" in index, f"{page.name} is not linked from runbooks/README.md"
        text = page.read_text()
        assert text.startswith(f"# {rule['alert']}\n")
        for section in ("## Symptoms", "## Diagnosis", "## Actions", "## Escalation"):
            assert section in text, f"{page.name} has no {section!r} section"
        assert 'llmtel query "' in text, f"{page.name} has no llmtel query"


def _runbook_queries() -> list[tuple[str, str]]:
    """(page, SQL) for every ``llmtel query "..."`` inside a fenced code block."""
    out = []
    for page in sorted(RUNBOOKS.glob("*.md")):
        for block in re.findall(r"```sh\n(.*?)```", page.read_text(), flags=re.S):
            for sql in re.findall(r'llmtel query "([^"]+)"', block):
                out.append((page.name, sql))
    return out


def test_runbook_queries_are_single_line_and_shell_safe():
    queries = _runbook_queries()
    assert len(queries) >= 3 * len(EXPECTED_ALERTS)
    for page, sql in queries:
        assert "$" not in sql and "`" not in sql, f"{page}: the shell would expand {sql!r}"
        assert sql.lstrip().upper().startswith("SELECT"), f"{page}: {sql!r}"


# The runbook SQL and the dashboard's ClickHouse SQL run on an embedded ClickHouse (chDB)
# holding the tables that sinks.ddl creates. Run in a child process: chDB allows one
# session per process.
_SCHEMA_CHECK = textwrap.dedent(
    """
    import json, re, sys, tempfile
    sys.path.insert(0, sys.argv[1])
    from chdb import session as chs
    from sinks import ddl

    queries = json.loads(sys.stdin.read())
    s = chs.Session(tempfile.mkdtemp())
    s.query("CREATE DATABASE IF NOT EXISTS llmtel")
    s.query("USE llmtel")
    for statement in ddl.create_statements():
        s.query(statement)
    tables = set(s.query("SHOW TABLES", "CSV").bytes().decode().replace('"', "").split())
    result = {"tables": sorted(tables), "failed": [], "ran": 0, "skipped": []}
    for name, sql in queries:
        used = set(re.findall(r"(?:FROM|JOIN)\\s+(?:llmtel\\.)?([a-z_0-9]+)", sql))
        if not used <= tables:
            result["skipped"].append([name, sorted(used - tables)])
            continue
        try:
            s.query(sql)
            result["ran"] += 1
        except Exception as exc:
            result["failed"].append([name, sql, str(exc)[:500]])
    print(json.dumps(result))
    """
)


def _dashboard_clickhouse_sql() -> list[tuple[str, str]]:
    out = []
    for panels in _rows(_dashboard()).values():
        for panel in panels:
            for target in panel.get("targets", []):
                if "rawSql" in target:
                    sql = target["rawSql"]
                    sql = re.sub(
                        r"\$__timeFilter\((\w+)\)",
                        r"\1 >= now() - INTERVAL 1 DAY AND \1 <= now()",
                        sql,
                    )
                    sql = sql.replace("$__fromTime", "toDateTime(now() - INTERVAL 7 DAY)")
                    sql = sql.replace("$__toTime", "toDateTime(now())")
                    out.append((f"dashboard: {panel['title']}", sql))
    return out


def test_runbook_and_dashboard_sql_run_on_the_llmtel_schema():
    pytest.importorskip("chdb", reason="chdb is not installed")
    if not (REPO / "sinks" / "ddl.py").is_file():
        pytest.skip("sinks/ddl.py (the ClickHouse schema) is not present")
    queries = _runbook_queries() + _dashboard_clickhouse_sql()
    proc = subprocess.run(
        [sys.executable, "-c", _SCHEMA_CHECK, str(REPO)],
        input=json.dumps(queries),
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    if proc.returncode != 0:
        if "ImportError" in proc.stderr or "AttributeError" in proc.stderr:
            pytest.skip(f"schema unavailable: {proc.stderr.strip().splitlines()[-1]}")
        pytest.fail(proc.stderr)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert not result["failed"], "\n\n".join(
        f"{name}: {sql}\n  -> {error}" for name, sql, error in result["failed"]
    )
    assert {"events", "rollups_1m"} <= set(result["tables"])
    assert result["ran"] > 0


# ------------------------------------------------------------------- Grafana


def test_dashboard_json_parses():
    dashboard = _dashboard()
    assert dashboard["uid"] == "llmtel"
    assert dashboard["panels"]


def test_dashboard_rows_and_panel_titles():
    rows = _rows(_dashboard())
    assert list(rows) == list(EXPECTED_ROWS)
    for row, titles in EXPECTED_ROWS.items():
        assert sorted(p["title"] for p in rows[row]) == sorted(titles), row


def test_dashboard_datasources():
    provisioned = yaml.safe_load(DATASOURCES.read_text())["datasources"]
    by_uid = {ds["uid"]: ds["type"] for ds in provisioned}
    assert by_uid == {"prometheus": "prometheus", "clickhouse": "grafana-clickhouse-datasource"}
    ids = set()
    for panels in _rows(_dashboard()).values():
        for panel in panels:
            assert panel["id"] not in ids, f"duplicate panel id {panel['id']}"
            ids.add(panel["id"])
            assert panel["targets"], panel["title"]
            want = "clickhouse" if panel["title"] in CLICKHOUSE_PANELS else "prometheus"
            for target in [panel, *panel["targets"]]:
                ds = target["datasource"]
                assert ds["uid"] == want, panel["title"]
                assert by_uid[ds["uid"]] == ds["type"], panel["title"]
            for target in panel["targets"]:
                if want == "clickhouse":
                    assert "rollups_1m" in target["rawSql"], panel["title"]
                else:
                    assert target["expr"].strip(), panel["title"]


def test_dashboard_panels_fit_the_grid():
    for panel in _dashboard()["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["w"] > 0 and pos["x"] + pos["w"] <= 24, panel["title"]


# ------------------------------------------------------------ docker-compose


def test_docker_compose_config():
    compose = _require("docker-compose")
    result = _run([compose, "-f", str(COMPOSE), "config", "-q"])
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_services():
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    assert {"kafka", "clickhouse", "prometheus", "grafana", "init", "worker-1", "worker-2"} <= set(
        services
    )
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["clickhouse"]["image"].startswith("clickhouse/clickhouse-server:")
    for name in ("kafka", "clickhouse"):
        assert "healthcheck" in services[name], name
        assert services["init"]["depends_on"][name]["condition"] == "service_healthy"
    assert services["init"]["command"] == ["init"]
    published = {}
    for name in ("worker-1", "worker-2"):
        worker = services[name]
        assert worker["command"] == ["worker"]
        assert worker["depends_on"]["init"]["condition"] == "service_completed_successfully"
        assert worker["build"] == {"context": ".", "dockerfile": "deploy/Dockerfile"}
        env = worker["environment"]
        assert env["LLMTEL_POLICY"] == "/etc/llmtel/policy.yaml"
        assert env["LLMTEL_WEB_HOST"] == "0.0.0.0"
        port = env["LLMTEL_WEB_PORT"]
        assert worker["ports"] == [f"{port}:{port}"]
        published[name] = port
        policy = [v for v in worker["volumes"] if isinstance(v, dict)]
        assert policy and policy[0]["source"] == "./deploy/policy.example.yaml"
        assert policy[0]["target"] == "/etc/llmtel/policy.yaml"
    assert published == {"worker-1": "6066", "worker-2": "6067"}


def test_dockerfile():
    text = (DEPLOY / "Dockerfile").read_text()
    assert "FROM python:3.11-slim" in text
    assert "pip install ." in text
    assert re.search(r"^USER llmtel$", text, flags=re.M)
    assert 'ENTRYPOINT ["llmtel"]' in text
    assert 'CMD ["worker"]' in text
    assert "EXPOSE 6066" in text
