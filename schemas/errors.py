"""Typed decoding errors: each carries the `DeadLetterReason` a DLQ record should state.

`schemas.codec.decode` raises only these, whatever the input bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from pydantic import ValidationError

from schemas.dead_letters import DeadLetterReason
from schemas.fields import ECHO_LIMIT, cut, show


class SchemaError(ValueError):
    """Base of every contract violation; `reason` is machine-readable, the message is not."""

    reason: DeadLetterReason = DeadLetterReason.INVALID_FIELD

    def __init__(self, message: str, *, reason: DeadLetterReason | None = None) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason


class PayloadTooLarge(SchemaError):
    """The payload exceeds the byte limit; it was not parsed."""

    reason = DeadLetterReason.TOO_LARGE


class NestingTooDeep(SchemaError):
    """The JSON nests deeper than the codec allows (a JSON bomb guard)."""

    reason = DeadLetterReason.TOO_LARGE


class NotUtf8(SchemaError):
    """The payload is not valid UTF-8."""

    reason = DeadLetterReason.NOT_UTF8


class NotJson(SchemaError):
    """The payload is not strict JSON (syntax, NaN/Infinity, duplicate keys, huge numbers)."""

    reason = DeadLetterReason.NOT_JSON


class NotAnObject(SchemaError):
    """The top-level JSON value is not an object."""

    reason = DeadLetterReason.NOT_AN_OBJECT


class SchemaVersionError(SchemaError):
    """`schema_version` is missing, not an integer, or not supported by this code."""

    reason = DeadLetterReason.SCHEMA_VERSION


class UnknownFieldError(SchemaError):
    """The object has fields the contract does not define; `fields` names them."""

    reason = DeadLetterReason.UNKNOWN_FIELD

    def __init__(self, message: str, *, fields: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.fields = tuple(fields)


class InvalidFieldError(SchemaError):
    """Fields are missing, mistyped or fail a rule; `problems` holds (path, message) pairs."""

    reason = DeadLetterReason.INVALID_FIELD

    def __init__(self, message: str, *, problems: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(message)
        self.problems = tuple(problems)


class UnknownTopic(SchemaError):
    """The topic name is not in the topic table (a caller bug, not bad input)."""

    reason = DeadLetterReason.PROCESSING_ERROR


_PROBLEMS_SHOWN: Final = 8
_MESSAGE_MAX: Final = 200
_ECHO_TYPES_SKIPPED: Final = frozenset({"missing", "value_error", "assertion_error"})


def _path(loc: tuple[int | str, ...]) -> str:
    return cut(".".join(str(part) for part in loc), ECHO_LIMIT) or "(object)"


def from_validation_error(exc: ValidationError, context: str) -> SchemaError:
    """Translate a pydantic ValidationError into the SchemaError a DLQ record should carry.

    Field paths and messages are kept; echoed input is cut to ~80 characters.
    """
    unknown: list[str] = []
    problems: list[tuple[str, str]] = []
    for error in exc.errors(include_url=False, include_context=False):
        if error["type"] == "json_invalid":
            return NotJson(f"{context}: not JSON: {cut(error['msg'], _MESSAGE_MAX)}")
        path = _path(error["loc"])
        if error["type"] == "extra_forbidden":
            unknown.append(path)
            continue
        message = cut(error["msg"], _MESSAGE_MAX)
        if error["type"] not in _ECHO_TYPES_SKIPPED and error["loc"]:
            message += f" (got {show(error['input'])})"
        problems.append((path, message))
    listed = "; ".join(f"{path}: {message}" for path, message in problems[:_PROBLEMS_SHOWN])
    if len(problems) > _PROBLEMS_SHOWN:
        listed += f"; and {len(problems) - _PROBLEMS_SHOWN} more"
    if unknown:
        names = ", ".join(unknown[:_PROBLEMS_SHOWN])
        if len(unknown) > _PROBLEMS_SHOWN:
            names += f" and {len(unknown) - _PROBLEMS_SHOWN} more"
        also = f"; also invalid: {listed}" if problems else ""
        return UnknownFieldError(f"{context}: unknown fields {names}{also}", fields=unknown)
    return InvalidFieldError(f"{context}: invalid fields: {listed}", problems=problems)
