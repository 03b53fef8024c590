"""Reads the demo's output topics from the beginning in a background thread (assigned
partitions, no consumer group, nothing committed): what the streams worker indexed or refused,
what the scorer scored, what the learner published and what each node activated."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from confluent_kafka import OFFSET_BEGINNING, TopicPartition

from lorafeed.kafka_clients import make_consumer
from schemas import TOPICS, Topic, decode, topic_name
from schemas.errors import SchemaError

T = TypeVar("T")
WATCHED = (Topic.RECORDS_CLEAN, Topic.RECORDS_INDEXED, Topic.RECORDS_DLQ, Topic.SCORES_OUT,
           Topic.MODEL_EVENTS, Topic.FEEDBACK_DLQ)


class WatchTimeout(RuntimeError):
    """What the demo waited for did not show up on the topics in time."""


class TopicWatcher:
    """Every event on `topics` since the start, decoded, with the time it was seen."""

    def __init__(self, bootstrap: str, prefix: str, topics: Sequence[Topic] = WATCHED) -> None:
        self._consumer = make_consumer(bootstrap, "lorafeed-demo-watch")
        self._names = {topic_name(topic, prefix): topic for topic in topics}
        self._consumer.assign([
            TopicPartition(name, partition, OFFSET_BEGINNING)
            for name, topic in self._names.items() for partition in range(TOPICS[topic].partitions)
        ])
        self._events: dict[Topic, list[tuple[float, Any]]] = {topic: [] for topic in topics}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.undecodable = 0
        self._thread = threading.Thread(target=self._run, name="demo-watch", daemon=True)
        self._thread.start()

    def events(self, topic: Topic) -> list[Any]:
        with self._lock:
            return [event for _at, event in self._events[topic]]

    def timed(self, topic: Topic) -> list[tuple[float, Any]]:
        """(monotonic time seen, event) pairs."""
        with self._lock:
            return list(self._events[topic])

    def wait(self, check: Callable[[], T | None], timeout_s: float, what: str,
             tick: Callable[[], None] = lambda: None) -> T:
        """Poll `check` until it returns a value; `tick` runs between polls (progress bars)."""
        deadline = time.monotonic() + timeout_s
        while True:
            value = check()
            if value is not None:
                return value
            if time.monotonic() > deadline:
                raise WatchTimeout(f"timed out after {timeout_s:.0f} s waiting for {what}")
            tick()
            time.sleep(0.25)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._consumer.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            msg = self._consumer.poll(0.2)
            if msg is None or msg.error():
                continue
            topic = self._names.get(msg.topic() or "")
            if topic is None:
                continue
            try:
                event = decode(topic, msg.value() or b"")
            except SchemaError:
                self.undecodable += 1
                continue
            with self._lock:
                self._events[topic].append((time.monotonic(), event))
