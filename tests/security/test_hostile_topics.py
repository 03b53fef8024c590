"""The hostile corpus through every topic entry point, into real processes: records.raw to the
streams worker, feedback.events to the learner, model.events to the serving node (and the learner
and scorer, which follow it too), transactions.raw to the scorer. Every message is accounted for:
accepted (indexed, stored, scored) or dead-lettered at its own partition and offset with a reason
from the expected set and a detail; undecodable model events are skipped with a logged reason;
no process crashes or logs a traceback, and nothing is written outside the adapter store."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from typing import Any

import pytest

from schemas import DeadLettered, RecordIndexed, Topic, encode
from schemas.feedback import ChatMessage, FeedbackReceived
from schemas.transactions import TransactionScored
from tests.security.hostile import (
    BAD_TASKS,
    BAD_VERSIONS,
    INVALID_UTF8,
    MB,
    STRINGS,
    TEN_MB,
    Payload,
    big_text,
    deep_json,
    deep_object,
    payload_adder,
    raw_record_payloads,
    too_large_record,
)
from tests.security.world import Position, SecureWorld, wait_until

pytestmark = pytest.mark.integration

TIMEOUT_S = 240
NOW = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def _letters(world: SecureWorld, topic: Topic) -> dict[Position, DeadLettered]:
    return {(d.partition, d.offset): d for d in world.read(topic)
            if isinstance(d, DeadLettered) and d.partition is not None and d.offset is not None}


def _check_fates(payloads: list[Payload], positions: list[Position],
                 letters: dict[Position, DeadLettered], accepted: set[str]) -> list[str]:
    """Every payload's fate against its expectation; returns the problems."""
    problems = []
    for payload, position in zip(payloads, positions, strict=True):
        letter = letters.get(position)
        if letter is None:
            if payload.reasons and None not in payload.reasons:
                problems.append(f"{payload.name}: accepted, expected one of {payload.reasons}")
            elif payload.key not in accepted:
                problems.append(f"{payload.name}: neither accepted nor dead-lettered")
            continue
        if payload.reasons and (None in payload.reasons or letter.reason.value in payload.reasons):
            pass
        else:
            problems.append(f"{payload.name}: dead-lettered {letter.reason.value} "
                            f"({letter.detail[:200]}), expected {set(payload.reasons) or 'ok'}")
        if not letter.detail.strip():
            problems.append(f"{payload.name}: a dead letter without a detail")
        kept = letter.original_bytes()
        if letter.original_truncated:
            assert len(payload.value) > 256 * 1024 and payload.value.startswith(kept)
        elif kept != payload.value:
            problems.append(f"{payload.name}: the dead letter lost the original bytes")
    return problems


def test_hostile_records_are_indexed_or_dead_lettered_with_a_reason(world: SecureWorld) -> None:
    tag = f"hr{world.serving.tag}"
    payloads = raw_record_payloads(tag) + [too_large_record(tag, 4 * MB + 100),
                                           too_large_record(tag, 3 * MB)]
    refused = world.produce_refused(Topic.RECORDS_RAW, b"x" * TEN_MB)
    assert "too large" in refused.lower() or "MSG_SIZE_TOO_LARGE" in refused, refused
    positions = world.produce(Topic.RECORDS_RAW, [(p.key, p.value) for p in payloads])
    ids = {json.loads(p.value)["record_id"]: p.key for p in payloads if not p.reasons
           or None in p.reasons if _decodable(p.value)}

    def settled() -> tuple[dict[Position, DeadLettered], set[str]] | None:
        letters = _letters(world, Topic.RECORDS_DLQ)
        indexed = {ids[e.record_id] for e in world.read(Topic.RECORDS_INDEXED)
                   if isinstance(e, RecordIndexed) and e.record_id in ids}
        done = all(pos in letters or p.key in indexed for p, pos in zip(payloads, positions,
                                                                        strict=True))
        return (letters, indexed) if done else None

    letters, indexed = wait_until(settled, TIMEOUT_S, "every hostile record's outcome", world)
    assert _check_fates(payloads, positions, letters, indexed) == []
    assert {d.source_topic for d in letters.values()} == {f"{world.prefix}records.raw"}
    world.assert_alive()


