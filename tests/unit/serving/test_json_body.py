"""Strict JSON bodies: UTF-8 only, no lone surrogate escape; through the API they are 422."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from serving.json_body import loads_strict
from tests.unit.serving.harness import APP, Harness, error_of, fresh


@pytest.fixture
def h() -> Iterator[Harness]:
    yield from fresh()


@pytest.mark.parametrize(
    ("body", "value"),
    [
        (b'{"a": "\\ud83d\\ude00 ok"}', {"a": "\U0001f600 ok"}),  # a pair is one character
        (b'{"a": "\\\\ud800"}', {"a": "\\ud800"}),  # an escaped backslash, then text
        ('{"a": "é"}'.encode(), {"a": "é"}),
    ],
)
def test_valid_json_parses_as_usual(body: bytes, value: object) -> None:
    assert loads_strict(body) == value


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"a": "x\\ud800"}', "\\ud800 is a lone surrogate"),
        (b'{"a\\udc00": 1}', "\\udc00 is a lone surrogate"),
        (b'{"a": "\xed\xa0\x80"}', "not UTF-8"),  # a surrogate encoded as raw bytes
        ('{"a": "é"}'.encode("latin-1"), "not UTF-8"),
        (b'{"a": ', "Expecting value"),
    ],
)
def test_invalid_text_is_a_json_decode_error(body: bytes, reason: str) -> None:
    with pytest.raises(json.JSONDecodeError, match=reason.replace("\\", "\\\\")):
        loads_strict(body)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/score", b'{"task": "fraud", "text": "a\\ud800"}'),
        ("/v1/score", b'{"task": "fraud", "fields": {"k\\udfff": 1}}'),
        ("/v1/chat/completions",
         b'{"model": "support", "messages": [{"role": "user", "content": "\\ud800"}]}'),
        ("/v1/feedback", b'{"request_id": "r", "kind": "correction", "correction": "\\ud800"}'),
    ],
)
def test_a_lone_surrogate_anywhere_in_a_body_is_422(h: Harness, path: str, body: bytes) -> None:
    headers = {**APP, "content-type": "application/json"}
    response = h.client.post(path, content=body, headers=headers)
    assert response.status_code == 422, response.text
    error = error_of(response)
    assert error["code"] == "invalid_request" and "lone surrogate" in error["message"]
