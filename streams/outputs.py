"""Publish a batch's outcome (records.clean, records.indexed, records.dlq) and wait for acks.

Runs in the worker's executor thread with the idempotent confluent producer; the batch's input
offsets are acknowledged only after this returns.
"""

from __future__ import annotations

from confluent_kafka import Producer

from lorafeed.publish import PublishError, publish_events
from schemas import Event, Topic
from streams.indexer import Outcome

__all__ = ["PublishError", "publish_outcome"]


def publish_outcome(
    producer: Producer, prefix: str, outcome: Outcome, timeout_s: float = 30
) -> int:
    """Produce every event of ``outcome``; returns how many were acknowledged."""
    sends: list[tuple[Topic, str, Event | bytes]] = [
        *((Topic.RECORDS_CLEAN, e.record_id, e) for e in outcome.clean),
        *((Topic.RECORDS_INDEXED, e.record_id, e) for e in outcome.indexed),
        *((Topic.RECORDS_DLQ, e.key or "", e) for e in outcome.dead),
    ]
    return publish_events(producer, prefix, sends, timeout_s)