def _decodable(value: bytes) -> bool:
    try:
        return isinstance(json.loads(value), dict) and "record_id" in json.loads(value)
    except (ValueError, RecursionError):
        return False


def _feedback(request_id: str, **fields: Any) -> dict[str, Any]:
    values: dict[str, Any] = dict(
        schema_version=1, request_id=request_id, task="chat", kind="rating", rating=1,
        adapter_version="1.0.0", input=[{"role": "user", "content": "When does it ship?"}],
        output="It ships on Monday.", served_at="2026-03-01T09:00:00Z",
        received_at="2026-03-01T09:00:01Z",
    )
    values.update(fields)
    return {k: v for k, v in values.items() if v is not None}


def _feedback_payloads(tag: str) -> list[Payload]:
    out: list[Payload] = []
    add = payload_adder(tag, out)
    for name, text in STRINGS.items():
        add(f"correction-{name}", _feedback(f"{tag}-c-{name}", kind="correction", rating=None,
                                            correction=text[:30_000], output="I do not know."),
            None)
        add(f"input-{name}", _feedback(f"{tag}-i-{name}", input=[
            {"role": "user", "content": text}], output=text[:5000]))
    for name, data in INVALID_UTF8.items():
        add(f"utf8-{name}", b'{"schema_version": 1, "request_id": "' + data + b'"}', "not_utf8")
    add("deep", deep_json(100_000).encode(), "too_large")
    add("deep-input", _feedback(f"{tag}-deep", input=[{"role": "user", "content": "x",
                                                        "extra": deep_object(80)}]), "too_large")
    add("array", b"[1, 2, 3]", "not_an_object")
    add("oversized", _feedback(f"{tag}-big", output=big_text(MB + 10)), "too_large")
    add("long-correction", _feedback(f"{tag}-long", kind="correction", rating=None,
                                     correction="y" * 40_000), "invalid_field")
    add("unknown-task", _feedback(f"{tag}-unknown", task="nosuchtask"), "unknown_task")
    for index, task in enumerate(BAD_TASKS[:6]):
        add(f"bad-task-{index}", _feedback(f"{tag}-bt-{index}", task=task), "invalid_field")
    for index, version in enumerate(BAD_VERSIONS[:6]):
        add(f"bad-version-{index}", _feedback(f"{tag}-bv-{index}", adapter_version=version),
            "invalid_field")
    add("sql-label", _feedback(f"{tag}-sql", task="intent", kind="label", rating=None,
                               label=STRINGS["sql_drop"], input="refund please"),
        "label_not_in_set")
    add("label-on-chat", _feedback(f"{tag}-loc", kind="label", rating=None, label="billing"),
        "kind_not_for_task")
    add("correction-on-intent", _feedback(f"{tag}-coi", task="intent", kind="correction",
                                          rating=None, correction="x", input="refund"),
        "kind_not_for_task")
    add("nul-request-id", _feedback("a\x00b"), "invalid_field")
    add("traversal-request-id", _feedback("../../etc/passwd"))
    return out


def test_hostile_feedback_is_stored_or_dead_lettered_with_a_reason(world: SecureWorld) -> None:
    tag = f"hf{world.serving.tag}"
    payloads = _feedback_payloads(tag)
    positions = world.produce(Topic.FEEDBACK_EVENTS, [(p.key, p.value) for p in payloads])

    def settled() -> tuple[dict[Position, DeadLettered], set[str]] | None:
        letters = _letters(world, Topic.FEEDBACK_DLQ)
        stored = _stored_requests(world)
        accepted = {p.key for p in payloads if _request_id(p) in stored}
        done = all(pos in letters or p.key in accepted
                   for p, pos in zip(payloads, positions, strict=True))
        return (letters, accepted) if done else None

    letters, accepted = wait_until(settled, TIMEOUT_S, "every hostile feedback's outcome", world)
    assert _check_fates(payloads, positions, letters, accepted) == []
    tables = _tables(world)
    assert {"examples", "replay", "outbox"} <= tables, tables  # DROP TABLE stayed text
    world.assert_alive()


