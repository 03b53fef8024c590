"""Wire codec: events to canonical UTF-8 JSON and back; `decode` raises only SchemaError subclasses.

A breaking change to an event adds `schema_version: Literal[2]` plus one `UPGRADERS` entry,
(class name, 1) -> function(version-1 dict) -> version-2 dict, applied on read before validation.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable
from typing import Any, Final, Literal, get_args, overload

from pydantic import BaseModel, TypeAdapter, ValidationError

from schemas.audit import AuditRecorded
from schemas.base import Event, canonical_json
from schemas.dead_letters import DeadLettered, DeadLetterReason
from schemas.errors import (
    InvalidFieldError,
    NestingTooDeep,
    NotAnObject,
    NotJson,
    NotUtf8,
    PayloadTooLarge,
    SchemaError,
    SchemaVersionError,
    UnknownTopic,
    from_validation_error,
)
from schemas.feedback import FeedbackReceived
from schemas.fields import cut, show
from schemas.model_events import ModelEvent
from schemas.records import RecordCleaned, RecordIndexed, RecordIngested
from schemas.topics import TOPICS, Topic, TopicSpec
from schemas.transactions import TransactionReceived, TransactionScored

MAX_DEPTH: Final = 64
Upgrader = Callable[[dict[str, Any]], dict[str, Any]]
UPGRADERS: dict[tuple[str, int], Upgrader] = {}
"""(event class name, from schema_version) -> function returning the next version's dict."""


def encode(event: BaseModel) -> bytes:
    """Compact UTF-8 JSON with sorted keys; datetimes as ISO-8601 with offset (`Z`)."""
    return canonical_json(event)


class _Rejected(Exception):
    """Raised from inside json.loads hooks; turned into NotJson."""


def _reject_constant(name: str) -> float:
    raise _Rejected(f"{name} is not a JSON number (NaN and Infinity are refused)")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Rejected(f"number {show(text)} overflows a 64-bit float")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        counts = Counter(key for key, _ in pairs)
        duplicated = sorted(key for key, count in counts.items() if count > 1)
        raise _Rejected(f"duplicate object keys {show(duplicated)}")
    return result


def _parse(data: bytes, topic: Topic) -> dict[str, Any]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NotUtf8(
            f"{topic}: byte {data[exc.start : exc.start + 1]!r} at offset {exc.start} is not valid "
            f"UTF-8 ({exc.reason})"
        ) from exc
    try:
        value = json.loads(
            text,
            object_pairs_hook=_unique_keys,
            parse_constant=_reject_constant,
            parse_float=_finite_float,
        )
    except json.JSONDecodeError as exc:
        raise NotJson(
            f"{topic}: not JSON: {exc.msg} at line {exc.lineno} column {exc.colno} (char {exc.pos})"
        ) from exc
    except _Rejected as exc:
        raise NotJson(f"{topic}: not JSON: {exc}") from exc
    except RecursionError as exc:
        raise NestingTooDeep(f"{topic}: JSON nests deeper than {MAX_DEPTH} levels") from exc
    except ValueError as exc:  # e.g. an integer literal over Python's 4300-digit limit
        raise NotJson(f"{topic}: not JSON: {cut(str(exc), 200)}") from exc
    if not isinstance(value, dict):
        kind = {list: "an array", str: "a string", bool: "a boolean"}.get(type(value), "a number")
        raise NotAnObject(
            f"{topic}: the top-level JSON value is {'null' if value is None else kind}, "
            "expected an object"
        )
    _check_depth(value, topic)
    return value


def _check_depth(value: dict[str, Any], topic: Topic) -> None:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise NestingTooDeep(f"{topic}: JSON nests deeper than {MAX_DEPTH} levels")
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))


def _class_name(spec: TopicSpec, obj: dict[str, Any]) -> str | None:
    if isinstance(spec.value_type, type):
        return spec.value_type.__name__
    variant = spec.variants.get(obj["type"]) if isinstance(obj.get("type"), str) else None
    return None if variant is None else variant.__name__


def _current_version(spec: TopicSpec) -> int:
    classes = [spec.value_type] if isinstance(spec.value_type, type) else spec.variants.values()
    versions = {get_args(cls.model_fields["schema_version"].annotation)[0] for cls in classes}
    return int(max(versions))


def _upgrade(spec: TopicSpec, obj: dict[str, Any]) -> dict[str, Any]:
    """Check `schema_version` and apply upgraders until it is the current version."""
    if "schema_version" not in obj:
        raise SchemaVersionError(
            f"{spec.topic}: schema_version is missing; supported: {_supported(spec, obj)}"
        )
    version = obj["schema_version"]
    if type(version) is not int:
        raise SchemaVersionError(
            f"{spec.topic}: schema_version must be an integer, got {show(version)} "
            f"({type(version).__name__}); supported: {_supported(spec, obj)}"
        )
    current, name = _current_version(spec), _class_name(spec, obj)
    while version != current:
        upgrader = (
            UPGRADERS.get((name, version)) if name is not None and version < current else None
        )
        if upgrader is None:
            newer = " (newer than this code)" if version > current else ""
            raise SchemaVersionError(
                f"{spec.topic}: schema_version {show(version)} is not supported{newer}; "
                f"supported: {_supported(spec, obj)}"
            )
        try:
            obj = upgrader(dict(obj))
            upgraded = obj["schema_version"]
        except Exception as exc:  # an upgrader must not let a bad message escape as a crash
            raise SchemaVersionError(
                f"{spec.topic}: upgrading {name} from schema_version "
                f"{version} failed: {cut(str(exc), 200)}"
            ) from exc
        if type(upgraded) is not int or upgraded <= version:
            raise SchemaVersionError(
                f"{spec.topic}: the upgrader of {name} from {version} "
                f"returned schema_version {show(upgraded)}"
            )
        version = upgraded
    return obj


