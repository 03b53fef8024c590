"""Served contexts and feedback idempotency, pure parts: pseudonymization before storage, claim
outcomes from the stored record, stable keys and payload digests, field rendering."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from pydantic import JsonValue, ValidationError

from lorafeed.privacy import Pseudonymizer
from schemas.feedback import ChatMessage
from serving.contexts import (
    ClaimConflict,
    ClaimInProgress,
    ClaimNew,
    ClaimSame,
    ServedContext,
    classify_claim,
    feedback_key,
    pseudonymize_context,
)
from serving.requests import FeedbackRequest, render_fields, score_text

PSEUDO = Pseudonymizer(b"k" * 32)
NOW = datetime(2025, 1, 1, tzinfo=UTC)


def test_pseudonymize_context_covers_messages_text_and_output() -> None:
    chat = ServedContext(
        task="support", kind="chat", adapter_version="1.0.0", served_at=NOW,
        input=[ChatMessage(role="user", content="I am bob@example.com, call +86 138 0013 8000")],
        output="Sure bob@example.com", passage_ids=["kb-1#00001"],
    )
    clean = pseudonymize_context(chat, PSEUDO)
    dumped = clean.model_dump_json()
    assert "bob@example.com" not in dumped and "138 0013 8000" not in dumped
    assert clean.passage_ids == chat.passage_ids and clean.served_at == NOW
    assert pseudonymize_context(clean, PSEUDO) == clean  # idempotent
    scored = chat.model_copy(update={"kind": "score", "input": "card 4111 1111 1111 1111",
                                     "output": "fraud"})
    assert "4111" not in pseudonymize_context(scored, PSEUDO).model_dump_json()


def test_served_context_round_trips_and_validates() -> None:
    context = ServedContext(task="fraud", kind="score", input="x", output="ok",
                            adapter_version=None, served_at=NOW)
    assert ServedContext.model_validate_json(context.model_dump_json()) == context
    with pytest.raises(ValidationError):
        ServedContext(task="fraud", kind="score", input="x", output="ok",
                      adapter_version="latest", served_at=NOW)


def test_claim_outcomes() -> None:
    sha, other = "a" * 64, "b" * 64
    assert classify_claim(None, sha) == ClaimNew()
    assert classify_claim([sha.encode(), b"pending", None], sha) == ClaimInProgress()
    assert classify_claim([other.encode(), b"pending", None], sha) == ClaimConflict()
    assert classify_claim([other.encode(), b"done", b"{}"], sha) == ClaimConflict()
    done = classify_claim([sha.encode(), b"done", json.dumps({"status": "accepted"}).encode()],
                          sha)
    assert done == ClaimSame({"status": "accepted"})


def test_feedback_keys_separate_kind_and_annotator() -> None:
    keys = {feedback_key("r", "rating", None), feedback_key("r", "rating", "a"),
            feedback_key("r", "label", "a"), feedback_key("r2", "rating", None),
            feedback_key("r", "rating", "None")}
    assert len(keys) == 5
    assert feedback_key("r", "rating", "a") == feedback_key("r", "rating", "a")


def test_payload_digest_changes_with_any_field() -> None:
    base = FeedbackRequest(request_id="r", kind="rating", rating=1, annotator="a")
    same = FeedbackRequest.model_validate({"annotator": "a", "rating": 1, "kind": "rating",
                                           "request_id": "r"})
    assert base.payload_sha256() == same.payload_sha256()
    flipped = FeedbackRequest(request_id="r", kind="rating", rating=-1, annotator="a")
    assert base.payload_sha256() != flipped.payload_sha256()


@pytest.mark.parametrize(
    "body",
    [
        {"kind": "rating"},
        {"kind": "rating", "rating": 2},
        {"kind": "rating", "rating": 1.0},
        {"kind": "label", "label": "ok", "rating": 1},
        {"kind": "correction", "correction": "   "},
        {"kind": "rating", "rating": 1, "extra": True},
    ],
)
def test_invalid_feedback_is_refused(body: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        FeedbackRequest.model_validate({"request_id": "r", **body})


def test_fields_render_stably() -> None:
    fields: dict[str, JsonValue] = {"b": "two\nlines", "a": 1.5, "c": {"y": [1, None], "x": True}}
    assert render_fields(fields) == 'a: 1.5\nb: two lines\nc: {"x":true,"y":[1,null]}'
    assert render_fields(dict(reversed(list(fields.items())))) == render_fields(fields)
    assert score_text("free text", {"k": "v"}) == "k: v\n\nfree text"
    assert score_text("only", None) == "only"
