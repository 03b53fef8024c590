"""The topic table covers every topic once, with sane settings, and prefixes stay legal."""

from __future__ import annotations

import pytest
from pydantic import TypeAdapter

from schemas.base import Event
from schemas.dead_letters import DeadLettered
from schemas.records import RecordIngested
from schemas.topics import (
    KIB,
    MIB,
    TOPIC_NAME_MAX,
    TOPICS,
    Topic,
    TopicSpec,
    topic_from_name,
    topic_name,
)

DESIGN_NAMES = {
    "records.raw",
    "records.clean",
    "records.indexed",
    "records.dlq",
    "feedback.events",
    "feedback.dlq",
    "transactions.raw",
    "scores.out",
    "model.events",
    "audit.events",
}
PARTITIONS = {
    Topic.RECORDS_RAW: 4,
    Topic.RECORDS_CLEAN: 4,
    Topic.RECORDS_INDEXED: 4,
    Topic.RECORDS_DLQ: 1,
    Topic.FEEDBACK_EVENTS: 4,
    Topic.FEEDBACK_DLQ: 1,
    Topic.TRANSACTIONS_RAW: 4,
    Topic.SCORES_OUT: 4,
    Topic.MODEL_EVENTS: 1,
    Topic.AUDIT_EVENTS: 1,
}


def test_names_are_the_documented_contract() -> None:
    assert {topic.value for topic in Topic} == DESIGN_NAMES
    assert len({topic.value for topic in Topic}) == len(Topic)


def test_every_topic_has_its_spec() -> None:
    assert set(TOPICS) == set(Topic)
    for topic, spec in TOPICS.items():
        assert spec.topic is topic
        assert spec.key
        assert isinstance(spec.value_type, TypeAdapter) or issubclass(spec.value_type, Event)


def test_partitions_and_sizes() -> None:
    assert {topic: spec.partitions for topic, spec in TOPICS.items()} == PARTITIONS
    assert TOPICS[Topic.RECORDS_RAW].max_message_bytes == 4 * MIB
    assert TOPICS[Topic.FEEDBACK_EVENTS].max_message_bytes == 1 * MIB
    for topic in (Topic.RECORDS_DLQ, Topic.FEEDBACK_DLQ):
        assert TOPICS[topic].value_type is DeadLettered
        assert TOPICS[topic].max_message_bytes >= 512 * KIB


def test_keys_and_types() -> None:
    assert TOPICS[Topic.RECORDS_RAW].key == "record_id"
    assert TOPICS[Topic.RECORDS_RAW].value_type is RecordIngested
    assert TOPICS[Topic.FEEDBACK_EVENTS].key == "request_id"
    assert TOPICS[Topic.MODEL_EVENTS].key == "task"
    assert set(TOPICS[Topic.MODEL_EVENTS].variants) == {
        "adapter_published",
        "adapter_promoted",
        "adapter_rejected",
        "adapter_rolled_back",
        "adapter_activated",
        "adapter_load_failed",
    }


def test_feedback_and_model_events_are_kept_forever() -> None:
    assert TOPICS[Topic.FEEDBACK_EVENTS].retention_ms is None
    assert TOPICS[Topic.MODEL_EVENTS].retention_ms is None
    assert not TOPICS[Topic.FEEDBACK_EVENTS].compacted


def test_table_is_read_only() -> None:
    with pytest.raises(TypeError):
        TOPICS[Topic.RECORDS_RAW] = TOPICS[Topic.RECORDS_CLEAN]  # type: ignore[index]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"partitions": 0}, "partitions must be >= 1, got 0"),
        ({"retention_ms": 0}, "retention_ms must be > 0, got 0"),
        ({"max_message_bytes": 0}, "max_message_bytes must be >= 1, got 0"),
    ],
)
def test_spec_validates_itself(options: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TopicSpec(
            topic=Topic.RECORDS_RAW,
            key="record_id",
            value_type=RecordIngested,
            partitions=options.get("partitions", 1),
            retention_ms=options.get("retention_ms"),
            max_message_bytes=options.get("max_message_bytes", MIB),
        )


@pytest.mark.parametrize("prefix", ["", "acme.", "prod-eu_1.", "x" * (TOPIC_NAME_MAX - 16)])
def test_prefix_round_trip(prefix: str) -> None:
    for topic in Topic:
        name = topic_name(topic, prefix)
        assert name == prefix + topic.value
        assert len(name) <= TOPIC_NAME_MAX
        assert topic_from_name(name, prefix) is topic


@pytest.mark.parametrize("prefix", ["acme/", "a b.", "é.", "x\n", "x" * (TOPIC_NAME_MAX - 15)])
def test_bad_prefix_is_rejected(prefix: str) -> None:
    with pytest.raises(ValueError, match="topic prefix"):
        topic_name(Topic.RECORDS_RAW, prefix)
    with pytest.raises(ValueError, match="topic prefix"):
        topic_from_name("records.raw", prefix)


@pytest.mark.parametrize(
    ("name", "prefix"),
    [
        ("records.raw", "acme."),
        ("other.records.raw", "acme."),
        ("acme.records.rawx", "acme."),
        ("acme.", "acme."),
        ("records", ""),
    ],
)
def test_foreign_names_are_not_topics(name: str, prefix: str) -> None:
    with pytest.raises(ValueError, match="is not a lorafeed topic"):
        topic_from_name(name, prefix)
