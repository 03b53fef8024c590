"""Reusable field types accept what the contracts promise and name the bad value otherwise."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from schemas.fields import (
    Identifier,
    JsonObject,
    KafkaTopicName,
    Sha256Hex,
    TaskName,
    UtcDatetime,
    show,
)

TASK = TypeAdapter(TaskName)
SHA = TypeAdapter(Sha256Hex)
IDENT = TypeAdapter(Identifier)
WHEN = TypeAdapter(UtcDatetime)
TOPIC = TypeAdapter(KafkaTopicName)
JSON_OBJECT = TypeAdapter(JsonObject)


def _error(adapter: TypeAdapter[Any], value: object) -> str:
    with pytest.raises(ValidationError) as info:
        adapter.validate_python(value)
    return str(info.value)


@pytest.mark.parametrize("name", ["fraud", "support-triage", "a", "0", "t_1", "a" * 64])
def test_task_name_accepts(name: str) -> None:
    assert TASK.validate_python(name) == name


@pytest.mark.parametrize(
    "name",
    ["../etc", "", "Fraud", "-x", "_x", "a/b", "a.b", "a" * 65, "fraud\n", " fraud", "ﬁ", ".."],
)
def test_task_name_rejects_with_the_value(name: str) -> None:
    message = _error(TASK, name)
    assert repr(name) in message
    assert "task name" in message


def test_sha256_hex() -> None:
    assert SHA.validate_python("0" * 64) == "0" * 64
    for bad in ["A" * 64, "0" * 63, "0" * 65, "g" * 64, "0" * 63 + "\n"]:
        assert "sha256" in _error(SHA, bad)


@pytest.mark.parametrize("value", ["x", "café/ü 42", "r" * 256, "a b", "faq-42#0"])
def test_identifier_accepts(value: str) -> None:
    assert IDENT.validate_python(value) == value


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("", "must not be empty"),
        ("r" * 257, "257 characters"),
        ("a\x00b", "control character"),
        ("a\nb", "control character"),
        ("a\x85", "control character"),
        ("a\x7f", "control character"),
    ],
)
def test_identifier_rejects(value: str, fragment: str) -> None:
    assert fragment in _error(IDENT, value)


def test_identifier_message_does_not_echo_huge_values() -> None:
    message = _error(IDENT, "x" * 100_000)
    assert len(message) < 1000


def test_show_cuts_long_reprs() -> None:
    assert show("abc") == "'abc'"
    cut = show("y" * 500)
    assert len(cut) == 80
    assert cut.endswith("...")


def test_naive_datetime_is_rejected() -> None:
    message = _error(WHEN, datetime(2024, 1, 1, 12, 0))
    assert "no timezone" in message
    assert "2024-01-01T12:00:00" in message


def test_aware_datetime_is_normalised_to_utc() -> None:
    paris = timezone(timedelta(hours=2))
    value = WHEN.validate_python(datetime(2024, 1, 1, 14, 0, tzinfo=paris))
    assert value.utcoffset() == timedelta(0)
    assert value == datetime(2024, 1, 1, 12, 0, tzinfo=UTC)
    assert value.hour == 12


def test_datetime_out_of_utc_range_is_a_validation_error() -> None:
    early = datetime(1, 1, 1, 0, 0, tzinfo=timezone(timedelta(hours=1)))
    assert "out of range" in _error(WHEN, early)


def test_json_string_datetimes_need_an_offset() -> None:
    assert WHEN.validate_json('"2024-01-01T00:00:00Z"', strict=True).tzinfo is not None
    with pytest.raises(ValidationError, match="no timezone"):
        WHEN.validate_json('"2024-01-01T00:00:00"', strict=True)


@pytest.mark.parametrize("name", ["records.raw", "acme-prod_1.records.raw", "x" * 249])
def test_kafka_topic_name_accepts(name: str) -> None:
    assert TOPIC.validate_python(name) == name


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "a b", "x" * 250, "tópico"])
def test_kafka_topic_name_rejects(name: str) -> None:
    assert "Kafka topic name" in _error(TOPIC, name)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_json_object_rejects_non_finite_numbers_at_any_depth(bad: float) -> None:
    assert "finite" in _error(JSON_OBJECT, {"a": [1, {"b": [bad]}]})


def test_json_object_accepts_nested_json() -> None:
    value: dict[str, Any] = {"a": [1, 2.5, None, True, "s", {"b": []}]}
    assert JSON_OBJECT.validate_python(value) == value
