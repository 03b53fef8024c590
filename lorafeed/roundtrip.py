"""Publish events to their topics and read them back through a consumer group.

The demo's proof that the broker serves every contract, and the integration tests' driver:
produce with delivery reports (an event counts as sent only when the broker acked it),
consume with manual commits after each decoded message.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from lorafeed.kafka_clients import make_consumer, make_producer
from lorafeed.samples import message_key
from schemas import Event, SchemaError, Topic, decode, encode, topic_from_name, topic_name


class RoundTripError(RuntimeError):
    """The broker refused a message or did not give it back in time."""


@dataclass
class ReadBack:
    """What a consumer saw: matched events per topic, and anything undecodable."""

    found: dict[Topic, list[Event]] = field(default_factory=dict)
    rejected: list[tuple[str, SchemaError]] = field(default_factory=list)
    committed: dict[tuple[str, int], int] = field(default_factory=dict)


def publish(
    bootstrap: str, prefix: str, events: Mapping[Topic, Sequence[Event]], timeout_s: float = 30
) -> dict[Topic, int]:
    """Produce every event, keyed as the topic table says; returns acked counts per topic."""
    producer = make_producer(bootstrap)
    acked: dict[Topic, int] = dict.fromkeys(events, 0)
    errors: list[str] = []

    def report(topic: Topic) -> Callable[[KafkaError | None, Message], None]:
        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            if err is None:
                acked[topic] += 1
            else:
                errors.append(f"{msg.topic()}: {err}")

        return on_delivery

    for topic, batch in events.items():
        for event in batch:
            producer.produce(topic_name(topic, prefix), key=message_key(topic, event),
                             value=encode(event), on_delivery=report(topic))
            producer.poll(0)
    left = producer.flush(timeout_s)
    if errors or left:
        raise RoundTripError(f"{len(errors)} refused, {left} unacknowledged: {errors[:3]}")
    return acked


def read_back(
    bootstrap: str,
    prefix: str,
    expected: Mapping[Topic, Sequence[Event]],
    group_id: str,
    timeout_s: float = 60,
) -> ReadBack:
    """Consume the topics of ``expected`` until each expected event was seen, committing as it
    goes. Older messages (an earlier run's) are read and committed too, but not reported."""
    consumer = make_consumer(bootstrap, group_id)
    names = [topic_name(topic, prefix) for topic in expected]
    missing = {topic: list(batch) for topic, batch in expected.items()}
    result = ReadBack(found={topic: [] for topic in expected})
    consumer.subscribe(names)
    deadline = time.monotonic() + timeout_s
    try:
        while any(missing.values()) and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            topic = topic_from_name(msg.topic(), prefix)
            try:
                event = decode(topic, msg.value())
            except SchemaError as exc:
                result.rejected.append((msg.topic(), exc))
            else:
                if event in missing[topic]:
                    missing[topic].remove(event)
                    result.found[topic].append(event)
            consumer.commit(message=msg, asynchronous=False)
        result.committed = _committed(consumer)
    finally:
        consumer.close()
    if any(missing.values()):
        lost = {str(t): len(batch) for t, batch in missing.items() if batch}
        raise RoundTripError(f"not read back within {timeout_s:.0f} s: {lost}")
    return result


def _committed(consumer: Consumer) -> dict[tuple[str, int], int]:
    offsets: list[TopicPartition] = consumer.committed(consumer.assignment(), timeout=10)
    return {(tp.topic, tp.partition): tp.offset for tp in offsets if tp.offset >= 0}
