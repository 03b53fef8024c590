"""Kafka client factories with defaults that work on the embedded Tansu broker and Kafka alike.

The defaults encode PLATFORM.md's findings: a short session timeout (Tansu holds JoinGroup for
half of it), ``earliest`` offset reset (``latest`` replays on Tansu), murmur2 partitioning (so
confluent producers place keys where faust consumers expect them), an idempotent ``acks=all``
producer, and manual commits only after a message's effect is durable.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from lorafeed.privacy import redact
from schemas import TOPICS, Topic, topic_name
from schemas.dead_letters import DeadLettered, DeadLetterReason, dead_letter

SESSION_TIMEOUT_MS = 6000
HEARTBEAT_INTERVAL_MS = 1000


class KafkaSetupError(RuntimeError):
    """The broker could not be reached or a topic could not be created as the table says."""


def producer_config(bootstrap_servers: str, **overrides: Any) -> dict[str, Any]:
    """Settings for a confluent-kafka producer: idempotent, acks=all, murmur2 keys."""
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap_servers,
        "enable.idempotence": True,
        "acks": "all",
        "partitioner": "murmur2_random",
        "linger.ms": 5,
        "message.max.bytes": max(spec.max_message_bytes for spec in TOPICS.values()) + 4096,
        "client.id": "lorafeed",
    }
    config.update(overrides)
    return config


def consumer_config(bootstrap_servers: str, group_id: str, **overrides: Any) -> dict[str, Any]:
    """Settings for a confluent-kafka consumer: earliest reset, manual commits, short session."""
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap_servers,
        "group.id": group_id,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "session.timeout.ms": SESSION_TIMEOUT_MS,
        "heartbeat.interval.ms": HEARTBEAT_INTERVAL_MS,
        "isolation.level": "read_committed",
        "client.id": "lorafeed",
    }
    config.update(overrides)
    return config


def dead_letter_of(
    msg: Message, reason: DeadLetterReason, detail: str, now: datetime
) -> tuple[str, DeadLettered]:
    """The dead letter of a consumed message (its bytes, topic, partition, offset and key) and
    the key to publish it under: the original key, decoded with replacement characters. The
    human-readable fields (detail, key) have raw PII redacted: details echo bad input, and
    only the original bytes may keep it (invariant 7)."""
    key = redact((msg.key() or b"").decode("utf-8", "replace"))
    letter = dead_letter(
        msg.value() or b"",
        reason,
        redact(detail),
        source_topic=msg.topic() or "",
        partition=msg.partition(),
        offset=msg.offset(),
        key=key,
        now=now,
    )
    return key, letter


def make_producer(bootstrap_servers: str, **overrides: Any) -> Producer:
    return Producer(producer_config(bootstrap_servers, **overrides))


def make_consumer(bootstrap_servers: str, group_id: str, **overrides: Any) -> Consumer:
    return Consumer(consumer_config(bootstrap_servers, group_id, **overrides))


def make_admin(bootstrap_servers: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap_servers, "client.id": "lorafeed-admin"})


def faust_app_settings(bootstrap_servers: str, app_id: str, prefix: str = "") -> dict[str, Any]:
    """Keyword arguments for ``faust.App``: at_least_once (exactly_once dies on Tansu), short
    session, earliest reset, no web server by default, memory tables only."""
    brokers = ";".join(f"kafka://{server}" for server in bootstrap_servers.split(","))
    return {
        "id": f"{prefix}{app_id}",
        "broker": brokers,
        "processing_guarantee": "at_least_once",
        "broker_session_timeout": SESSION_TIMEOUT_MS / 1000,
        "broker_heartbeat_interval": HEARTBEAT_INTERVAL_MS / 1000,
        "consumer_auto_offset_reset": "earliest",
        "topic_allow_declare": False,
        "topic_disable_leader": True,
        "store": "memory://",
        "web_enabled": False,
        "producer_acks": -1,
    }


def topic_configs(topic: Topic) -> dict[str, str]:
    """Broker-side topic configuration from the topic table."""
    spec = TOPICS[topic]
    config = {
        "max.message.bytes": str(spec.max_message_bytes),
        "cleanup.policy": "compact" if spec.compacted else "delete",
    }
    config["retention.ms"] = str(spec.retention_ms if spec.retention_ms is not None else -1)
    return config


def ensure_topics(
    admin: AdminClient,
    prefix: str = "",
    topics: Iterable[Topic] | None = None,
    timeout_s: float = 15.0,
) -> dict[str, int]:
    """Create every topic of the table that does not exist yet; returns name -> partitions.

    Topics are created explicitly because a metadata request would auto-create them with the
    broker's default partition count. An existing topic with fewer partitions than the table
    says is an error (keys would be spread differently than consumers expect).
    """
    wanted = {topic_name(t, prefix): t for t in (topics or list(Topic))}
    existing = _partition_counts(admin, timeout_s)
    missing = [
        NewTopic(name, TOPICS[t].partitions, 1, config=topic_configs(t))
        for name, t in wanted.items()
        if name not in existing
    ]
    if missing:
        futures = admin.create_topics(missing, operation_timeout=timeout_s)
        for name, future in futures.items():
            try:
                future.result()
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise KafkaSetupError(f"cannot create topic {name}: {exc}") from exc
        existing = _partition_counts(admin, timeout_s)
    for name, t in wanted.items():
        have = existing.get(name)
        if have is None or have < TOPICS[t].partitions:
            raise KafkaSetupError(
                f"topic {name} has {have} partitions, the topic table says {TOPICS[t].partitions}"
            )
    return {name: existing[name] for name in wanted}


def _partition_counts(admin: AdminClient, timeout_s: float) -> Mapping[str, int]:
    try:
        metadata = admin.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        raise KafkaSetupError(f"broker metadata request failed: {exc}") from exc
    return {name: len(t.partitions) for name, t in metadata.topics.items() if t.error is None}
