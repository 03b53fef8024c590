"""Produce events and wait until the broker acknowledged every one (or raise PublishError).

Used wherever an event must be on the broker before the caller moves on: streams outcomes
before their input offsets are acked, the learner's outbox, the CLI's rollback and audit events.
"""

from __future__ import annotations

from collections.abc import Sequence

from confluent_kafka import KafkaError, Message, Producer

from schemas import Event, Topic, encode, topic_name


class PublishError(RuntimeError):
    """The broker did not acknowledge every event in time."""


def publish_events(
    producer: Producer,
    prefix: str,
    sends: Sequence[tuple[Topic, str, Event | bytes]],
    timeout_s: float = 30,
) -> int:
    """Produce every (topic, key, event or encoded bytes); return how many were acknowledged."""
    errors: list[str] = []

    def on_delivery(err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            errors.append(f"{msg.topic()}: {err}")

    for topic, key, event in sends:
        value = event if isinstance(event, bytes) else encode(event)
        producer.produce(topic_name(topic, prefix), key=key, value=value, on_delivery=on_delivery)
        producer.poll(0)
    left = producer.flush(timeout_s)
    if errors or left:
        raise PublishError(f"{len(errors)} events refused, {left} unacknowledged: {errors[:3]}")
    return len(sends)
