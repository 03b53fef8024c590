"""Reusable validated field types shared by every contract: names, ids, digests, UTC times.

Each type is an `Annotated` alias whose validator names the bad value (cut to ~80 characters).
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal

from pydantic import AfterValidator, BeforeValidator, Field, FiniteFloat, JsonValue

ECHO_LIMIT: Final = 80

TASK_NAME_PATTERN: Final = r"^[a-z0-9][a-z0-9_-]{0,63}$"
SHA256_PATTERN: Final = r"^[0-9a-f]{64}$"
IDENTIFIER_MAX: Final = 256
IDENTIFIER_PATTERN: Final = r"^[^\x00-\x1f\x7f-\x9f]+$"
KAFKA_TOPIC_PATTERN: Final = r"^[a-zA-Z0-9._-]{1,249}$"

_TASK_NAME_RE: Final = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_SHA256_RE: Final = re.compile(r"[0-9a-f]{64}")
_CONTROL_RE: Final = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_KAFKA_TOPIC_RE: Final = re.compile(r"[a-zA-Z0-9._-]{1,249}")


def cut(text: str, limit: int) -> str:
    """`text` itself if short enough, else its first `limit - 3` characters and "..."."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def show(value: object, limit: int = ECHO_LIMIT) -> str:
    """`repr(value)` cut to `limit` characters, for messages that must not echo huge input."""
    return cut(repr(value), limit)


def _check_task_name(value: str) -> str:
    if not _TASK_NAME_RE.fullmatch(value):
        raise ValueError(
            f"task name {show(value)} must match {TASK_NAME_PATTERN} "
            "(lowercase letters, digits, '_' or '-', 1 to 64 characters)"
        )
    return value


def _check_sha256(value: str) -> str:
    if not _SHA256_RE.fullmatch(value):
        raise ValueError(f"{show(value)} is not a sha256 digest (64 lowercase hex characters)")
    return value


def check_identifier(value: str) -> str:
    """Reject empty ids, ids over 256 characters and ids holding control characters."""
    if not value:
        raise ValueError("identifier must not be empty")
    if len(value) > IDENTIFIER_MAX:
        raise ValueError(
            f"identifier {show(value)} has {len(value)} characters, the maximum is {IDENTIFIER_MAX}"
        )
    control = _CONTROL_RE.search(value)
    if control is not None:
        raise ValueError(
            f"identifier {show(value)} contains control character {control.group()!r} "
            f"at index {control.start()}"
        )
    return value


def _check_kafka_topic(value: str) -> str:
    if not _KAFKA_TOPIC_RE.fullmatch(value) or value in (".", ".."):
        raise ValueError(
            f"{show(value)} is not a Kafka topic name ([a-zA-Z0-9._-], 1 to 249 characters)"
        )
    return value


def _require_utc(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(
            f"datetime {value.isoformat()} has no timezone; send UTC, e.g. 2024-01-31T12:00:00Z"
        )
    try:
        return value.astimezone(UTC)
    except OverflowError as exc:  # e.g. 0001-01-01T00:00:00+01:00 has no UTC equivalent
        raise ValueError(f"datetime {value.isoformat()} is out of range in UTC") from exc


def _exact_int(value: object) -> object:
    # Literal[1] alone accepts true and 1.0 even in strict mode; an integer field must not.
    if isinstance(value, bool | float):
        raise ValueError(f"expected an integer, got {show(value)}")
    return value


def _check_finite_json(value: dict[str, JsonValue]) -> dict[str, JsonValue]:
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            raise ValueError(f"JSON values must be finite numbers, got {item!r}")
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return value


def _schema(**keywords: JsonValue) -> Any:
    """JSON Schema keywords documenting what a validator enforces (for non-Python producers)."""
    return Field(json_schema_extra=keywords)


TaskName = Annotated[
    str,
    AfterValidator(_check_task_name),
    _schema(pattern=TASK_NAME_PATTERN, minLength=1, maxLength=64),
]
"""A task name; its alphabet also keeps it safe as a path segment (no '/', no '..')."""

Sha256Hex = Annotated[str, AfterValidator(_check_sha256), _schema(pattern=SHA256_PATTERN)]
"""A sha256 digest as 64 lowercase hex characters."""

Identifier = Annotated[
    str,
    AfterValidator(check_identifier),
    _schema(pattern=IDENTIFIER_PATTERN, minLength=1, maxLength=IDENTIFIER_MAX),
]
"""A non-empty name of at most 256 characters without control characters."""

RecordId = Identifier
RequestId = Identifier
EventId = Identifier
LabelName = Identifier

KafkaTopicName = Annotated[
    str, AfterValidator(_check_kafka_topic), _schema(pattern=KAFKA_TOPIC_PATTERN)
]
"""A full Kafka topic name as seen on the wire (prefix included)."""

UtcDatetime = Annotated[datetime, AfterValidator(_require_utc), _schema(format="date-time")]
"""A timezone-aware datetime, normalised to UTC; naive datetimes are rejected."""

SchemaVersion1 = Annotated[Literal[1], BeforeValidator(_exact_int)]
"""The integer 1 exactly (not "1", 1.0 or true)."""

JsonObject = Annotated[dict[str, JsonValue], AfterValidator(_check_finite_json)]
"""A JSON object of any JSON values; NaN and infinities are rejected."""

Text = Annotated[str, Field(min_length=1, max_length=1000)]
"""A short human readable reason: non-empty, at most 1000 characters."""

NonNegativeInt = Annotated[int, Field(ge=0)]
Probability = Annotated[FiniteFloat, Field(ge=0.0, le=1.0)]
Rating = Annotated[Literal[1, -1], BeforeValidator(_exact_int)]
