"""Fuzzing: whatever the bytes, `decode` returns an event or raises a SchemaError, nothing else."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.base import Event
from schemas.codec import decode, encode
from schemas.errors import SchemaError
from schemas.topics import Topic

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()  # NaN and infinities included: json.dumps writes them as NaN / Infinity
    | st.text(max_size=30)
    | st.sampled_from(
        [
            "",
            "1",
            "1.2.3",
            "../etc",
            "2024-05-01T12:00:00",
            "a" * 64,
            "upsert",
            "adapter_promoted",
            "rating",
            "\x00",
            "\ud800",
        ]
    )
)
JSONISH = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def _outcome(topic: Topic, data: bytes) -> Event | SchemaError:
    try:
        return decode(topic, data)
    except SchemaError as error:
        assert isinstance(error.reason, str)
        assert str(error)
        return error


@FUZZ
@given(topic=st.sampled_from(list(Topic)), data=st.binary(max_size=600))
def test_arbitrary_bytes(topic: Topic, data: bytes) -> None:
    assert isinstance(_outcome(topic, data), SchemaError)


def _mutate(draw: st.DrawFn, value: Any, depth: int = 0) -> Any:
    """Replace, delete or add one thing somewhere inside a JSON value."""
    if isinstance(value, dict) and value and depth < 4 and draw(st.booleans()):
        key = draw(st.sampled_from(sorted(value)))
        return {**value, key: _mutate(draw, value[key], depth + 1)}
    if isinstance(value, list) and value and depth < 4 and draw(st.booleans()):
        index = draw(st.integers(0, len(value) - 1))
        return [*value[:index], _mutate(draw, value[index], depth + 1), *value[index + 1 :]]
    action = draw(st.sampled_from(["replace", "delete", "add"]))
    if not isinstance(value, dict) or (action == "replace" and depth > 0):
        return draw(JSONISH)
    if action == "replace" and value:  # keep the top level an object most of the time
        return {**value, draw(st.sampled_from(sorted(value))): draw(JSONISH)}
    if action == "delete" and value:
        key = draw(st.sampled_from(sorted(value)))
        return {k: v for k, v in value.items() if k != key}
    return {**value, draw(st.text(max_size=12)): draw(JSONISH)}


@st.composite
def _mutated_payload(draw: st.DrawFn, samples: dict[Topic, list[Event]]) -> tuple[Topic, bytes]:
    topic = draw(st.sampled_from(list(Topic)))
    origin = topic if draw(st.integers(0, 4)) else draw(st.sampled_from(list(Topic)))
    source = draw(st.sampled_from(samples[origin]))
    value = json.loads(encode(source))
    for _ in range(draw(st.integers(1, 3))):
        value = _mutate(draw, value)
    data = json.dumps(value, ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass")
    if draw(st.integers(0, 3)) == 0:
        cut = draw(st.integers(0, len(data)))
        data = data[:cut] + draw(st.binary(max_size=4)) + data[cut + draw(st.integers(0, 3)) :]
    return topic, data


@FUZZ
@given(data=st.data())
def test_mutated_valid_payloads(data: st.DataObject, samples: dict[Topic, list[Event]]) -> None:
    topic, payload = data.draw(_mutated_payload(samples))
    outcome = _outcome(topic, payload)
    if isinstance(outcome, Event):
        assert decode(topic, encode(outcome)) == outcome


@FUZZ
@given(topic=st.sampled_from(list(Topic)), value=JSONISH)
def test_arbitrary_json(topic: Topic, value: Any) -> None:
    payload = json.dumps(value).encode("utf-8", "surrogatepass")
    assert isinstance(_outcome(topic, payload), Event | SchemaError)
