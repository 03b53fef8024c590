"""The topic table: the only place topic names, keys, value types and topic settings live.

Deployments may prefix every name (`topic_name(Topic.RECORDS_RAW, "acme.")`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Final

from pydantic import TypeAdapter

from schemas.audit import AuditRecorded
from schemas.base import Event
from schemas.dead_letters import DeadLettered
from schemas.feedback import FeedbackReceived
from schemas.fields import show
from schemas.model_events import MODEL_EVENT_ADAPTER, MODEL_EVENT_CLASSES
from schemas.records import RecordCleaned, RecordIndexed, RecordIngested
from schemas.transactions import TransactionReceived, TransactionScored

KIB: Final = 1024
MIB: Final = 1024 * KIB
WEEK_MS: Final = 7 * 24 * 3600 * 1000
MONTH_MS: Final = 30 * 24 * 3600 * 1000
TOPIC_NAME_MAX: Final = 249
_LEGAL: Final = re.compile(r"[a-zA-Z0-9._-]*")


class Topic(StrEnum):
    """Every topic lorafeed reads or writes, by its unprefixed name."""

    RECORDS_RAW = "records.raw"
    RECORDS_CLEAN = "records.clean"
    RECORDS_INDEXED = "records.indexed"
    RECORDS_DLQ = "records.dlq"
    FEEDBACK_EVENTS = "feedback.events"
    FEEDBACK_DLQ = "feedback.dlq"
    TRANSACTIONS_RAW = "transactions.raw"
    SCORES_OUT = "scores.out"
    MODEL_EVENTS = "model.events"
    AUDIT_EVENTS = "audit.events"


@dataclass(frozen=True)
class TopicSpec:
    """How a topic is keyed, what its values are, and how it is created.

    `value_type` is an Event class, or a TypeAdapter for a union; then `variants` maps the
    union's `type` values to their classes. `retention_ms` None keeps messages forever.
    """

    topic: Topic
    key: str
    value_type: type[Event] | TypeAdapter[Any]
    partitions: int
    retention_ms: int | None
    compacted: bool = False
    max_message_bytes: int = 1 * MIB
    variants: Mapping[str, type[Event]] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        if self.partitions < 1:
            raise ValueError(f"topic {self.topic}: partitions must be >= 1, got {self.partitions}")
        if self.retention_ms is not None and self.retention_ms <= 0:
            raise ValueError(
                f"topic {self.topic}: retention_ms must be > 0, got {self.retention_ms}"
            )
        if self.max_message_bytes < 1:
            raise ValueError(
                f"topic {self.topic}: max_message_bytes must be >= 1, got {self.max_message_bytes}"
            )


_SPECS: Final = (
    TopicSpec(Topic.RECORDS_RAW, key="record_id", value_type=RecordIngested, partitions=4,
              retention_ms=WEEK_MS, max_message_bytes=4 * MIB),
    # Compacted by record id: the latest cleaned state of every record, kept forever.
    TopicSpec(Topic.RECORDS_CLEAN, key="record_id", value_type=RecordCleaned, partitions=4,
              retention_ms=None, compacted=True, max_message_bytes=4 * MIB),
    TopicSpec(Topic.RECORDS_INDEXED, key="record_id", value_type=RecordIndexed, partitions=4,
              retention_ms=WEEK_MS),
    TopicSpec(Topic.RECORDS_DLQ, key="the original key", value_type=DeadLettered, partitions=1,
              retention_ms=MONTH_MS),
    # Kept forever: feedback is training data until an adapter's lineage holds it.
    TopicSpec(Topic.FEEDBACK_EVENTS, key="request_id", value_type=FeedbackReceived,
              partitions=4, retention_ms=None),
    TopicSpec(Topic.FEEDBACK_DLQ, key="the original key", value_type=DeadLettered,
              partitions=1, retention_ms=MONTH_MS),
    TopicSpec(Topic.TRANSACTIONS_RAW, key="event_id", value_type=TransactionReceived,
              partitions=4, retention_ms=WEEK_MS),
    TopicSpec(Topic.SCORES_OUT, key="event_id", value_type=TransactionScored, partitions=4,
              retention_ms=WEEK_MS),
    # One partition: every serving node sees each task's lifecycle in order.
    TopicSpec(Topic.MODEL_EVENTS, key="task", value_type=MODEL_EVENT_ADAPTER, partitions=1,
              retention_ms=None, variants=MappingProxyType(MODEL_EVENT_CLASSES)),
    TopicSpec(Topic.AUDIT_EVENTS, key="audit_id", value_type=AuditRecorded, partitions=1,
              retention_ms=None),
)  # fmt: skip

TOPICS: Final[Mapping[Topic, TopicSpec]] = MappingProxyType({spec.topic: spec for spec in _SPECS})
"""Topic -> spec, for every Topic."""


def validate_prefix(prefix: str) -> str:
    """Return `prefix` if every prefixed name stays a legal Kafka topic name, else raise."""
    if not _LEGAL.fullmatch(prefix):
        raise ValueError(
            f"topic prefix {show(prefix)} may only contain ASCII letters, digits, '.', '_' and '-'"
        )
    longest = max(len(topic.value) for topic in Topic)
    if len(prefix) + longest > TOPIC_NAME_MAX:
        raise ValueError(
            f"topic prefix {show(prefix)} has {len(prefix)} characters; with it the longest "
            f"topic name would exceed {TOPIC_NAME_MAX} (at most {TOPIC_NAME_MAX - longest})"
        )
    return prefix


def topic_name(topic: Topic, prefix: str = "") -> str:
    """The Kafka topic name of `topic` in a deployment using `prefix`."""
    return validate_prefix(prefix) + Topic(topic).value


def topic_from_name(name: str, prefix: str = "") -> Topic:
    """The Topic whose prefixed name is `name`; ValueError if it is none of ours."""
    validate_prefix(prefix)
    if name.startswith(prefix):
        try:
            return Topic(name[len(prefix) :])
        except ValueError:
            pass
    raise ValueError(f"{show(name)} is not a lorafeed topic with prefix {prefix!r}")
