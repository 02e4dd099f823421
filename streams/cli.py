"""The ``llmtel`` command line."""

from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

import orjson

from schemas import alert_json_schema, degrade_json_schema, event_json_schema
from schemas.errors import LlmtelError
from streams.errors import ConfigError
from streams.settings import Settings, load_settings


def _say(*lines: str) -> None:
    for line in lines:
        print(line, flush=True)


def _wait_for_cluster(settings: Settings, timeout: float = 60.0) -> str:
    from streams.errors import ConfigError
    from streams.kafka import cluster_id

    deadline = time.monotonic() + timeout
    while True:
        try:
            return cluster_id(settings.bootstrap, timeout=5, **settings.kafka_client_config())
        except ConfigError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def _topics(settings: Settings) -> list[str]:
    return [
        settings.events_topic,
        settings.dlq_topic,
        settings.alerts_topic,
        settings.degrade_topic,
    ]


def _ensure_topics(settings: Settings) -> None:
    from streams.ingest import state_topic
    from streams.kafka import ensure_state_topic, ensure_topics

    security = settings.kafka_client_config()
    ensure_topics(settings.bootstrap, _topics(settings), settings.partitions, **security)
    ensure_state_topic(
        settings.bootstrap,
        settings.events_topic,
        state_topic(settings.app_id),
        settings.partitions,
        **security,
    )


def cmd_init(settings: Settings, args: argparse.Namespace) -> int:
    """Create the topics and the ClickHouse tables, then exit."""
    from sinks.clickhouse import ClickHouseSink

    _wait_for_cluster(settings)
    _ensure_topics(settings)
    sink = ClickHouseSink(settings.dsn, tls=settings.clickhouse_tls())
    sink.ensure_tables()
    sink.close()
    _say(f"topics and tables ready (kafka {settings.bootstrap})")
    return 0


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    """Run one worker until SIGINT/SIGTERM."""
    from sinks.clickhouse import _redact
    from streams.app import Runtime, create_app, make_worker
    from streams.policy import load_policy

    policy = load_policy(settings.policy)
    cluster = _wait_for_cluster(settings)
    _ensure_topics(settings)
    runtime = Runtime(settings, policy, source=f"{cluster}/{settings.events_topic}")
    runtime.prepare()
    app = create_app(runtime)
    _say(
        f"llmtel worker: kafka {settings.bootstrap} (cluster {cluster}), "
        f"clickhouse {_redact(settings.dsn)}, web http://{settings.web_host}:{settings.web_port}"
    )
    worker = make_worker(app, settings.log_level)
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        return int(exc.code or 0)
    finally:
        runtime.close()
    return 0


def cmd_broker(settings: Settings, args: argparse.Namespace) -> int:
    """Run the embedded broker in the foreground."""
    from streams.broker import start_broker

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    proc = start_broker(settings.embedded_kafka_port, settings.data_dir / "broker.log")
    _say(f"llmtel broker: Kafka bootstrap 127.0.0.1:{settings.embedded_kafka_port} (memory only)")
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        return proc.wait()


def cmd_up(settings: Settings, args: argparse.Namespace) -> int:
    """The embedded broker and a worker, as two processes, until Ctrl-C."""
    from sinks.clickhouse import _redact
    from streams.broker import port_open, start_broker

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    broker = None
    env = dict(os.environ)
    if settings.kafka_bootstrap is None:
        broker = start_broker(settings.embedded_kafka_port, settings.data_dir / "broker.log")
        env["LLMTEL_KAFKA_BOOTSTRAP"] = settings.bootstrap
        kafka_line = f"{settings.bootstrap} (embedded broker, memory only; log {settings.data_dir / 'broker.log'})"
    else:
        kafka_line = settings.bootstrap
    worker = subprocess.Popen([sys.executable, "-m", "streams.cli", "worker"], env=env)
    _say(
        "llmtel is up",
        f"  Kafka bootstrap : {kafka_line}",
        f"  ClickHouse      : {_redact(settings.dsn)}",
        f"  data directory  : {settings.data_dir.resolve()}",
        f"  dashboard       : http://{settings.web_host}:{settings.web_port}/  (also /metrics, /api/status, POST /query)",
        f"  send events     : llmtel produce events.jsonl   (topic {settings.events_topic})",
        '  query           : llmtel query "SELECT * FROM rollups_1m LIMIT 10"',
        "Ctrl-C stops both.",
    )

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt  # stop the children on SIGTERM as on Ctrl-C

    signal.signal(signal.SIGTERM, on_term)
    code = 0
    try:
        while True:
            if worker.poll() is not None:
                code = worker.returncode
                _say(f"worker exited with code {code}")
                break
            if broker is not None and broker.poll() is not None:
                code = broker.returncode or 1
                _say(f"broker exited with code {broker.returncode}")
                break
            time.sleep(0.5)
    except KeyboardInterrupt:
        _say("stopping...")
    finally:
        for proc in (worker, broker):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
        if broker is not None:
            deadline = time.monotonic() + 5
            while port_open(settings.embedded_kafka_port) and time.monotonic() < deadline:
                time.sleep(0.1)
    return code


