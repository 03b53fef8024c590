"""Dead letters on `records.dlq` and `feedback.dlq`: rejected input, why, and its original bytes.

Originals up to `DLQ_FULL_MAX` bytes are kept whole; larger ones keep their sha256, size and
the first `DLQ_HEAD_BYTES` bytes. Build them with `dead_letter`, which applies that rule.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Final, Self

from pydantic import Field, model_validator

from schemas.base import Event
from schemas.fields import KafkaTopicName, NonNegativeInt, Sha256Hex, UtcDatetime, cut

DLQ_FULL_MAX: Final = 256 * 1024
DLQ_HEAD_BYTES: Final = 4096
DETAIL_MAX: Final = 1000
KEY_MAX: Final = 1024


class DeadLetterReason(StrEnum):
    """Why an input was dead-lettered: a closed, machine-readable set."""

    NOT_UTF8 = "not_utf8"
    NOT_JSON = "not_json"
    NOT_AN_OBJECT = "not_an_object"
    SCHEMA_VERSION = "schema_version"
    UNKNOWN_FIELD = "unknown_field"
    INVALID_FIELD = "invalid_field"
    TOO_LARGE = "too_large"
    QUALITY_TOO_SHORT = "quality_too_short"
    QUALITY_TOO_LONG = "quality_too_long"
    QUALITY_SYMBOLS = "quality_symbols"
    QUALITY_REPEATED = "quality_repeated"
    QUALITY_LOW_INFORMATION = "quality_low_information"
    HTML_TOO_DEEP = "html_too_deep"
    UNKNOWN_TASK = "unknown_task"
    UNKNOWN_REQUEST = "unknown_request"
    LABEL_NOT_IN_SET = "label_not_in_set"
    KIND_NOT_FOR_TASK = "kind_not_for_task"
    PROCESSING_ERROR = "processing_error"


class DeadLettered(Event):
    """One rejected input (key: the original key when there was one).

    `original_b64` holds the whole original (standard base64) unless `original_truncated`, in
    which case it holds only the first `DLQ_HEAD_BYTES` bytes; `original_sha256` and
    `original_size` always describe the whole original.
    """

    source_topic: KafkaTopicName
    partition: Annotated[int, Field(ge=0, le=2**31 - 1)] | None = None
    offset: Annotated[int, Field(ge=0, le=2**63 - 1)] | None = None
    key: Annotated[str, Field(max_length=KEY_MAX)] | None = None
    reason: DeadLetterReason
    detail: Annotated[str, Field(max_length=DETAIL_MAX)]
    original_b64: str
    original_truncated: bool = False
    original_sha256: Sha256Hex
    original_size: NonNegativeInt
    dead_lettered_at: UtcDatetime

    def original_bytes(self) -> bytes:
        """The kept original bytes: all of them, or the head if `original_truncated`."""
        return base64.b64decode(self.original_b64, validate=True)

    @model_validator(mode="after")
    def _original_consistent(self) -> Self:
        try:
            kept = self.original_bytes()
        except binascii.Error as exc:
            raise ValueError(f"original_b64 is not valid base64: {exc}") from exc
        if self.original_truncated:
            if self.original_size <= DLQ_FULL_MAX or len(kept) != DLQ_HEAD_BYTES:
                raise ValueError(
                    f"a truncated original must be over {DLQ_FULL_MAX} bytes and keep exactly "
                    f"{DLQ_HEAD_BYTES}; got original_size {self.original_size}, kept {len(kept)}"
                )
            return self
        if len(kept) != self.original_size or len(kept) > DLQ_FULL_MAX:
            raise ValueError(
                f"original_size {self.original_size} does not match the {len(kept)} bytes kept "
                f"(whole originals are at most {DLQ_FULL_MAX} bytes)"
            )
        if hashlib.sha256(kept).hexdigest() != self.original_sha256:
            raise ValueError("original_sha256 does not match the original bytes kept")
        return self


def dead_letter(
    original: bytes,
    reason: DeadLetterReason,
    detail: str,
    *,
    source_topic: str,
    partition: int | None = None,
    offset: int | None = None,
    key: str | None = None,
    now: datetime,
) -> DeadLettered:
    """Build the dead letter for `original`, applying the size cap and cutting long texts.

    `detail` is cut to 1000 characters and `key` to 1024 (decode Kafka key bytes with
    errors="replace"); `now` must be timezone-aware.
    """
    truncated = len(original) > DLQ_FULL_MAX
    kept = original[:DLQ_HEAD_BYTES] if truncated else original
    return DeadLettered(
        schema_version=1,
        source_topic=source_topic,
        partition=partition,
        offset=offset,
        key=None if key is None else cut(key, KEY_MAX),
        reason=reason,
        detail=cut(detail, DETAIL_MAX),
        original_b64=base64.b64encode(kept).decode("ascii"),
        original_truncated=truncated,
        original_sha256=hashlib.sha256(original).hexdigest(),
        original_size=len(original),
        dead_lettered_at=now,
    )
