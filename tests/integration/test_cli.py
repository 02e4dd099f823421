"""The commands of the README's quick start, run as a user runs them."""

import json
import os
import signal
import subprocess
import sys
import threading
from decimal import Decimal

import orjson

from streams.broker import port_open
from tests.factories import event
from tests.integration.harness import ROOT, free_port, wait_for

LLMTEL = [sys.executable, "-m", "streams.cli"]


def user_env(tmp_path, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMTEL_")}
    env.update(
        {
            "LLMTEL_DATA_DIR": str(tmp_path / "data"),
            "LLMTEL_EMBEDDED_KAFKA_PORT": str(free_port()),
            "LLMTEL_WEB_PORT": str(free_port()),
            "LLMTEL_SESSION_TIMEOUT": "6",
            "LLMTEL_BATCH_WITHIN": "0.2",
            **extra,
        }
    )
    return env


def run(args, env, **kwargs):
    return subprocess.run(
        LLMTEL + args, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120, **kwargs
    )


def test_up_produce_query_and_ctrl_c(tmp_path):
    env = user_env(tmp_path)
    kafka_port = int(env["LLMTEL_EMBEDDED_KAFKA_PORT"])
    up = subprocess.Popen(
        [*LLMTEL, "up"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        banner = [up.stdout.readline() for _ in range(4)]
        output = []  # keep reading, so a full pipe never blocks the worker or the broker
        threading.Thread(target=lambda: output.extend(up.stdout), daemon=True).start()
        assert "llmtel is up" in banner[0]
        assert f"127.0.0.1:{kafka_port}" in banner[1]
        assert "chdb://" in banner[2] and str(tmp_path / "data") in banner[3]
        events = [event(tenant_id=f"t{i % 4}", cost_usd="0.25") for i in range(40)]
        lines = "\n".join(orjson.dumps(e).decode() for e in events) + "\n"
        client_env = {**env, "LLMTEL_KAFKA_BOOTSTRAP": f"127.0.0.1:{kafka_port}"}
        sent = run(["produce", "-"], client_env, input=lines)
        assert sent.returncode == 0, sent.stderr
        assert "sent 40 records" in sent.stdout

        def total():
            out = run(
                [
                    "query",
                    "SELECT count(), toString(sum(cost_usd)) FROM rollups_1m",
                    "--format",
                    "json",
                ],
                env,
            )
            return out.returncode == 0 and json.loads(out.stdout.splitlines()[0])

        row = wait_for(
            lambda: (r := total()) and r["count()"] > 0 and r,
            timeout=60,
            what="rollups via llmtel query",
        )
        wait_for(
            lambda: Decimal(total()["toString(sum(cost_usd))"]) == Decimal("10"),
            what="all 40 calls",
        )
        assert row
        table = run(
            [
                "query",
                "SELECT tenant_id, sum(requests) AS requests FROM rollups_1m GROUP BY tenant_id ORDER BY tenant_id",
            ],
            env,
        )
        assert table.stdout.splitlines()[0].split() == ["tenant_id", "requests"]
        assert "(4 rows)" in table.stdout
    finally:
        up.send_signal(signal.SIGINT)
        code = up.wait(timeout=60)
    assert code == 0, "".join(output)
    assert not port_open(kafka_port)
    assert not port_open(int(env["LLMTEL_WEB_PORT"]))


def test_up_stops_its_broker_and_worker_on_sigterm(tmp_path):
    env = user_env(tmp_path)
    up = subprocess.Popen(
        [*LLMTEL, "up"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert "llmtel is up" in up.stdout.readline()
    wait_for(lambda: port_open(int(env["LLMTEL_WEB_PORT"])), what="the worker's web port")
    up.send_signal(signal.SIGTERM)
    assert up.wait(timeout=60) == 0
    assert not port_open(int(env["LLMTEL_EMBEDDED_KAFKA_PORT"]))
    assert not port_open(int(env["LLMTEL_WEB_PORT"]))


def test_schema_prints_json_schemas(tmp_path):
    env = user_env(tmp_path)
    events = json.loads(run(["schema"], env).stdout)
    assert {"llm_call", "tool_call", "guardrail"} <= set(events["discriminator"]["mapping"])
    alerts = json.loads(run(["schema", "--alerts"], env).stdout)
    assert "alert_id" in alerts["properties"]
    degrade = json.loads(run(["schema", "--degrade"], env).stdout)
    assert "block" in json.dumps(degrade)


def test_bad_settings_fail_at_start_naming_the_variable(tmp_path):
    out = run(["worker"], user_env(tmp_path, LLMTEL_WEB_PORT="not-a-port"))
    assert out.returncode == 2
    assert "LLMTEL_WEB_PORT" in out.stderr


def test_bad_policy_fails_at_start_naming_the_field(tmp_path):
    policy = tmp_path / "policy.yaml"
    policy.write_text("prices:\n  my-model: {input: -1, output: 2}\n")
    out = run(["worker"], user_env(tmp_path, LLMTEL_POLICY=str(policy)))
    assert out.returncode == 2
    assert "prices.my-model.input" in out.stderr


def test_query_without_a_worker_opens_the_store_itself(tmp_path):
    env = user_env(tmp_path)
    out = run(["query", "SELECT 40 + 2 AS answer", "--format", "csv"], env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["answer", "42"]
