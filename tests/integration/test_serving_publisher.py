"""KafkaPublisher on the real broker: publish returns once acknowledged and the event is there
to read; an unreachable broker turns into PublishFailed within the timeout."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime

import pytest
from confluent_kafka import TopicPartition

from lorafeed.kafka_clients import make_consumer
from schemas.codec import decode, encode
from schemas.feedback import FeedbackReceived
from schemas.topics import TOPICS, Topic, topic_name
from serving.publisher import KafkaPublisher, PublishFailed
from tests.support.stack import RunningStack

pytestmark = pytest.mark.integration
NOW = datetime(2025, 1, 1, tzinfo=UTC)


def test_publish_is_acknowledged_and_readable(stack: RunningStack) -> None:
    request_id = f"req-{uuid.uuid4().hex}"
    event = FeedbackReceived(
        schema_version=1, request_id=request_id, task="support", kind="rating", rating=1,
        adapter_version="1.0.0", input="question", output="answer", served_at=NOW,
        received_at=NOW,
    )
    topic = topic_name(Topic.FEEDBACK_EVENTS, stack.prefix)
    publisher = KafkaPublisher.connect(stack.bootstrap, timeout_s=20)
    try:
        asyncio.run(publisher.publish(topic, request_id, encode(event)))
    finally:
        publisher.close(5)
    consumer = make_consumer(stack.bootstrap, f"pub-{uuid.uuid4().hex[:8]}")
    partitions = TOPICS[Topic.FEEDBACK_EVENTS].partitions
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    found = None
    deadline = time.monotonic() + 30
    while found is None and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is not None and not message.error() and message.key() == request_id.encode():
            found = decode(Topic.FEEDBACK_EVENTS, message.value() or b"")
    consumer.close()
    assert found == event


def test_an_unreachable_broker_fails_within_the_timeout() -> None:
    quiet = {"log_level": 0}  # librdkafka would log every refused connect until exit
    publisher = KafkaPublisher.connect("127.0.0.1:1", timeout_s=1.0, **quiet)
    started = time.monotonic()
    try:
        with pytest.raises(PublishFailed):
            asyncio.run(publisher.publish("feedback.events", "k", b"{}"))
    finally:
        publisher.close(0.5)
    assert time.monotonic() - started < 5
