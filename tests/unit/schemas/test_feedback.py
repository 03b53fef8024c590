"""Feedback: exactly the field named by `kind` is present, with clear messages otherwise."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from schemas.feedback import CORRECTION_MAX_BYTES, ChatMessage, FeedbackReceived


def _validate(payload: dict[str, Any]) -> FeedbackReceived:
    return FeedbackReceived.model_validate(payload)


def _json(payload: dict[str, Any]) -> str:
    return json.dumps(payload)


@pytest.mark.parametrize(
    ("changes", "field", "value"),
    [
        ({}, "rating", 1),
        ({"rating": -1}, "rating", -1),
        (
            {"kind": "correction", "rating": None, "correction": "Ships Monday."},
            "correction",
            "Ships Monday.",
        ),
        ({"kind": "label", "rating": None, "label": "shipping"}, "label", "shipping"),
    ],
)
def test_each_kind_with_its_field(
    feedback_payload: dict[str, Any], changes: dict[str, Any], field: str, value: object
) -> None:
    feedback_payload.update(changes)
    assert getattr(_validate(feedback_payload), field) == value


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"rating": None}, "kind 'rating' requires the field 'rating'"),
        ({"kind": "correction"}, "kind 'correction' requires the field 'correction'"),
        ({"kind": "label"}, "kind 'label' requires the field 'label'"),
        ({"label": "shipping"}, "kind 'rating' must not carry 'label'"),
        ({"kind": "label", "label": "x"}, "kind 'label' must not carry 'rating'"),
        (
            {"kind": "correction", "rating": None, "correction": "c", "label": "x"},
            "kind 'correction' must not carry 'label'",
        ),
        ({"kind": "correction", "rating": None, "correction": "   "}, "must not be empty or blank"),
        ({"kind": "correction", "rating": None, "correction": ""}, "must not be empty"),
        ({"rating": 2}, "Input should be 1 or -1"),
        ({"rating": 0}, "Input should be 1 or -1"),
        ({"rating": True}, "expected an integer, got True"),
        ({"rating": 1.0}, "expected an integer, got 1.0"),
        ({"kind": "thumbs"}, "'rating', 'correction' or 'label'"),
    ],
)
def test_kind_rules(
    feedback_payload: dict[str, Any], changes: dict[str, Any], message: str
) -> None:
    feedback_payload.update(changes)
    with pytest.raises(ValidationError, match=message):
        _validate(feedback_payload)


def test_rating_from_json_must_be_an_integer(feedback_payload: dict[str, Any]) -> None:
    for bad in ("1", 1.0, True):
        feedback_payload["rating"] = bad
        with pytest.raises(ValidationError):
            FeedbackReceived.model_validate_json(_json(feedback_payload), strict=True)


def test_correction_size_limit_is_in_utf8_bytes(feedback_payload: dict[str, Any]) -> None:
    feedback_payload.update(kind="correction", rating=None)
    feedback_payload["correction"] = "é" * (CORRECTION_MAX_BYTES // 2)
    assert len(_validate(feedback_payload).correction or "") == CORRECTION_MAX_BYTES // 2
    feedback_payload["correction"] = "é" * (CORRECTION_MAX_BYTES // 2) + "x"
    with pytest.raises(ValidationError, match=f"{CORRECTION_MAX_BYTES + 1} bytes"):
        _validate(feedback_payload)


def test_input_is_chat_messages_or_text(feedback_payload: dict[str, Any]) -> None:
    assert _validate(feedback_payload).input == "Where is my parcel?"
    feedback_payload["input"] = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
    ]
    messages = _validate(feedback_payload).input
    assert isinstance(messages, list)
    assert messages[1] == ChatMessage(role="user", content="Hi")
    for bad in ([], [{"role": "robot", "content": "x"}], [{"role": "user"}], 5):
        feedback_payload["input"] = bad
        with pytest.raises(ValidationError, match="input"):
            _validate(feedback_payload)


def test_adapter_version_is_required_but_may_be_none(feedback_payload: dict[str, Any]) -> None:
    feedback_payload["adapter_version"] = None
    assert _validate(feedback_payload).adapter_version is None
    del feedback_payload["adapter_version"]
    with pytest.raises(ValidationError, match="adapter_version"):
        _validate(feedback_payload)
    feedback_payload["adapter_version"] = "1.2"
    with pytest.raises(ValidationError, match="MAJOR.MINOR.PATCH"):
        _validate(feedback_payload)


def test_task_name_blocks_path_traversal(feedback_payload: dict[str, Any]) -> None:
    feedback_payload["task"] = "../etc"
    with pytest.raises(ValidationError, match=r"task name '\.\./etc'"):
        _validate(feedback_payload)


def test_times_are_normalised_to_utc(feedback_payload: dict[str, Any]) -> None:
    feedback = _validate(feedback_payload)
    assert feedback.received_at.isoformat() == "2024-05-01T10:00:05+00:00"