def _supported(spec: TopicSpec, obj: dict[str, Any]) -> str:
    name = _class_name(spec, obj)
    versions = {_current_version(spec)}
    versions.update(v for (cls_name, v) in UPGRADERS if cls_name == name)
    return ", ".join(str(v) for v in sorted(versions))


def _validate(spec: TopicSpec, obj: dict[str, Any]) -> Event:
    # Strict JSON-mode validation: "1" is no int, 1.0 no int, 0 no bool, dates are strings.
    try:
        payload = json.dumps(obj, ensure_ascii=False, allow_nan=False).encode("utf-8")
    except UnicodeEncodeError as exc:  # json.loads lets "\ud800" through; it is not Unicode
        raise NotJson(
            f"{spec.topic}: not JSON: a string holds the lone surrogate "
            f"{exc.object[exc.start]!r}, which is not valid Unicode"
        ) from exc
    try:
        if isinstance(spec.value_type, TypeAdapter):
            value = spec.value_type.validate_json(payload, strict=True)
        else:
            value = spec.value_type.model_validate_json(payload, strict=True)
    except ValidationError as exc:
        raise from_validation_error(exc, str(spec.topic)) from exc
    if not isinstance(value, Event):
        raise InvalidFieldError(f"{spec.topic}: decoded a {type(value).__name__}, not an event")
    return value


def _resolve(topic: Topic | str) -> TopicSpec:
    try:
        return TOPICS[Topic(topic)]
    except (ValueError, KeyError) as exc:
        raise UnknownTopic(
            f"unknown topic {show(topic)}; known: {', '.join(t.value for t in Topic)}"
        ) from exc


@overload
def decode(
    topic: Literal[Topic.RECORDS_RAW], data: bytes, *, max_bytes: int | None = None
) -> RecordIngested: ...
@overload
def decode(
    topic: Literal[Topic.RECORDS_CLEAN], data: bytes, *, max_bytes: int | None = None
) -> RecordCleaned: ...
@overload
def decode(
    topic: Literal[Topic.RECORDS_INDEXED], data: bytes, *, max_bytes: int | None = None
) -> RecordIndexed: ...
@overload
def decode(
    topic: Literal[Topic.RECORDS_DLQ, Topic.FEEDBACK_DLQ],
    data: bytes,
    *,
    max_bytes: int | None = None,
) -> DeadLettered: ...
@overload
def decode(
    topic: Literal[Topic.FEEDBACK_EVENTS], data: bytes, *, max_bytes: int | None = None
) -> FeedbackReceived: ...
@overload
def decode(
    topic: Literal[Topic.TRANSACTIONS_RAW], data: bytes, *, max_bytes: int | None = None
) -> TransactionReceived: ...
@overload
def decode(
    topic: Literal[Topic.SCORES_OUT], data: bytes, *, max_bytes: int | None = None
) -> TransactionScored: ...
@overload
def decode(
    topic: Literal[Topic.MODEL_EVENTS], data: bytes, *, max_bytes: int | None = None
) -> ModelEvent: ...
@overload
def decode(
    topic: Literal[Topic.AUDIT_EVENTS], data: bytes, *, max_bytes: int | None = None
) -> AuditRecorded: ...
@overload
def decode(topic: Topic | str, data: bytes, *, max_bytes: int | None = None) -> Event: ...


def decode(topic: Topic | str, data: bytes, *, max_bytes: int | None = None) -> Event:
    """Decode one message value of `topic` (an unprefixed name); raise a SchemaError if bad.

    The size is checked before parsing against `max_bytes` (default: the topic's limit).
    """
    spec = _resolve(topic)
    limit = spec.max_message_bytes if max_bytes is None else max_bytes
    if len(data) > limit:
        raise PayloadTooLarge(f"{spec.topic}: payload is {len(data)} bytes, the limit is {limit}")
    obj = _upgrade(spec, _parse(bytes(data), spec.topic))
    try:
        return _validate(spec, obj)
    except SchemaError:
        raise
    except Exception as exc:  # a validator bug must not stop a pipeline: it is dead-lettered
        raise SchemaError(
            f"{spec.topic}: unexpected {type(exc).__name__} while validating: {cut(str(exc), 200)}",
            reason=DeadLetterReason.PROCESSING_ERROR,
        ) from exc