def _tenant_of(doc: Any) -> str | None:
    if isinstance(doc, dict):
        tenant = doc.get("tenant_id")
    elif isinstance(doc, list) and doc and isinstance(doc[0], dict):
        tenant = doc[0].get("tenant_id")
    else:
        return None
    return tenant if isinstance(tenant, str) else None


def cmd_produce(settings: Settings, args: argparse.Namespace) -> int:
    """Send a JSONL file (or stdin) to the events topic, each line keyed by its tenant_id."""
    from streams.kafka import cluster_id, make_producer

    cluster_id(
        settings.bootstrap, timeout=10, **settings.kafka_client_config()
    )  # a clear error now
    producer = make_producer(settings.bootstrap, **settings.kafka_client_config())
    failures: list[str] = []

    def on_delivery(err: Any, msg: Any) -> None:
        if err is not None:
            failures.append(str(err))

    stream = sys.stdin.buffer if args.file == "-" else open(args.file, "rb")  # noqa: SIM115
    sent = 0
    with stream:
        for line in stream:
            line = line.rstrip(b"\r\n")
            if not line.strip():
                continue
            try:
                tenant = _tenant_of(orjson.loads(line))
            except orjson.JSONDecodeError:
                tenant = None  # sent as is: the worker puts it in the DLQ with the reason
            key = tenant.encode() if tenant else None
            while True:
                try:
                    producer.produce(
                        args.topic or settings.events_topic, line, key, on_delivery=on_delivery
                    )
                    break
                except BufferError:
                    producer.poll(0.1)
            producer.poll(0)
            sent += 1
    left = producer.flush(30)
    if failures or left:
        print(
            f"llmtel produce: {len(failures) + left} of {sent} records failed: {failures[:3]}",
            file=sys.stderr,
        )
        return 1
    _say(f"sent {sent} records to {args.topic or settings.events_topic} at {settings.bootstrap}")
    return 0


