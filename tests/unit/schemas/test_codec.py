"""The codec round-trips every event and turns every kind of bad input into a typed error."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import codec
from schemas.base import Event
from schemas.codec import MAX_DEPTH, decode, encode
from schemas.dead_letters import DeadLetterReason
from schemas.errors import (
    InvalidFieldError,
    NestingTooDeep,
    NotAnObject,
    NotJson,
    NotUtf8,
    PayloadTooLarge,
    SchemaError,
    SchemaVersionError,
    UnknownFieldError,
    UnknownTopic,
)
from schemas.model_events import AdapterPromoted
from schemas.records import RecordIngested
from schemas.topics import MIB, TOPICS, Topic

RAW = Topic.RECORDS_RAW


def _bytes(payload: Any) -> bytes:
    return json.dumps(payload).encode()


def _decode_raw(payload: Any, **options: Any) -> Event:
    return decode(RAW, _bytes(payload), **options)


@pytest.mark.parametrize("topic", list(Topic))
def test_every_sample_round_trips(topic: Topic, samples: dict[Topic, list[Event]]) -> None:
    for event in samples[topic]:
        data = encode(event)
        decoded = decode(topic, data)
        assert type(decoded) is type(event)
        assert decoded == event
        assert encode(decoded) == data


def test_topic_may_be_given_by_name(samples: dict[Topic, list[Event]]) -> None:
    event = samples[Topic.SCORES_OUT][0]
    assert decode("scores.out", encode(event)) == event


def test_model_events_decode_to_their_own_class(samples: dict[Topic, list[Event]]) -> None:
    for event in samples[Topic.MODEL_EVENTS]:
        assert type(decode(Topic.MODEL_EVENTS, encode(event))) is type(event)
    promoted = json.loads(encode(samples[Topic.MODEL_EVENTS][1]))
    assert isinstance(decode(Topic.MODEL_EVENTS, _bytes(promoted)), AdapterPromoted)


def test_encoding_is_compact_sorted_utf8(samples: dict[Topic, list[Event]]) -> None:
    event = samples[RAW][0]
    data = encode(event)
    text = data.decode("utf-8")
    assert "Café ☕" in text
    assert '"occurred_at":"2024-05-01T12:30:15.123456Z"' in text
    assert ", " not in text.replace("Café ☕", "")
    assert text.startswith('{"content":')
    keys = list(json.loads(data))
    assert keys == sorted(keys)


def test_equal_events_encode_identically(record_payload: dict[str, Any]) -> None:
    swapped = dict(record_payload)
    swapped["metadata"] = dict(reversed(list(record_payload["metadata"].items())))
    first = RecordIngested.model_validate(record_payload)
    second = RecordIngested.model_validate(swapped)
    assert encode(first) == encode(second)


@pytest.mark.parametrize(
    ("data", "error", "fragment"),
    [
        (b'{"a": "\xff"}', NotUtf8, "offset 7"),
        (b'{"schema_version": 1,', NotJson, "line 1 column 22"),
        (b"", NotJson, "Expecting value"),
        (b"\xef\xbb\xbf{}", NotJson, "BOM"),
        (b"[1, 2]", NotAnObject, "is an array"),
        (b'"text"', NotAnObject, "is a string"),
        (b"null", NotAnObject, "is null"),
        (b"42", NotAnObject, "is a number"),
        (b'{"x": NaN}', NotJson, "NaN is not a JSON number"),
        (b'{"x": -Infinity}', NotJson, "-Infinity is not a JSON number"),
        (b'{"x": 1e400}', NotJson, "overflows"),
        (b'{"x": ' + b"9" * 5000 + b"}", NotJson, "digits"),
        (b'{"a": 1, "b": {"k": 1, "k": 2}}', NotJson, "duplicate object keys ['k']"),
        (b"[" * 100_000, NestingTooDeep, "deeper than 64"),
        (b'{"a":' * 100_000, NestingTooDeep, "deeper than 64"),
    ],
)
def test_malformed_bytes(data: bytes, error: type[SchemaError], fragment: str) -> None:
    with pytest.raises(error) as info:
        decode(RAW, data)
    assert fragment in str(info.value)
    assert str(info.value).startswith("records.raw: ")
    assert info.value.reason is error.reason


def test_nesting_is_checked_after_parsing(record_payload: dict[str, Any]) -> None:
    def nested(depth: int) -> Any:
        value: Any = "leaf"
        for _ in range(depth):
            value = {"k": value}
        return value

    # The record is level 1 and the metadata object level 2: MAX_DEPTH - 1 objects fit in it.
    record_payload["metadata"] = nested(MAX_DEPTH - 1)
    assert isinstance(_decode_raw(record_payload), RecordIngested)
    record_payload["metadata"] = nested(MAX_DEPTH)
    with pytest.raises(NestingTooDeep):
        _decode_raw(record_payload)


@pytest.mark.parametrize(
    ("version", "fragments"),
    [
        (2, ["schema_version 2 is not supported (newer than this code)", "supported: 1"]),
        (0, ["schema_version 0 is not supported;", "supported: 1"]),
        ("1", ["must be an integer, got '1' (str)"]),
        (1.0, ["got 1.0 (float)"]),
        (True, ["got True (bool)"]),
        (None, ["got None (NoneType)"]),
    ],
)
def test_schema_version_errors(
    record_payload: dict[str, Any], version: object, fragments: list[str]
) -> None:
    record_payload["schema_version"] = version
    with pytest.raises(SchemaVersionError) as info:
        _decode_raw(record_payload)
    for fragment in fragments:
        assert fragment in str(info.value)
    assert info.value.reason is DeadLetterReason.SCHEMA_VERSION


def test_missing_schema_version(record_payload: dict[str, Any]) -> None:
    del record_payload["schema_version"]
    with pytest.raises(SchemaVersionError, match="schema_version is missing; supported: 1"):
        _decode_raw(record_payload)


def test_unknown_fields_are_named(record_payload: dict[str, Any]) -> None:
    record_payload.update(colour="red", size=3)
    with pytest.raises(UnknownFieldError) as info:
        _decode_raw(record_payload)
    assert sorted(info.value.fields) == ["colour", "size"]
    assert "unknown fields" in str(info.value)
    assert info.value.reason is DeadLetterReason.UNKNOWN_FIELD


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("record_id", 5, "record_id: Input should be a valid string (got 5)"),
        ("content", None, "content: Input should be a valid string (got None)"),
        ("op", "insert", "op: Input should be 'upsert' or 'delete' (got 'insert')"),
        ("metadata", [], "metadata: Input should be an object (got [])"),
        ("occurred_at", 1714564800, "occurred_at: Input should be a valid datetime"),
        ("occurred_at", "2024-05-01T12:00:00", "no timezone"),
        ("occurred_at", "yesterday", "occurred_at"),
    ],
)
def test_wrong_types_are_refused_not_coerced(
    record_payload: dict[str, Any], field: str, value: object, fragment: str
) -> None:
    record_payload[field] = value
    with pytest.raises(InvalidFieldError) as info:
        _decode_raw(record_payload)
    assert fragment in str(info.value)
    assert info.value.problems[0][0] == field


def test_integers_are_strict(samples: dict[Topic, list[Event]]) -> None:
    letter = json.loads(encode(samples[Topic.RECORDS_DLQ][0]))
    for bad in ("3", 3.0, True):
        with pytest.raises(InvalidFieldError, match="partition"):
            decode(Topic.RECORDS_DLQ, _bytes(letter | {"partition": bad}))


def test_missing_required_fields_are_all_listed(record_payload: dict[str, Any]) -> None:
    del record_payload["occurred_at"], record_payload["source"]
    with pytest.raises(InvalidFieldError) as info:
        _decode_raw(record_payload)
    assert {path for path, _ in info.value.problems} == {"occurred_at", "source"}
    assert "occurred_at: Field required" in str(info.value)


def test_echoed_values_are_cut(record_payload: dict[str, Any]) -> None:
    record_payload["record_id"] = "\x00" + "x" * 100_000
    record_payload["op"] = "y" * 100_000
    with pytest.raises(InvalidFieldError) as info:
        _decode_raw(record_payload)
    assert len(str(info.value)) < 1000
    assert "record_id" in str(info.value)


def test_many_problems_are_summarised(samples: dict[Topic, list[Event]]) -> None:
    config = json.loads(encode(samples[Topic.RECORDS_INDEXED][0]))
    config["chunk_ids"] = [1] * 20
    config["chunk_count"] = 20
    with pytest.raises(InvalidFieldError, match="and 12 more"):
        decode(Topic.RECORDS_INDEXED, _bytes(config))


def test_lone_surrogates_are_refused(record_payload: dict[str, Any]) -> None:
    data = _bytes(record_payload).replace(b'"faq-42"', b'"\\ud800"')
    with pytest.raises(NotJson, match=r"lone surrogate '\\ud800'"):
        decode(RAW, data)


def test_domain_rules_apply(feedback_payload: dict[str, Any]) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"task": "../etc"}, "task name '../etc'"),
        ({"adapter_version": "1.2"}, "'1.2' is not MAJOR.MINOR.PATCH"),
        ({"rating": None}, "kind 'rating' requires the field 'rating'"),
    ]
    for changes, fragment in cases:
        with pytest.raises(InvalidFieldError, match=re.escape(fragment)):
            decode(Topic.FEEDBACK_EVENTS, _bytes(feedback_payload | changes))


def test_size_is_checked_before_parsing(record_payload: dict[str, Any]) -> None:
    data = _bytes(record_payload)
    assert isinstance(decode(RAW, data, max_bytes=len(data)), RecordIngested)
    with pytest.raises(PayloadTooLarge, match=f"{len(data)} bytes, the limit is {len(data) - 1}"):
        decode(RAW, data, max_bytes=len(data) - 1)
    with pytest.raises(PayloadTooLarge):
        decode(RAW, b"\xff" * 11, max_bytes=10)


def test_default_limit_is_the_topics(record_payload: dict[str, Any]) -> None:
    record_payload["content"] = "x" * (2 * MIB)
    data = _bytes(record_payload)
    assert isinstance(decode(RAW, data), RecordIngested)
    with pytest.raises(PayloadTooLarge):
        decode(Topic.RECORDS_CLEAN, b" " * (TOPICS[Topic.RECORDS_CLEAN].max_message_bytes + 1))
    with pytest.raises(PayloadTooLarge):
        decode(Topic.FEEDBACK_EVENTS, data)


def test_unknown_topic() -> None:
    with pytest.raises(UnknownTopic, match="unknown topic 'records.rawx'; known: records.raw"):
        decode("records.rawx", b"{}")
    with pytest.raises(UnknownTopic):
        decode("acme.records.raw", b"{}")


def _upgrade_v0(payload: dict[str, Any]) -> dict[str, Any]:
    payload["content"] = payload.pop("body")
    payload["schema_version"] = 1
    return payload


def test_upgraders_run_before_validation(
    record_payload: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(codec.UPGRADERS, ("RecordIngested", 0), _upgrade_v0)
    old = dict(record_payload, schema_version=0, body=record_payload.pop("content"))
    upgraded = _decode_raw(old)
    assert isinstance(upgraded, RecordIngested)
    assert upgraded == _decode_raw(record_payload | {"content": old["body"]})
    record_payload["schema_version"] = 7
    with pytest.raises(SchemaVersionError, match="supported: 0, 1"):
        _decode_raw(record_payload)


@pytest.mark.parametrize(
    ("upgrader", "fragment"),
    [
        (lambda payload: payload, "returned schema_version 0"),
        (lambda payload: 1 / 0, "failed: division by zero"),
        (lambda payload: [], "failed"),
    ],
)
def test_broken_upgraders_are_schema_errors(
    record_payload: dict[str, Any], monkeypatch: pytest.MonkeyPatch, upgrader: Any, fragment: str
) -> None:
    monkeypatch.setitem(codec.UPGRADERS, ("RecordIngested", 0), upgrader)
    with pytest.raises(SchemaVersionError, match=fragment):
        _decode_raw(record_payload | {"schema_version": 0})


def test_unexpected_failures_are_processing_errors(
    record_payload: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    def leaves_a_datetime(payload: dict[str, Any]) -> dict[str, Any]:
        return payload | {"schema_version": 1, "occurred_at": datetime(2024, 1, 1)}

    monkeypatch.setitem(codec.UPGRADERS, ("RecordIngested", 0), leaves_a_datetime)
    with pytest.raises(SchemaError) as info:
        _decode_raw(record_payload | {"schema_version": 0})
    assert info.value.reason is DeadLetterReason.PROCESSING_ERROR
    assert "TypeError" in str(info.value)


@settings(max_examples=50, deadline=None)
@given(
    content=st.text(min_size=1, max_size=200),
    metadata=st.dictionaries(
        st.text(max_size=10),
        st.recursive(
            st.none()
            | st.booleans()
            | st.integers()
            | st.floats(allow_nan=False, allow_infinity=False)
            | st.text(max_size=20),
            lambda inner: (
                st.lists(inner, max_size=3)
                | st.dictionaries(st.text(max_size=5), inner, max_size=3)
            ),
            max_leaves=10,
        ),
        max_size=5,
    ),
    when=st.datetimes(timezones=st.timezones()),
)
def test_arbitrary_records_round_trip(
    content: str, metadata: dict[str, Any], when: datetime
) -> None:
    try:
        record = RecordIngested(
            schema_version=1,
            record_id="r",
            op="upsert",
            source="s",
            content_type="text/plain",
            content=content,
            metadata=metadata,
            occurred_at=when,
        )
    except ValueError:
        return  # a datetime with no UTC equivalent (year 1 / 9999 edges) is rightly refused
    assert decode(RAW, encode(record)) == record
