"""Dead letters keep the whole original up to 256 KiB, else its digest, size and first 4 KiB."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from schemas.codec import decode, encode
from schemas.dead_letters import (
    DETAIL_MAX,
    DLQ_FULL_MAX,
    DLQ_HEAD_BYTES,
    KEY_MAX,
    DeadLettered,
    DeadLetterReason,
    dead_letter,
)
from schemas.topics import TOPICS, Topic

NOW = datetime(2024, 5, 1, tzinfo=UTC)


def _letter(original: bytes, detail: str = "bad", **options: Any) -> DeadLettered:
    return dead_letter(
        original, DeadLetterReason.NOT_JSON, detail, source_topic="records.raw", now=NOW, **options
    )


def _payload(size: int) -> bytes:
    return bytes(i % 251 for i in range(size))


def test_constants() -> None:
    assert DLQ_FULL_MAX == 256 * 1024
    assert DLQ_HEAD_BYTES == 4096


def test_original_of_exactly_256_kib_is_kept_whole() -> None:
    original = _payload(DLQ_FULL_MAX)
    letter = _letter(original)
    assert not letter.original_truncated
    assert letter.original_bytes() == original
    assert letter.original_size == DLQ_FULL_MAX
    assert letter.original_sha256 == hashlib.sha256(original).hexdigest()


def test_original_one_byte_over_keeps_digest_size_and_head() -> None:
    original = _payload(DLQ_FULL_MAX + 1)
    letter = _letter(original)
    assert letter.original_truncated
    assert letter.original_bytes() == original[:DLQ_HEAD_BYTES]
    assert letter.original_size == DLQ_FULL_MAX + 1
    assert letter.original_sha256 == hashlib.sha256(original).hexdigest()


def test_empty_original() -> None:
    letter = _letter(b"")
    assert letter.original_bytes() == b""
    assert letter.original_size == 0


@pytest.mark.parametrize("topic", [Topic.RECORDS_DLQ, Topic.FEEDBACK_DLQ])
def test_largest_dead_letter_fits_its_topic_and_round_trips(topic: Topic) -> None:
    original = _payload(DLQ_FULL_MAX)
    letter = _letter(
        original, detail="é" * 5000, key="k" * 5000, partition=2**31 - 1, offset=2**63 - 1
    )
    data = encode(letter)
    assert len(data) <= TOPICS[topic].max_message_bytes
    decoded = decode(topic, data)
    assert decoded == letter
    assert decoded.original_bytes() == original


def test_detail_and_key_are_cut() -> None:
    letter = dead_letter(
        b"x", DeadLetterReason.TOO_LARGE, "d" * 5000, source_topic="t", key="k" * 5000, now=NOW
    )
    assert len(letter.detail) == DETAIL_MAX
    assert letter.detail.endswith("...")
    assert letter.key is not None
    assert len(letter.key) == KEY_MAX
    short = dead_letter(b"x", DeadLetterReason.TOO_LARGE, "short", source_topic="t", now=NOW)
    assert short.detail == "short"
    assert short.key is None


def test_dead_letter_needs_an_aware_clock() -> None:
    with pytest.raises(ValidationError, match="no timezone"):
        dead_letter(
            b"x", DeadLetterReason.NOT_JSON, "d", source_topic="t", now=datetime(2024, 1, 1)
        )


def test_reason_set_is_closed() -> None:
    data = _letter(b"x").model_dump(mode="json")
    data["reason"] = "because"
    with pytest.raises(ValidationError, match="reason"):
        DeadLettered.model_validate(data)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"original_b64": "not base64!"}, "not valid base64"),
        ({"original_sha256": "0" * 64}, "original_sha256 does not match"),
        ({"original_size": 3}, "original_size 3 does not match"),
        ({"original_truncated": True}, "truncated original must be over"),
        ({"source_topic": "a/b"}, "Kafka topic name"),
        ({"partition": -1}, "partition"),
    ],
)
def test_inconsistent_dead_letters_are_refused(changes: dict[str, Any], message: str) -> None:
    data = _letter(b"hello").model_dump(mode="json")
    data.update(changes)
    with pytest.raises(ValidationError, match=message):
        DeadLettered.model_validate(data)


def test_truncated_head_must_be_exactly_4_kib() -> None:
    data = _letter(_payload(DLQ_FULL_MAX + 1)).model_dump(mode="json")
    data["original_b64"] = base64.b64encode(b"x" * 10).decode()
    with pytest.raises(ValidationError, match="keep exactly 4096"):
        DeadLettered.model_validate(data)
