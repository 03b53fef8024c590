"""Every event type through the real broker: keyed produce, consumer-group read, commits,
and a non-Python client (kafkajs) seeing the same topics and producing a raw record."""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from confluent_kafka import TopicPartition

from lorafeed.kafka_clients import make_consumer
from lorafeed.roundtrip import publish, read_back
from lorafeed.samples import message_key, sample_events
from schemas import TOPICS, RecordIngested, Topic, decode, encode, topic_name
from tests.support.stack import RunningStack

pytestmark = pytest.mark.integration

JS_DIR = Path(__file__).resolve().parents[1] / "js"


def test_every_event_type_round_trips_with_committed_offsets(stack: RunningStack) -> None:
    events = sample_events()
    acked = publish(stack.bootstrap, stack.prefix, events)
    assert acked == {topic: len(batch) for topic, batch in events.items()}
    group = f"rt-{uuid.uuid4().hex[:8]}"
    seen = read_back(stack.bootstrap, stack.prefix, events, group_id=group)
    # Partitions interleave, so compare per topic as multisets of the encoded events.
    assert {t: sorted(map(encode, found)) for t, found in seen.found.items()} == {
        t: sorted(map(encode, batch)) for t, batch in events.items()
    }
    assert seen.rejected == []
    # Every topic that got messages has a committed position in the group.
    committed_topics = {name for name, _ in seen.committed}
    assert committed_topics == {topic_name(t, stack.prefix) for t in events}

    # A new member of the same group starts from the commits: nothing is delivered again.
    consumer = make_consumer(stack.bootstrap, group)
    consumer.subscribe([topic_name(t, stack.prefix) for t in events])
    redelivered = [m for m in (consumer.poll(1.0) for _ in range(10)) if m and not m.error()]
    consumer.close()
    assert redelivered == []


def test_keys_follow_the_topic_table(stack: RunningStack) -> None:
    events = {Topic.MODEL_EVENTS: sample_events()[Topic.MODEL_EVENTS]}
    publish(stack.bootstrap, stack.prefix, events)
    consumer = make_consumer(stack.bootstrap, f"keys-{uuid.uuid4().hex[:8]}")
    consumer.assign([TopicPartition(topic_name(Topic.MODEL_EVENTS, stack.prefix), 0, 0)])
    keys = set()
    for _ in range(40):
        msg = consumer.poll(0.5)
        if msg is not None and not msg.error():
            keys.add(msg.key().decode())
        if keys:
            break
    consumer.close()
    assert keys == {message_key(Topic.MODEL_EVENTS, events[Topic.MODEL_EVENTS][0])} == {
        "support-chat"
    }


needs_node = pytest.mark.skipif(
    shutil.which("node") is None or not (JS_DIR / "node_modules" / "kafkajs").exists(),
    reason="node or kafkajs missing (make js installs it)",
)


def _js(*args: str, stdin: bytes = b"") -> str:
    return subprocess.run(
        ["node", str(JS_DIR / "kafka_interop.js"), *args],
        input=stdin, capture_output=True, check=True, timeout=60,
    ).stdout.decode()


@needs_node
def test_kafkajs_lists_every_topic_with_its_partitions(stack: RunningStack) -> None:
    listed = json.loads(_js(stack.bootstrap, "topics"))
    for topic, spec in TOPICS.items():
        assert listed[topic_name(topic, stack.prefix)] == spec.partitions


@needs_node
def test_a_raw_record_from_kafkajs_decodes_in_python(stack: RunningStack) -> None:
    record_id = f"js-{uuid.uuid4().hex[:8]}"
    raw = {"schema_version": 1, "record_id": record_id, "op": "upsert", "source": "node-app",
           "content_type": "text/plain", "content": "发票可以在账户页面下载。",
           "metadata": {"lang": "zh"}, "occurred_at": "2026-11-20T08:00:00Z"}
    name = topic_name(Topic.RECORDS_RAW, stack.prefix)
    _js(stack.bootstrap, "produce", name, record_id, stdin=json.dumps(raw).encode())
    consumer = make_consumer(stack.bootstrap, f"js-{uuid.uuid4().hex[:8]}")
    consumer.subscribe([name])
    found = None
    for _ in range(60):
        msg = consumer.poll(0.5)
        if msg is not None and not msg.error() and msg.key() == record_id.encode():
            found = decode(Topic.RECORDS_RAW, msg.value())
            break
    consumer.close()
    assert isinstance(found, RecordIngested)
    assert found.record_id == record_id and found.content == raw["content"]
