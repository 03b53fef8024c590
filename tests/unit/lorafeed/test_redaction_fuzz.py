"""Fuzzing the keyless redaction used where no pseudonymizer is at hand: dead letters built from
consumed messages (learner intake, scorer) and log records (access lines with query strings,
messages echoing input, tracebacks). Whatever surrounds a seeded PII value, none survives."""

from __future__ import annotations

import io
import logging
import random
from datetime import UTC, datetime
from urllib.parse import quote

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lorafeed.corpus_pii import PII_MAKERS
from lorafeed.kafka_clients import dead_letter_of
from lorafeed.log_redaction import PiiRedactingFilter
from lorafeed.privacy import contains_raw_pii, redact
from schemas import DeadLetterReason
from tests.security.hostile import STRINGS

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
_AROUND = st.one_of(st.sampled_from(["", " ", "got '", "\n", "(", "=", "%20", ", "]),
                    st.sampled_from(sorted(s[:200] for s in STRINGS.values())))


@st.composite
def _pii(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(sorted(PII_MAKERS)))
    return PII_MAKERS[kind](random.Random(draw(st.integers(0, 2**32))))


class _Message:
    """The parts of a confluent_kafka Message that `dead_letter_of` reads."""

    def __init__(self, key: bytes, value: bytes) -> None:
        self._key, self._value = key, value

    def key(self) -> bytes:
        return self._key

    def value(self) -> bytes:
        return self._value

    def topic(self) -> str:
        return "t.feedback.events"

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return 7


@FUZZ
@given(value=_pii(), before=_AROUND, after=_AROUND)
def test_dead_letters_of_consumed_messages_hold_no_raw_pii(value: str, before: str,
                                                          after: str) -> None:
    detail = f"invalid fields: rating: expected an integer (got {before} {value} {after})"
    original = f'{{"rating": "{value}"}}'.encode()
    key, letter = dead_letter_of(_Message(f"req {value}".encode(), original),  # type: ignore[arg-type]
                                 DeadLetterReason.INVALID_FIELD, detail, datetime.now(UTC))
    for text in (key, letter.key or "", letter.detail):
        assert value not in text and contains_raw_pii(text) == [], text
    assert letter.original_bytes() == original  # the original bytes stay whole, by design


@FUZZ
@given(value=_pii(), before=_AROUND, after=_AROUND)
def test_redaction_leaves_no_raw_pii(value: str, before: str, after: str) -> None:
    text = f"{before} {value} {after}"
    redacted = redact(text)
    assert value not in redacted and contains_raw_pii(redacted) == []
    assert redact(redacted) == redacted


@FUZZ
@given(value=_pii(), around=_AROUND)
def test_log_records_are_redacted_even_percent_encoded(value: str, around: str) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(PiiRedactingFilter())
    logger = logging.getLogger(f"redaction-fuzz-{random.random()}")
    logger.addHandler(handler)
    logger.propagate = False
    logger.warning('%s - "GET %s HTTP/1.1" 200', "127.0.0.1:5000",
                   f"/v1/models?who={quote(value)}&x={quote(around)}")
    logger.warning("echo %s", f"{around} {value}")
    try:
        raise ValueError(f"bad input {value}")
    except ValueError:
        logger.exception("failed")
    written = stream.getvalue()
    assert value not in written and quote(value) not in written, written
    assert "127.0.0.1:5000" in written  # machines' addresses stay readable
