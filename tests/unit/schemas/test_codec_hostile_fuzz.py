"""Fuzzing every topic's decoder with the hostile corpus (extends test_codec_fuzz.py, which covers
arbitrary bytes and mutated JSON): each string, number or id of a valid sample replaced by a
hostile value decodes to an event that round-trips, or raises a SchemaError whose reason is a
dead-letter reason and whose message stays short; bombs (size, depth) are refused before they
cost anything; a dead letter of any original is itself a valid event on its DLQ topic."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas import TOPICS, DeadLetterReason, Event, SchemaError, Topic, decode, encode
from schemas.dead_letters import DLQ_FULL_MAX, DLQ_HEAD_BYTES, dead_letter
from tests.security.hostile import (
    BAD_IDENTIFIERS,
    BAD_TASKS,
    BAD_VERSIONS,
    INVALID_UTF8,
    MB,
    STRINGS,
    deep_json,
    deep_object,
)

FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck))
NOW = datetime(2026, 1, 2, tzinfo=UTC)
_HOSTILE_VALUES = st.one_of(
    st.sampled_from(sorted(STRINGS.values())),
    st.sampled_from([*BAD_IDENTIFIERS.values(), *BAD_VERSIONS, *BAD_TASKS]),
    st.sampled_from([2**63, -(2**63) - 1, 10**30, 1e308, -0.0, 5e-324, 0, -1, True, None, [], {}]),
    st.sampled_from([deep_object(70), [[[[[]]]]], {"": ""}, {"\x00": 1}]),
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a leaf or container inside a JSON value."""
    found = [prefix]
    if isinstance(value, dict):
        for key, inner in value.items():
            found += _paths(inner, (*prefix, key))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            found += _paths(inner, (*prefix, index))
    return found


def _replace(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: _replace(value[head], rest, new)}
    copy = list(value)
    copy[head] = _replace(copy[head], rest, new)
    return copy


def _check(topic: Topic, payload: bytes) -> Event | SchemaError:
    try:
        event = decode(topic, payload)
    except SchemaError as error:
        assert isinstance(error.reason, DeadLetterReason)
        assert 0 < len(str(error)) < 4000, len(str(error))
        return error
    assert decode(topic, encode(event)) == event
    return event


@FUZZ
@given(data=st.data())
def test_hostile_values_anywhere_in_a_valid_event(
    data: st.DataObject, samples: dict[Topic, list[Event]]
) -> None:
    topic = data.draw(st.sampled_from(list(Topic)))
    value = json.loads(encode(data.draw(st.sampled_from(samples[topic]))))
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(_paths(value)[1:]))
        value = _replace(value, path, data.draw(_HOSTILE_VALUES))
    _check(topic, json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass"))


_DEEP_ARRAY = deep_json(200_000).encode()
_TEN_MB_FIELD = b', "x": "' + b"y" * (10 * MB) + b'"}'


@pytest.mark.parametrize("topic", list(Topic))
def test_bombs_are_refused_quickly_with_their_reason(
    topic: Topic, samples: dict[Topic, list[Event]]
) -> None:
    limit = TOPICS[topic].max_message_bytes
    sample = json.loads(encode(samples[topic][0]))
    bombs = {
        "deep_array": (_DEEP_ARRAY, DeadLetterReason.TOO_LARGE),
        "deep_field": (json.dumps({**sample, "x": deep_object(100)}).encode(),
                       DeadLetterReason.TOO_LARGE),
        "oversized": (b'{"a": "' + b"x" * limit + b'"}', DeadLetterReason.TOO_LARGE),
        "ten_mb_field": (json.dumps(sample).encode()[:-1] + _TEN_MB_FIELD,
                         DeadLetterReason.TOO_LARGE),
        "huge_int": (b'{"schema_version": ' + b"9" * 10_000 + b"}", DeadLetterReason.NOT_JSON),
        "nul_only": (b"\x00" * 100, DeadLetterReason.NOT_JSON),
        "many_keys": (json.dumps({f"k{i}": i for i in range(50_000)}).encode(),
                      DeadLetterReason.SCHEMA_VERSION),
    }
    for name, utf8 in INVALID_UTF8.items():
        bombs[f"utf8_{name}"] = (b'{"schema_version": 1, "x": "' + utf8 + b'"}',
                                 DeadLetterReason.NOT_UTF8)
    for name, (payload, reason) in bombs.items():
        began = time.perf_counter()
        outcome = _check(topic, payload)
        assert isinstance(outcome, SchemaError), name
        assert outcome.reason is reason, (name, outcome.reason, str(outcome)[:200])
        assert time.perf_counter() - began < 5, f"{name} took too long"


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(original=st.one_of(
    st.binary(max_size=600),
    st.sampled_from([b"", *INVALID_UTF8.values(), b"x" * (DLQ_FULL_MAX + 1),
                     b"\xff" * DLQ_FULL_MAX]),
), reason=st.sampled_from(list(DeadLetterReason)), detail=st.sampled_from(sorted(STRINGS.values())),
   key=st.one_of(st.none(), st.sampled_from(sorted(STRINGS.values()))))
def test_a_dead_letter_of_anything_is_a_valid_dlq_event(
    original: bytes, reason: DeadLetterReason, detail: str, key: str | None
) -> None:
    letter = dead_letter(original, reason, detail or "x", source_topic="t.records.raw",
                         partition=0, offset=1, key=key, now=NOW)
    for topic in (Topic.RECORDS_DLQ, Topic.FEEDBACK_DLQ):
        assert decode(topic, encode(letter)) == letter
    kept = letter.original_bytes()
    assert kept == (original[:DLQ_HEAD_BYTES] if len(original) > DLQ_FULL_MAX else original)
