"""KafkaPublisher over a fake producer: publish returns on the delivery report, errors and
timeouts raise PublishFailed, the unacknowledged bound raises PublishQueueFull."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import anyio
import pytest
from confluent_kafka import KafkaError

from serving.publisher import KafkaPublisher, PublishFailed, PublishQueueFull


class FakeProducer:
    """Queues messages; `poll` delivers them when `deliver` is set (with `error`, if any)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.queued: list[tuple[str, bytes, bytes, Callable[..., None]]] = []
        self.delivered: list[tuple[str, bytes, bytes]] = []
        self.deliver = threading.Event()
        self.deliver.set()
        self.error: KafkaError | None = None
        self.refuse: BaseException | None = None
        self.flushed = False

    def produce(self, topic: str, *, value: bytes, key: bytes, on_delivery: Any) -> None:
        if self.refuse is not None:
            raise self.refuse
        with self.lock:
            self.queued.append((topic, key, value, on_delivery))

    def poll(self, timeout: float) -> int:
        if not self.deliver.wait(timeout):
            return 0
        with self.lock:
            batch, self.queued = self.queued, []
        for topic, key, value, callback in batch:
            if self.error is None:
                self.delivered.append((topic, key, value))
            callback(self.error, None)
        return len(batch)

    def flush(self, timeout: float) -> int:
        self.flushed = True
        return 0


def run(publisher: KafkaPublisher, *messages: bytes) -> None:
    async def main() -> None:
        for value in messages:
            await publisher.publish("t.feedback.events", "req-1", value)

    anyio.run(main)


def test_publish_returns_after_the_delivery_report() -> None:
    producer = FakeProducer()
    publisher = KafkaPublisher(producer, timeout_s=2, poll_interval_s=0.01)
    run(publisher, b"a", b"b")
    assert producer.delivered == [("t.feedback.events", b"req-1", b"a"),
                                  ("t.feedback.events", b"req-1", b"b")]
    assert publisher.inflight == 0
    publisher.close(1)
    assert producer.flushed


def test_broker_errors_and_timeouts_raise_publish_failed() -> None:
    producer = FakeProducer()
    producer.error = KafkaError(KafkaError._MSG_TIMED_OUT)
    publisher = KafkaPublisher(producer, timeout_s=2, poll_interval_s=0.01)
    with pytest.raises(PublishFailed, match="refused"):
        run(publisher, b"a")
    producer.deliver.clear()
    slow = KafkaPublisher(producer, timeout_s=0.05, poll_interval_s=0.01)
    with pytest.raises(PublishFailed, match="no broker acknowledgement within 0.05 s"):
        run(slow, b"a")
    assert slow.inflight == 1  # counted until librdkafka reports on it
    producer.error = None
    producer.deliver.set()
    for _ in range(100):
        if slow.inflight == 0:
            break
        threading.Event().wait(0.01)
    assert slow.inflight == 0
    publisher.close(1)
    slow.close(1)


def test_the_unacknowledged_bound_and_local_queue_raise_queue_full() -> None:
    producer = FakeProducer()
    producer.deliver.clear()
    publisher = KafkaPublisher(producer, timeout_s=0.05, max_inflight=1, poll_interval_s=0.01)
    with pytest.raises(PublishFailed):
        run(publisher, b"a")
    with pytest.raises(PublishQueueFull, match="max_inflight=1"):
        run(publisher, b"b")
    producer.deliver.set()
    producer.refuse = BufferError("Local: Queue full")
    idle = KafkaPublisher(producer, timeout_s=1, poll_interval_s=0.01)
    with pytest.raises(PublishQueueFull, match="local queue"):
        run(idle, b"c")
    assert idle.inflight == 0
    publisher.close(1)
    idle.close(1)
