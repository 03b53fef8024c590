"""Publish a batch's outcome (records.clean, records.indexed, records.dlq) and wait for acks.

Runs in the worker's executor thread with the idempotent confluent producer; the batch's input
offsets are acknowledged only after this returns.
"""

from __future__ import annotations

from confluent_kafka import KafkaError, Message, Producer

from schemas import Event, Topic, encode, topic_name
from streams.indexer import Outcome


class PublishError(RuntimeError):
    """The broker did not acknowledge every outcome event in time."""


def publish_outcome(
    producer: Producer, prefix: str, outcome: Outcome, timeout_s: float = 30
) -> int:
    """Produce every event of ``outcome``; returns how many were acknowledged."""
    errors: list[str] = []

    def on_delivery(err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            errors.append(f"{msg.topic()}: {err}")

    sends: list[tuple[Topic, str, Event]] = [
        *((Topic.RECORDS_CLEAN, e.record_id, e) for e in outcome.clean),
        *((Topic.RECORDS_INDEXED, e.record_id, e) for e in outcome.indexed),
        *((Topic.RECORDS_DLQ, e.key or "", e) for e in outcome.dead),
    ]
    for topic, key, event in sends:
        producer.produce(
            topic_name(topic, prefix), key=key, value=encode(event), on_delivery=on_delivery
        )
        producer.poll(0)
    left = producer.flush(timeout_s)
    if errors or left:
        raise PublishError(
            f"{len(errors)} outcome events refused, {left} unacknowledged: {errors[:3]}"
        )
    return len(sends)