def _query_worker(
    settings: Settings, sql: str
) -> tuple[list[str], list[str], list[list[Any]]] | None:
    """The result through a running worker's ``POST /query``, or None when none answers."""
    from sinks.errors import SinkError

    url = f"http://{settings.web_host}:{settings.web_port}/query"
    request = urllib.request.Request(
        url, data=orjson.dumps({"sql": sql}), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            body = orjson.loads(response.read())
        return body["columns"], body["types"], body["rows"]
    except urllib.error.HTTPError as exc:
        detail = orjson.loads(exc.read()).get("error", str(exc))
        raise SinkError(detail) from None
    except (urllib.error.URLError, ConnectionError):
        return None


def run_query(
    settings: Settings, sql: str, wait: float = 30.0
) -> tuple[list[str], list[str], list[list[Any]]]:
    """Run SQL on the configured ClickHouse; with the embedded store, through a running worker.

    With no worker answering, the embedded store is opened here; if a worker is just starting
    and holds it, the worker is asked again until ``wait`` seconds have passed.
    """
    from sinks.clickhouse import ClickHouseSink
    from sinks.errors import StoreBusy

    deadline = time.monotonic() + wait
    while True:
        if settings.embedded_store:
            result = _query_worker(settings, sql)
            if result is not None:
                return result
        sink = ClickHouseSink(settings.dsn, tls=settings.clickhouse_tls())
        try:
            columns, types, rows = sink.query(sql)
            return columns, types, [list(r) for r in rows]
        except StoreBusy:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
        finally:
            sink.close()


def format_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[("" if v is None else str(v)) for v in row] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    line = "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))
    rule = "  ".join("-" * w for w in widths)
    body = ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join([line, rule, *body, f"({len(rows)} row{'s' if len(rows) != 1 else ''})"])


def print_result(columns: Sequence[str], rows: Sequence[Sequence[Any]], fmt: str) -> None:
    if fmt == "json":
        for row in rows:
            sys.stdout.write(
                orjson.dumps(dict(zip(columns, row, strict=True)), default=str).decode() + "\n"
            )
    elif fmt == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(columns)
        writer.writerows([["" if v is None else v for v in row] for row in rows])
    else:
        print(format_table(columns, rows))


def cmd_query(settings: Settings, args: argparse.Namespace) -> int:
    """Print the result of a SQL query, or of one of the runbooks' presets."""
    sql = args.sql
    if args.preset:
        from streams.policy import load_policy
        from streams.presets import preset_sql

        sql = preset_sql(args.preset, load_policy(settings.policy))
    elif not sql:
        raise ConfigError("llmtel query needs SQL or --preset NAME")
    columns, _, rows = run_query(settings, sql)
    print_result(columns, rows, args.format)
    return 0


def cmd_schema(settings: Settings, args: argparse.Namespace) -> int:
    """Print a JSON Schema: input events, or alerts / degrade commands."""
    if args.alerts:
        schema = alert_json_schema()
    elif args.degrade:
        schema = degrade_json_schema()
    else:
        schema = event_json_schema()
    print(json.dumps(schema, indent=2))
    return 0


def cmd_alerts(settings: Settings, args: argparse.Namespace) -> int:
    """Follow llm.alerts and llm.degrade, one line per record."""
    from streams.follow import follow

    return follow(
        settings,
        as_json=args.json,
        from_beginning=args.from_beginning,
        idle_exit=args.idle_exit,
        out=sys.stdout,
        tenant=args.tenant,
    )


def cmd_report(settings: Settings, args: argparse.Namespace) -> int:
    """Write a self-contained HTML report of the period."""
    import functools

    from streams.durations import parse_duration
    from streams.policy import load_policy
    from streams.report import write_report

    try:
        since = parse_duration(args.since)
    except ValueError as exc:
        raise ConfigError(f"--since: {exc}") from None
    path = write_report(
        functools.partial(run_query, settings), load_policy(settings.policy), since, args.out
    )
    _say(f"wrote {path}")
    return 0


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    """Realistic traffic with incidents, to a running llmtel."""
    from streams.demo import cmd_demo as run

    return run(settings, args)


def cmd_sla(settings: Settings, args: argparse.Namespace) -> int:
    """Print each tenant's SLIs over --since against its tier, and its error budget left."""
    from streams.durations import parse_duration
    from streams.policy import load_policy
    from streams.sla_report import COLUMNS, compliance_rows, compliance_sql

    policy = load_policy(settings.policy)
    try:
        since = parse_duration(args.since)
    except ValueError as exc:
        raise ConfigError(f"--since: {exc}") from None
    sql = compliance_sql(
        since, policy.slo.budget_window, args.tenant, policy.slo.exclude_provider_errors
    )
    _, _, rows = run_query(settings, sql)
    print_result(COLUMNS, compliance_rows(policy, rows), args.format)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llmtel", description="Real-time telemetry for LLM applications."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="run the embedded broker and a worker (Ctrl-C stops both)")
    sub.add_parser("broker", help="run only the embedded Kafka-protocol broker")
    sub.add_parser("worker", help="run a worker against LLMTEL_KAFKA_BOOTSTRAP")
    sub.add_parser("init", help="create the topics and ClickHouse tables, then exit")
    p = sub.add_parser("produce", help="send JSONL events (a file, or - for stdin)")
    p.add_argument("file")
    p.add_argument("--topic", help="default: LLMTEL_EVENTS_TOPIC (llm.events)")
    q = sub.add_parser("query", help="run SQL on llmtel's ClickHouse and print the result")
    q.add_argument("sql", nargs="?", help="the SQL; or use --preset")
    q.add_argument(
        "--preset",
        choices=["top-tenants", "loops", "cost-by-model", "budget", "quality", "slo"],
        help="a ready-made query of the runbooks",
    )
    q.add_argument("--format", choices=["table", "csv", "json"], default="table")
    s = sub.add_parser("schema", help="print the JSON Schema of input events")
    group = s.add_mutually_exclusive_group()
    group.add_argument("--alerts", action="store_true", help="of llm.alerts records instead")
    group.add_argument("--degrade", action="store_true", help="of llm.degrade records instead")
    a = sub.add_parser("alerts", help="follow the alert and degrade topics, one line per record")
    a.add_argument("--json", action="store_true", help="print each record's JSON as it is")
    a.add_argument("--from-beginning", action="store_true", help="from the start of the topics")
    a.add_argument(
        "--idle-exit", type=float, metavar="SECONDS", help="exit after SECONDS without a record"
    )
    a.add_argument("--tenant", help="only this tenant's records")
    r = sub.add_parser(
        "report", help="write a self-contained HTML report (spend, budgets, quality, SLOs)"
    )
    r.add_argument("--since", default="7d", help="period, e.g. 24h or 7d (default 7d)")
    r.add_argument("--out", default="report.html", help="file to write (default report.html)")
    from streams.demo import add_arguments as demo_arguments

    demo_arguments(
        sub.add_parser("demo", help="send realistic traffic with incidents to a running llmtel")
    )
    sla = sub.add_parser(
        "sla", help="SLO compliance per tenant: each SLI, its target, met or not, error budget left"
    )
    sla.add_argument("--tenant", help="only this tenant")
    sla.add_argument(
        "--since", default="7d", help="period of the SLIs, e.g. 30m, 24h, 7d (default 7d)"
    )
    sla.add_argument("--format", choices=["table", "csv", "json"], default="table")
    return parser


COMMANDS = {
    "report": cmd_report,
    "demo": cmd_demo,
    "sla": cmd_sla,
    "alerts": cmd_alerts,
    "up": cmd_up,
    "broker": cmd_broker,
    "worker": cmd_worker,
    "init": cmd_init,
    "produce": cmd_produce,
    "query": cmd_query,
    "schema": cmd_schema,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
        return COMMANDS[args.command](settings, args)
    except LlmtelError as exc:
        print(f"llmtel {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
