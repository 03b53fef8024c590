"""Run real service processes against the test stack, each scenario on its own topic prefix,
collection and consumer group, and read back what they published."""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from subprocess import Popen
from typing import Any

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from lorafeed import procs
from lorafeed.kafka_clients import ensure_topics, make_admin, make_consumer, make_producer
from schemas import TOPICS, Event, Topic, decode, encode, topic_name
from tests.support.stack import RunningStack

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Scenario:
    """An isolated slice of the shared stack: topics under ``prefix``, one collection."""

    stack: RunningStack
    prefix: str
    collection: str
    log_dir: Path

    @classmethod
    def create(cls, stack: RunningStack, log_dir: Path) -> Scenario:
        tag = uuid.uuid4().hex[:8]
        prefix = f"{stack.prefix}s{tag}."
        ensure_topics(make_admin(stack.bootstrap), prefix)
        return cls(stack, prefix, f"kb_{tag}", log_dir)

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("LORAFEED_FAILPOINT", None)
        env.update(
            {
                "LORAFEED_STATE_DIR": str(self.stack.settings.state_dir),
                "LORAFEED_TOPIC_PREFIX": self.prefix,
                "LORAFEED_PII_KEY": "test-key-0123456789abcdef",
                "STREAMS_COLLECTION": self.collection,
                "STREAMS_APP_ID": f"streams-{self.collection}",
                "STREAMS_TORCH_THREADS": "1",
                "HF_HUB_OFFLINE": "1",
                "TRANSFORMERS_OFFLINE": "1",
                "PYTHONPATH": str(ROOT),
            }
        )
        env.update(extra)
        return env

    def start_streams(self, name: str = "streams", **env: str) -> procs.ProcessHandle:
        return self.spawn_streams(name, **env)[0]

    def spawn_streams(
        self, name: str = "streams", **env: str
    ) -> tuple[procs.ProcessHandle, Popen[bytes]]:
        """A streams worker process (and its Popen, for its exit status)."""
        return procs.spawn_child(
            name,
            [sys.executable, "-m", "streams"],
            self.log_dir / f"{name}-{uuid.uuid4().hex[:4]}.log",
            env=self.env(**env),
            cwd=ROOT,
        )

    def publish_raw(
        self, values: Iterable[tuple[str, bytes]], topic: Topic = Topic.RECORDS_RAW
    ) -> None:
        producer = make_producer(self.stack.bootstrap)
        for key, value in values:
            producer.produce(topic_name(topic, self.prefix), key=key, value=value)
            producer.poll(0)
        assert producer.flush(30) == 0

    def publish(self, events: Iterable[Event], topic: Topic = Topic.RECORDS_RAW) -> None:
        self.publish_raw((getattr(e, "record_id", ""), encode(e)) for e in events)

    def read_all(self, topic: Topic) -> list[Event]:
        """Every message currently on ``topic`` (all partitions), decoded."""
        return [
            decode(topic, value)
            for value in _read_values(
                self.stack.bootstrap, topic_name(topic, self.prefix), TOPICS[topic].partitions
            )
        ]


Position = tuple[int, int]  # (partition, offset) of a produced message


def produce_landed(
    bootstrap: str, name: str, items: Iterable[tuple[str, bytes]], timeout_s: float = 60
) -> list[Position]:
    """Produce (key, value) pairs to topic `name`, waiting out a full local queue, and return
    where each landed, in order; fails naming the item when the broker refused one."""
    producer = make_producer(bootstrap)
    items = list(items)
    landed: list[Position | None] = [None] * len(items)
    errors: list[str] = []

    def report(index: int) -> Any:
        def delivered(err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                errors.append(f"item {index}: {err}")
            else:
                landed[index] = (msg.partition() or 0, msg.offset() or 0)

        return delivered

    for index, (key, value) in enumerate(items):
        while True:
            try:
                producer.produce(name, key=key, value=value, on_delivery=report(index))
                break
            except BufferError:
                producer.poll(0.5)
        producer.poll(0)
    assert producer.flush(timeout_s) == 0 and not errors, errors
    assert None not in landed
    return [p for p in landed if p is not None]


def wait_for(predicate, timeout_s: float, what: str, interval: float = 0.5):  # type: ignore[no-untyped-def]
    """Poll ``predicate`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def _read_values(bootstrap: str, name: str, partitions: int) -> list[bytes]:
    consumer: Consumer = make_consumer(bootstrap, f"reader-{uuid.uuid4().hex[:8]}")
    try:
        # Tansu's watermarks are wrong (PLATFORM.md): read from the start until idle instead.
        consumer.assign([TopicPartition(name, p, 0) for p in range(partitions)])
        values, idle_since = [], time.monotonic()
        while time.monotonic() - idle_since < 1.5:
            msg = consumer.poll(0.3)
            if msg is None or msg.error():
                continue
            values.append(msg.value())
            idle_since = time.monotonic()
        return values
    finally:
        consumer.close()


@contextmanager
def running(
    handles: Mapping[str, procs.ProcessHandle] | None = None,
) -> Iterator[dict[str, procs.ProcessHandle]]:
    """Stop every process registered in the yielded dict, by pid, when the block ends."""
    started: dict[str, procs.ProcessHandle] = dict(handles or {})
    try:
        yield started
    finally:
        for handle in started.values():
            procs.stop(handle)
