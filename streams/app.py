"""The Faust app: topics, the ingest agent, web views. Thin wiring around pure modules."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import faust
import orjson
from prometheus_client import CollectorRegistry

from schemas.outputs import Alert, DegradeCommand
from sinks.clickhouse import ClickHouseSink
from sinks.ddl import ALERTS_COLUMNS, DEGRADE_COLUMNS, SLA_COLUMNS
from sinks.errors import StoreBusy
from streams.dashboard import add_dashboard_view
from streams.dedup import RecentIds
from streams.global_rules import GlobalState
from streams.ingest import Ingest, Outbox, read_states, state_topic
from streams.metrics import Metrics
from streams.monitor import Monitor, Outputs
from streams.parse import ParseLimits
from streams.pipeline import BatchProcessor, SourceRecord
from streams.policy import Policy
from streams.pricing import PriceTable
from streams.settings import Settings
from streams.slo import BURN_WINDOWS, SloEvaluator, sli_row
from streams.web import add_metrics_view, add_query_view, add_status_view
from streams.windows import windows_from_activity

ALERT_COLUMN_NAMES = tuple(name for name, _ in ALERTS_COLUMNS)
DEGRADE_COLUMN_NAMES = tuple(name for name, _ in DEGRADE_COLUMNS)
SLA_COLUMN_NAMES = tuple(name for name, _ in SLA_COLUMNS)


def alert_row(alert: Alert) -> tuple[Any, ...]:
    return tuple(getattr(alert, name) for name in ALERT_COLUMN_NAMES)


def degrade_row(command: DegradeCommand) -> tuple[Any, ...]:
    return tuple(getattr(command, name) for name in DEGRADE_COLUMN_NAMES)


log = logging.getLogger(__name__)


class Runtime:
    """What the agents share: the sink and the one thread that talks to it."""

    def __init__(self, settings: Settings, policy: Policy, source: str) -> None:
        self.settings = settings
        self.policy = policy
        self.source = source
        self.prices = PriceTable.shipped({k: v.as_fields() for k, v in policy.prices.items()})
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clickhouse")
        self.registry = CollectorRegistry()
        self.metrics = Metrics(
            self.registry,
            tenant_labels=policy.metrics.tenant_labels,
            max_tenants=policy.metrics.max_tenants,
        )
        self.sink = ClickHouseSink(
            settings.dsn,
            events_ttl_days=settings.events_ttl_days,
            rollups_ttl_days=settings.rollups_ttl_days,
            on_insert=self.metrics.observe_insert,
            tls=settings.clickhouse_tls(),
        )
        self.monitor = Monitor(policy, self.prices)
        self.slo = SloEvaluator(policy, self.prices)
        self.limits = ParseLimits(
            max_record_bytes=min(
                settings.max_record_bytes, policy.max_record_bytes or settings.max_record_bytes
            ),
            max_event_age=timedelta(days=settings.max_event_age_days),
            max_future=timedelta(seconds=settings.max_future_seconds),
            allowed_tenants=policy.allowed_tenants(),
        )

    def prepare(self, wait: float = 60.0) -> None:
        """Create the tables, on the sink thread (chDB's client then lives there).

        An embedded store held by another process (a `llmtel query` that opened it while no
        worker answered) is waited for, up to ``wait`` seconds.
        """
        deadline = time.monotonic() + wait
        while True:
            try:
                return self.executor.submit(self.sink.ensure_tables).result()
            except StoreBusy:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    async def sink_call(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    def close(self) -> None:
        self.executor.submit(self.sink.close).result()
        self.executor.shutdown()


def make_worker(app: faust.App, log_level: str) -> Any:
    """The Faust worker that runs ``app``, without its terminal spinner.

    The spinner turns on at WARNING and above, and sets the root logger to DEBUG so that it
    spins on every record: every ``log.debug`` in aiokafka and in the worker then builds a
    LogRecord (a few per Kafka request and per record sent), only for the handler to drop it.
    """
    from faust.worker import Worker

    worker = Worker(app, loglevel=log_level, quiet=True)
    worker.spinner = None
    return worker


def create_app(runtime: Runtime) -> faust.App:
    """Build the Faust app for one worker process."""
    s = runtime.settings
    # The events are consumed by streams.ingest in the group ``app_id``; Faust's own group
    # (the global rules, the timer, the web server) is ``app_id-rules``.
    app = faust.App(
        f"{s.app_id}-rules",
        broker=[f"kafka://{host}" for host in s.bootstrap.split(",")],
        store="memory://",
        datadir=str(s.data_dir / "faust"),
        autodiscover=False,
        web_enabled=True,
        web_host=s.web_host,
        web_bind=s.web_host,
        web_port=s.web_port,
        broker_session_timeout=s.session_timeout,
        broker_heartbeat_interval=max(0.5, s.session_timeout / 5),
        broker_request_timeout=max(30.0, s.session_timeout * 3),
        broker_credentials=s.faust_credentials(),
        consumer_auto_offset_reset="earliest",
        topic_partitions=s.partitions,
    )
    kafka = s.aiokafka_config()
    # a refused record goes to the DLQ whole, with headers: leave room above the limit
    outbox = Outbox(s.bootstrap, s.max_record_bytes + 1_048_576, kafka)
    # Budgets, rule states and degraded modes per tenant, as last written to the changelog,
    # for the tenants of the partitions this worker owns (monitor.partition_of: where).
    stored: dict[str, dict[str, Any]] = {}
    changelog = state_topic(s.app_id)
    monitor = runtime.monitor
    # Rules over all tenants: spend deltas from every partition meet on one partition.
    global_topic = app.topic(
        f"{s.app_id}-global-spend",
        partitions=1,
        internal=True,
        key_serializer="raw",
        value_serializer="json",
    )
    global_topic_name = global_topic.get_topic_name()
    global_state = app.Table(
        "global-state",
        default=None,
        partitions=1,
        schema=faust.Schema(key_type=str, key_serializer="json", value_serializer="json"),
    )
    global_rules = [r for r in runtime.policy.rule_specs() if r.scope == "global"]

    async def publish_dlq(
        key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]
    ) -> None:
        await outbox.send(s.dlq_topic, value, key, headers)

    processor = BatchProcessor(
        source=runtime.source,
        topic=s.events_topic,
        prices=runtime.prices,
        limits=runtime.limits,
        sink_call=runtime.sink_call,
        dlq_publish=publish_dlq,
        recent_ids=RecentIds(s.dedup_window_seconds, s.dedup_max_ids),
        store_content=runtime.policy.store_content,
    )

    async def on_assigned(partitions: set[int]) -> None:
        """A rebalance: read the states of the partitions from the changelog, even of those
        kept (another worker may have owned them in between); windows are rebuilt lazily."""
        found = await read_states(s.bootstrap, changelog, partitions, kafka)
        stored.clear()
        processor.forget_applied()
        monitor.forget()
        for p, states in found.items():
            for tenant, value in states.items():  # quiet tenants too (status, SLA watchdog)
                stored[tenant] = value
                monitor.state(tenant, value)
                monitor.partition_of[tenant] = p

    async def save_states(changed: dict[str, Any]) -> None:
        """Write changed tenant states to the changelog partition of their events."""
        for tenant, state in changed.items():
            value = state.to_json()
            p = monitor.partition_of.get(tenant)
            if p is None:
                continue  # a tenant this worker holds no events of
            stored[tenant] = value
            await outbox.send(changelog, orjson.dumps(value), tenant.encode(), partition=p)

    async def load_windows(partitions: set[int]) -> None:
        """Rebuild the rule windows of newly owned partitions from what ClickHouse holds."""
        applied = await processor.ensure_applied(runtime.sink)
        for p in partitions:
            if not monitor.has_windows(p):
                activity = await processor.store(runtime.sink.recent_activity, runtime.source, p)
                monitor.load_windows(
                    p, windows_from_activity(activity, applied["events"].get(p, -1))
                )

    async def publish(out: Outputs, token: str) -> None:
        """Send alerts and degrade commands, and store them, before the batch is acked."""
        await announce(out)
        await record(out, token)

    async def announce(out: Outputs) -> None:
        """Hand spend deltas, alerts and degrade commands to the producer (sent at once)."""
        if out.spend:  # one message per batch: its partitions are folded together
            deltas = [
                {"partition": p, "offset": out.spend_offsets[p], "minutes": minutes}
                for p, minutes in out.spend.items()
            ]
            await outbox.send(
                global_topic_name,
                orjson.dumps({"deltas": deltas}, option=orjson.OPT_NON_STR_KEYS),
                b"global",
            )
        for alert in out.alerts:
            await outbox.send(
                s.alerts_topic, alert.model_dump_json().encode(), (alert.tenant_id or "").encode()
            )
            runtime.metrics.observe_alert(alert)
        for command in out.degrades:
            await outbox.send(
                s.degrade_topic, command.model_dump_json().encode(), command.tenant_id.encode()
            )
            runtime.metrics.observe_degrade(command)

    async def record(out: Outputs, token: str) -> None:
        """Store the alerts and degrade commands (``token`` makes a retry add nothing)."""
        if out.alerts:
            rows = [alert_row(a) for a in out.alerts]
            await processor.store(
                runtime.sink.insert, "alerts", ALERT_COLUMN_NAMES, rows, "alerts|" + token
            )
        if out.degrades:
            rows = [degrade_row(d) for d in out.degrades]
            await processor.store(
                runtime.sink.insert,
                "degrade_events",
                DEGRADE_COLUMN_NAMES,
                rows,
                "degrade|" + token,
            )
        for tenant in out.changed:
            _, spend, limit, _ = monitor.budget_view(tenant)
            runtime.metrics.set_budget_remaining(tenant, max(0.0, limit - spend))

    @app.task
    async def consume() -> None:
        try:
            await outbox.start()
            await ingest.run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # Nothing of the failed batch was committed. Stop the worker rather than run on
            # without a consumer: a restart resumes from the last commit, skipping what is stored.
            log.critical(
                "stopping the worker: a batch could not be processed: %s", exc, exc_info=True
            )
            await app.crash(exc)
        finally:
            await outbox.stop()

    @app.agent(global_topic, name="global-rules")
    async def evaluate_global(stream: faust.StreamT) -> None:
        try:
            await fold_global(stream)
        except Exception as exc:
            log.critical("stopping the worker: the global rules failed: %s", exc, exc_info=True)
            await app.crash(exc)

    async def fold_global(stream: faust.StreamT) -> None:
        state = None
        async for message in stream:
            if state is None:  # kept in memory for the partitions' wall-clock activity
                state = GlobalState.from_json(global_state.get("global"))
            folded = [
                state.fold(
                    d["partition"],
                    d["offset"],
                    {int(m): int(c) for m, c in d["minutes"].items()},
                    time.time(),
                )
                for d in message["deltas"]
            ]
            if not any(folded):
                continue  # forwarded again by a replayed batch
            alerts = state.evaluate(global_rules, time.time())
            global_state["global"] = state.to_json()
            token = "global|" + ",".join(
                f"{d['partition']}:{d['offset']}" for d in message["deltas"]
            )
            await publish(Outputs(alerts=alerts), token)
            await outbox.flush()

    slo = runtime.policy.slo

    @app.timer(interval=slo.interval)
    async def sla_watchdog() -> None:
        """Every ``slo.interval``: SLIs of this worker's tenants against their tiers."""
        try:
            async with ingest.lock:  # not in the middle of a batch or a rebalance
                await check_slas()
        except Exception:
            # ingestion goes on; the next run tries again
            log.exception("the SLA watchdog failed")

    async def check_slas() -> None:
        partitions = sorted(ingest.assigned)
        if not partitions:
            return
        query = functools.partial(
            runtime.sink.sli_rows,
            partitions,
            evaluation_window=slo.evaluation_window,
            burn_windows=BURN_WINDOWS,
            budget_window=slo.budget_window,
            exclude_provider_errors=slo.exclude_provider_errors,
            maintenance=[(m.start, m.end, m.tenants) for m in slo.maintenance],
        )
        rows = await processor.store(query)
        now = datetime.now(UTC)
        out, snapshots = runtime.slo.evaluate(
            [sli_row(r) for r in rows], lambda t: monitor.state(t, stored.get(t)), now
        )
        await publish(out, f"sla|{now.isoformat()}|{partitions}")
        await save_states(out.changed)  # after the alerts are stored: a crash re-sends them
        if snapshots:
            snapshot_rows = [[getattr(s, name) for name in SLA_COLUMN_NAMES] for s in snapshots]
            await processor.store(
                runtime.sink.insert,
                "sla_snapshots",
                SLA_COLUMN_NAMES,
                snapshot_rows,
                f"sla|{now.isoformat()}|{partitions}",
            )
        await outbox.flush()

    lags: dict[int, int] = {}
    throughput: list[tuple[float, int]] = []  # (wall time, records consumed so far)

    def observe_progress(records: list[SourceRecord]) -> None:
        """After each batch (and each empty fetch): lag per partition, throughput."""
        lags.clear()
        lags.update(ingest.lags())
        for partition, lag in lags.items():
            runtime.metrics.set_lag(partition, lag)
        consumed = (throughput[-1][1] if throughput else 0) + len(records)
        throughput.append((time.time(), consumed))
        del throughput[:-120]

    async def status() -> dict[str, Any]:
        """This worker's tenants: budgets, firing alerts, degraded modes, SLOs, throughput."""
        tenants, firing = [], []
        for tenant, state in sorted(monitor.states.items()):
            plan, spend, limit, level = monitor.budget_view(tenant)
            tier, _ = runtime.policy.tier_of(tenant)
            degraded = {mode: sorted(reasons) for mode, reasons in state.degrade.items()}
            tenants.append(
                {
                    "tenant_id": tenant,
                    "plan": plan,
                    "tier": tier,
                    "spend_usd": spend,
                    "budget_usd": limit,
                    "level": level,
                    "degraded": degraded,
                }
            )
            for rule, alert_id in state.budget_alerts.items():
                firing.append({"tenant_id": tenant, "rule": rule, "alert_id": alert_id})
            for key, rule_state in state.rules.items():
                if rule_state.status == "firing":
                    firing.append(
                        {
                            "tenant_id": tenant,
                            "rule": key.split(":")[0],
                            "alert_id": rule_state.alert_id,
                            "since": rule_state.since,
                        }
                    )
        slo_rows = await processor.store(
            runtime.sink.query,
            # argMax of a tuple keeps the newest row whole (argMax of a column skips NULLs)
            "SELECT tenant_id, latest.1, latest.2, latest.3, latest.4, latest.5, latest.6, latest.7, "
            "latest.8, latest.9 FROM (SELECT tenant_id, argMax((tier, availability, p95_latency_ms, "
            "json_valid_rate, groundedness, cost_p95_usd, error_budget_remaining, breaches, ts), ts) "
            "AS latest FROM sla_snapshots WHERE ts >= now() - INTERVAL 1 DAY GROUP BY tenant_id) "
            "ORDER BY tenant_id",
        )
        names = [
            "tenant_id",
            "tier",
            "availability",
            "p95_latency_ms",
            "json_valid_rate",
            "groundedness",
            "cost_p95_usd",
            "error_budget_remaining",
            "breaches",
            "ts",
        ]
        rate = 0.0
        if len(throughput) >= 2 and throughput[-1][0] > throughput[0][0]:
            rate = (throughput[-1][1] - throughput[0][1]) / (throughput[-1][0] - throughput[0][0])
        return {
            "tenants": tenants,
            "alerts_firing": firing,
            "slo": [dict(zip(names, row, strict=True)) for row in slo_rows[2]],
            "throughput": {
                "events_consumed": throughput[-1][1] if throughput else 0,
                "events_per_s": rate,
            },
            "lag": {str(p): lag for p, lag in sorted(lags.items())},
        }

    async def process(records: list[SourceRecord]) -> None:
        """One batch; returns once everything it produced is stored (then Ingest commits)."""
        started = time.perf_counter()
        await load_windows({r.partition for r in records})
        batch = await processor.prepare(runtime.sink, records)
        storing = asyncio.ensure_future(processor.store_batch(runtime.sink, batch))
        try:
            await asyncio.sleep(0)  # the insert starts on the sink thread ...
            # ... while the batch is folded into tenant states
            out = monitor.apply_batch(batch.result.accepted, stored.get)
            # alerts go out now, not after the inserts; the offsets still wait for both
            await announce(out)
            result = await storing
        finally:
            storing.cancel()  # a no-op once it is done
        await record(out, result.token)
        # tenant states last: a state that reached the changelog before its alerts were
        # stored would make the replay after a crash skip them, and lose their rows
        await save_states(out.changed)
        await outbox.flush()
        runtime.metrics.observe_batch(result, time.perf_counter() - started)

    ingest = Ingest(
        bootstrap=s.bootstrap,
        topic=s.events_topic,
        group=s.app_id,
        process=process,
        on_assigned=on_assigned,
        on_progress=observe_progress,
        batch_max=s.batch_max,
        batch_within=s.batch_within,
        batch_max_bytes=s.batch_max_bytes,
        session_timeout=s.session_timeout,
        client=kafka,
    )

    async def run_query(sql: str) -> tuple[list[str], list[str], list[tuple]]:
        return await runtime.sink_call(runtime.sink.query, sql)

    add_metrics_view(app, runtime.registry)
    add_status_view(app, status)
    add_dashboard_view(app, runtime.policy)
    if runtime.sink.embedded:
        # chDB admits one process: `llmtel query` elsewhere reaches the store through here.
        # A ClickHouse server is queried directly, so its workers expose no SQL endpoint.
        add_query_view(app, run_query)
    return app
