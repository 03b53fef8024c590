"""What the dashboard reads from Kafka: true end offsets per topic, committed offsets per
consumer group, and the model events and dead-letter reasons since the topics began.

End offsets are read from each partition's tail, not taken from the broker's watermark:
the embedded broker (Tansu) answers ListOffsets(latest) with the base offset of the last batch
+ 1 (PLATFORM.md), so the reader seeks there and consumes to partition EOF. The dashboard never
joins a group and never commits (its consumers only ``assign``).
"""

from __future__ import annotations

import json
import time
from collections import Counter, deque
from collections.abc import Iterable, Mapping

from confluent_kafka import (
    OFFSET_BEGINNING,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)
from confluent_kafka.admin import OffsetSpec  # type: ignore[attr-defined]

from lorafeed.dashboard_model import GroupLag, ModelEventRow
from lorafeed.kafka_clients import make_admin, make_consumer
from schemas import TOPICS, Topic, decode, topic_name
from schemas.errors import SchemaError

FOLLOWED_DLQS = (Topic.RECORDS_DLQ, Topic.FEEDBACK_DLQ)
_READER = {"enable.partition.eof": True, "isolation.level": "read_uncommitted"}
_DETAIL_FIELDS = ("reason", "previous_version", "parent_version", "to_version")


class BrokerUnavailable(RuntimeError):
    """The broker did not answer a dashboard read."""


def _event_row(value: bytes) -> ModelEventRow | None:
    try:
        event = decode(Topic.MODEL_EVENTS, value)
    except SchemaError:
        return None
    data = event.model_dump(mode="json")
    version = data.get("version", data.get("to_version"))
    detail = "; ".join(f"{k}: {data[k]}" for k in _DETAIL_FIELDS if data.get(k) is not None)
    if "from_version" in data:
        detail = f"from {data['from_version']}" + (f"; {detail}" if detail else "")
    return ModelEventRow(
        at=event.occurred_at.timestamp(),
        type=str(data.get("type", "?")),
        task=event.task,
        version=version,
        node=data.get("node"),
        detail=detail[:300],
    )


def _dlq_reason(value: bytes) -> str:
    try:
        reason = json.loads(value).get("reason")
    except (ValueError, AttributeError):
        return "unreadable"
    return reason if isinstance(reason, str) else "unreadable"


class BrokerReader:
    """Reads for one refresh at a time; not thread-safe (the collector thread owns it)."""

    def __init__(self, bootstrap: str, prefix: str, *, timeout_s: float = 5.0,
                 events_kept: int = 500) -> None:
        self.prefix, self.timeout_s = prefix, timeout_s
        self._admin = make_admin(bootstrap)
        self._tail = make_consumer(bootstrap, "lorafeed-dashboard", **_READER)
        self._follower = make_consumer(bootstrap, "lorafeed-dashboard", **_READER)
        self._names = {topic_name(t, prefix): t for t in Topic}
        self._following: set[str] = set()
        self.unreadable: dict[str, str] = {}  # topic name -> why its offsets could not be read
        self.events: deque[ModelEventRow] = deque(maxlen=events_kept)
        self.rejected: dict[str, Counter[str]] = {t.value: Counter() for t in FOLLOWED_DLQS}

    def close(self) -> None:
        self._tail.close()
        self._follower.close()

    def _partitions(self) -> list[TopicPartition]:
        return [TopicPartition(name, p) for name, t in self._names.items()
                for p in range(TOPICS[t].partitions)]

    def end_offsets(self) -> dict[tuple[str, int], int]:
        """(topic name, partition) -> offset after the last message, for every table topic."""
        latest = OffsetSpec.latest()  # type: ignore[no-untyped-call]
        futures = self._admin.list_offsets({tp: latest for tp in self._partitions()},
                                           request_timeout=self.timeout_s)
        marks, failed = {}, {}
        for tp, future in futures.items():
            try:
                marks[(tp.topic, tp.partition)] = future.result().offset
            except KafkaException as exc:
                failed[tp.topic] = str(exc)
        self.unreadable = dict(sorted(failed.items()))
        if not marks:
            raise BrokerUnavailable(f"ListOffsets failed: {next(iter(failed.values()), '?')}")
        ends = dict(marks)
        start = [TopicPartition(t, p, mark - 1) for (t, p), mark in marks.items() if mark > 0]
        if not start:
            return ends
        self._tail.assign(start)
        waiting = {(tp.topic, tp.partition) for tp in start}
        deadline = time.monotonic() + self.timeout_s
        try:
            while waiting and time.monotonic() < deadline:
                msg = self._tail.poll(0.2)
                if msg is None:
                    continue
                key = (msg.topic() or "", msg.partition() or 0)
                error = msg.error()
                if error is not None and error.code() == KafkaError._PARTITION_EOF:
                    ends[key] = max(ends[key], msg.offset() or 0)
                    waiting.discard(key)
                elif error is None:
                    ends[key] = max(ends[key], (msg.offset() or 0) + 1)
        finally:
            self._tail.unassign()
        return ends

    def group_lags(self, ends: Mapping[tuple[str, int], int]) -> list[GroupLag]:
        """Every consumer group that committed on a table topic, per topic: committed and end
        offsets summed over the topic's partitions (uncommitted partitions count from 0)."""
        try:
            listed = self._admin.list_consumer_groups(request_timeout=self.timeout_s).result()
            groups = sorted(g.group_id for g in listed.valid)
        except KafkaException as exc:
            raise BrokerUnavailable(f"ListGroups failed: {exc}") from exc
        lags = []
        for group in groups:
            committed = self._committed(group)
            for name in sorted({topic for topic, _p in committed}):
                partitions = range(TOPICS[self._names[name]].partitions)
                end = sum(ends.get((name, p), 0) for p in partitions)
                done = sum(committed.get((name, p), 0) for p in partitions)
                lags.append(GroupLag(group, self._names[name].value, done, max(end, done)))
        return lags

    def _committed(self, group: str) -> dict[tuple[str, int], int]:
        try:
            futures = self._admin.list_consumer_group_offsets(
                [ConsumerGroupTopicPartitions(group)], request_timeout=self.timeout_s)
            result = next(iter(futures.values())).result()
        except KafkaException:
            return {}  # the group went away between the two requests
        return {(tp.topic, tp.partition): tp.offset for tp in result.topic_partitions or []
                if tp.topic in self._names and tp.offset >= 0}

    def follow(self, max_messages: int = 20_000) -> None:
        """Read what arrived on model.events and the dead-letter topics since the last call."""
        wanted = [topic_name(t, self.prefix) for t in (Topic.MODEL_EVENTS, *FOLLOWED_DLQS)]
        if set(wanted) != self._following:
            self._follower.assign([TopicPartition(name, p, OFFSET_BEGINNING) for name in wanted
                                   for p in range(TOPICS[self._names[name]].partitions)])
            self._following = set(wanted)
        for _ in range(max(1, max_messages // 500)):
            batch = self._follower.consume(500, timeout=0.3)
            messages = [m for m in batch if m.error() is None]
            self._absorb(messages)
            if not batch:
                return

    def _absorb(self, messages: Iterable[Message]) -> None:
        for msg in messages:
            topic = self._names.get(msg.topic() or "")
            value = msg.value() or b""
            if topic is Topic.MODEL_EVENTS:
                row = _event_row(value)
                if row is not None:
                    self.events.append(row)
            elif topic is not None:
                self.rejected[topic.value][_dlq_reason(value)] += 1
