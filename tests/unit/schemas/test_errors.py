"""Errors carry the DLQ reason of their class and translate pydantic errors readably."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ConfigDict, ValidationError

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
    from_validation_error,
)


class _Sample(BaseModel):
    model_config = ConfigDict(extra="forbid")
    count: int
    name: str


def _validation_error(data: object) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        _Sample.model_validate(data)
    return info.value


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (PayloadTooLarge, DeadLetterReason.TOO_LARGE),
        (NestingTooDeep, DeadLetterReason.TOO_LARGE),
        (NotUtf8, DeadLetterReason.NOT_UTF8),
        (NotJson, DeadLetterReason.NOT_JSON),
        (NotAnObject, DeadLetterReason.NOT_AN_OBJECT),
        (SchemaVersionError, DeadLetterReason.SCHEMA_VERSION),
        (UnknownFieldError, DeadLetterReason.UNKNOWN_FIELD),
        (InvalidFieldError, DeadLetterReason.INVALID_FIELD),
        (UnknownTopic, DeadLetterReason.PROCESSING_ERROR),
    ],
)
def test_reasons(error: type[SchemaError], reason: DeadLetterReason) -> None:
    instance = error("message")
    assert instance.reason is reason
    assert isinstance(instance, ValueError)
    assert str(instance) == instance.message == "message"


def test_reason_can_be_given() -> None:
    error = SchemaError("boom", reason=DeadLetterReason.PROCESSING_ERROR)
    assert error.reason is DeadLetterReason.PROCESSING_ERROR
    assert SchemaError("x").reason is DeadLetterReason.INVALID_FIELD


def test_invalid_fields_name_paths_and_values() -> None:
    error = from_validation_error(_validation_error({"count": "many"}), "topic.x")
    assert isinstance(error, InvalidFieldError)
    assert error.problems[0][0] == "count"
    assert str(error).startswith("topic.x: invalid fields: count: ")
    assert "(got 'many')" in str(error)
    assert "name: Field required" in str(error)
    assert "(got" not in str(error).split("name: ")[1]


def test_unknown_fields_win_and_other_problems_are_kept() -> None:
    error = from_validation_error(_validation_error({"count": 1, "nme": "x"}), "t")
    assert isinstance(error, UnknownFieldError)
    assert error.fields == ("nme",)
    assert "also invalid: name: Field required" in str(error)


def test_huge_inputs_are_not_echoed() -> None:
    error = from_validation_error(_validation_error({"count": "9" * 100_000, "name": "n"}), "t")
    assert len(str(error)) < 400


def test_model_level_problems_have_a_path() -> None:
    error = from_validation_error(_validation_error([1, 2]), "t")
    assert isinstance(error, InvalidFieldError)
    assert error.problems[0][0] == "(object)"
