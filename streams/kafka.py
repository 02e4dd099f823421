"""Kafka administration llmtel needs at start: topics, the cluster id, a murmur2 producer."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from streams.errors import ConfigError

log = logging.getLogger(__name__)


def producer_config(bootstrap: str, **extra: object) -> dict[str, object]:
    """confluent-kafka settings that partition keys as Kafka's Java client and Faust do."""
    return {
        "bootstrap.servers": bootstrap,
        "partitioner": "murmur2_random",
        "linger.ms": 20,
        "compression.type": "lz4",
        "log_level": 2,  # connection failures are reported by llmtel, not logged per retry
        **extra,
    }


def make_producer(bootstrap: str, **extra: object) -> Producer:
    return Producer(producer_config(bootstrap, **extra))


def cluster_id(bootstrap: str, timeout: float = 10.0, **security: object) -> str:
    """The broker cluster's id; raises ConfigError when the broker cannot be reached."""
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 2, **security})
    try:
        metadata = admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise ConfigError(
            f"LLMTEL_KAFKA_BOOTSTRAP: cannot reach Kafka at {bootstrap}: {exc}"
        ) from None
    return metadata.cluster_id or "kafka"


def ensure_topics(
    bootstrap: str,
    names: Iterable[str],
    partitions: int,
    timeout: float = 10.0,
    config: dict[str, str] | None = None,
    **security: object,
) -> None:
    """Create the topics that do not exist yet (existing ones are left as they are)."""
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 2, **security})
    existing = set(admin.list_topics(timeout=timeout).topics)
    missing = [NewTopic(n, partitions, 1, config=config or {}) for n in names if n not in existing]
    if not missing:
        return
    for name, future in admin.create_topics(missing, request_timeout=timeout).items():
        try:
            future.result()
            log.info("created topic %s with %d partitions", name, partitions)
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise


def partition_count(bootstrap: str, topic: str, timeout: float = 10.0, **security: object) -> int:
    """How many partitions ``topic`` has (0 when it does not exist)."""
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 2, **security})
    found = admin.list_topics(topic, timeout=timeout).topics.get(topic)
    return 0 if found is None or found.error is not None else len(found.partitions)


def ensure_state_topic(
    bootstrap: str, events: str, states: str, partitions: int, **security: object
) -> None:
    """Create the tenant-state changelog with as many partitions as the events topic (a
    tenant's state lives on its events' partition); fail if an existing one has fewer."""
    wanted = partition_count(bootstrap, events, **security) or partitions
    ensure_topics(bootstrap, [states], wanted, config={"cleanup.policy": "compact"}, **security)
    have = partition_count(bootstrap, states, **security)
    if have < wanted:
        raise ConfigError(
            f"topic {states} has {have} partitions but {events} has {wanted}: tenant states "
            "live on their events' partition; delete it (states are rebuilt from zero) or add "
            "partitions"
        )