def _request_id(payload: Payload) -> str | None:
    try:
        value = json.loads(payload.value)
    except (ValueError, RecursionError):
        return None
    return value.get("request_id") if isinstance(value, dict) else None


def _stored_requests(world: SecureWorld) -> set[str]:
    """Request ids the learner stored: examples, votes and ratings."""
    if not world.pending_path.exists():
        return set()
    connection = sqlite3.connect(f"file:{world.pending_path}?mode=ro", uri=True, timeout=30)
    try:
        found: set[str] = set()
        for table in sorted(_tables(world)):
            columns = [row[1] for row in connection.execute(f"PRAGMA table_info('{table}')")]
            for column in {"request_id", "item"} & set(columns):
                found |= {row[0] for row in connection.execute(
                    f'SELECT "{column}" FROM "{table}"') if row[0]}
        return found
    finally:
        connection.close()


def _tables(world: SecureWorld) -> set[str]:
    connection = sqlite3.connect(f"file:{world.pending_path}?mode=ro", uri=True, timeout=30)
    try:
        return {row[0] for row in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        connection.close()


def _model_event(task: str, version: str, **fields: Any) -> bytes:
    value = {"schema_version": 1, "type": "adapter_promoted", "event_id": f"ev-{version}",
             "task": task, "occurred_at": "2026-03-01T09:00:00Z", "version": version,
             "manifest_sha256": "a" * 64, **fields}
    return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")


def test_hostile_model_events_never_leave_the_adapter_store(world: SecureWorld) -> None:
    before = _tree(world)
    outside = {p for p in world.root.parent.iterdir()}
    items = [(f"v{i}", _model_event("chat", v)) for i, v in enumerate(BAD_VERSIONS)]
    items += [(f"t{i}", _model_event(t, "1.0.0")) for i, t in enumerate(BAD_TASKS)]
    items += [("rollback", _model_event("chat", "1.0.0", type="adapter_rolled_back",
                                        from_version="1.0.0", to_version="../0.0.1",
                                        reason="x", automatic=False))]
    items += [(f"raw-{n}", v) for n, v in INVALID_UTF8.items()]
    items += [("deep", deep_json(100_000).encode()), ("nul", b"\x00" * 10), ("big", b"x" * MB)]
    missing = [("missing", _model_event("chat", "9.9.9")),
               ("wrong-digest", _model_event("chat", "1.0.0"))]
    positions = world.produce(Topic.MODEL_EVENTS, items + missing)
    node = world.log

    def handled() -> bool:
        text = node("node")
        return all(f"[{p}]@{o}:" in text for p, o in positions)

    wait_until(handled, TIMEOUT_S, "the node's verdict on every model event", world)
    text = node("node")
    for (name, _value), (partition, offset) in zip(items, positions, strict=False):
        line = text[text.index(f"[{partition}]@{offset}:"):].split("\n")[0]
        assert "skipped an undecodable model event" in line, (name, line)
    for log_name in ("learner", "scorer"):  # they follow model.events too, and skip the same
        wait_until(lambda n=log_name: node(n).count("undecodable") >= len(items), TIMEOUT_S,
                   f"{log_name} skipping every undecodable model event", world)
    for (name, _value), (partition, offset) in zip(missing, positions[len(items):],
                                                   strict=True):
        # events only notify: the node re-reads the champion pointer, the truth
        line = text[text.index(f"[{partition}]@{offset}:"):].split("\n")[0]
        assert "AdapterPromoted ->" in line and "activated 9.9.9" not in line, (name, line)
    with world.http() as client:
        models = client.get("/v1/models").json()
    served = {m["id"]: m["lorafeed"]["active_version"] for m in models["data"]}
    assert served["chat"] is not None and served["chat"] != "9.9.9"
    # the learner may be writing a chat version meanwhile (one snapshot: it renames its temp dir)
    assert {p for p in _tree(world) - before if not p.startswith("chat/")} == set()
    assert {p for p in world.root.parent.iterdir()} == outside
    world.assert_alive()


def _tree(world: SecureWorld) -> set[str]:
    root = world.root / "adapters"
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _transaction(event_id: str, **fields: Any) -> dict[str, Any]:
    values = {"schema_version": 1, "event_id": event_id, "task": "intent",
              "fields": {"amount": 12.5}, "text": "card used abroad",
              "occurred_at": "2026-03-01T09:00:00Z", **fields}
    return {k: v for k, v in values.items() if v is not None}


def test_hostile_transactions_are_scored_or_dead_lettered_with_a_reason(
    world: SecureWorld,
) -> None:
    tag = f"ht{world.serving.tag}"
    out: list[Payload] = []
    add = payload_adder(tag, out)
    for name, text in STRINGS.items():
        add(f"text-{name}", _transaction(f"{tag}-t-{name}", text=text,
                                         fields={name: text[:1000], "n": 1}))
    for name, data in INVALID_UTF8.items():
        add(f"utf8-{name}", b'{"schema_version": 1, "event_id": "' + data + b'"}', "not_utf8")
    add("deep-fields", _transaction(f"{tag}-deep", fields=deep_object(80)), "too_large")
    add("nan", json.dumps(_transaction(f"{tag}-nan")).encode()[:-1] + b', "x": NaN}', "not_json")
    add("unknown-task", _transaction(f"{tag}-unknown", task="nosuchtask"), "unknown_task")
    add("chat-task", _transaction(f"{tag}-chat", task="chat"), "unknown_task")
    for index, task in enumerate(BAD_TASKS[:6]):
        add(f"bad-task-{index}", _transaction(f"{tag}-bt-{index}", task=task), "invalid_field")
    add("oversized", _transaction(f"{tag}-big", text=big_text(MB + 10)), "too_large")
    add("empty-fields", _transaction(f"{tag}-empty", fields={}, text=None), "invalid_field")
    add("blank", _transaction(f"{tag}-blank", fields={}, text=" \n\t "), "invalid_field")
    positions = world.produce(Topic.TRANSACTIONS_RAW, [(p.key, p.value) for p in out])
    keys = {p.key for p in out}
    event_ids = {json.loads(p.value)["event_id"]: p.key for p in out if _is_json(p.value)}

    def settled() -> tuple[dict[Position, DeadLettered], set[str]] | None:
        letters = _letters(world, Topic.FEEDBACK_DLQ)
        scored = {event_ids[e.event_id] for e in world.read(Topic.SCORES_OUT)
                  if isinstance(e, TransactionScored) and e.event_id in event_ids}
        done = all(pos in letters or p.key in scored for p, pos in zip(out, positions,
                                                                       strict=True))
        return (letters, scored & keys) if done else None

    letters, scored = wait_until(settled, TIMEOUT_S, "every hostile transaction's outcome", world)
    assert _check_fates(out, positions, letters, scored) == []
    world.assert_alive()


def _is_json(value: bytes) -> bool:
    try:
        return isinstance(json.loads(value), dict)
    except (ValueError, RecursionError):
        return False


def test_feedback_built_by_the_learner_tests_is_well_formed() -> None:
    """The helper above builds what the schema accepts (so rejections are the corpus' doing)."""
    event = FeedbackReceived.model_validate_json(json.dumps(_feedback("r-1")))
    assert isinstance(event.input, list) and isinstance(event.input[0], ChatMessage)
    assert encode(event)
