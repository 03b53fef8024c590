"""OpenAI compatibility: request validation, model names, SSE framing, response shapes, and the
official openai client talking to the app in-process (when the package is installed)."""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest
from pydantic import ValidationError

from serving import openai_compat as oa
from serving.errors import InvalidRequest

BASE: dict[str, Any] = {"model": "support", "messages": [{"role": "user", "content": "hi"}]}


def request(**changes: Any) -> oa.ChatCompletionRequest:
    return oa.ChatCompletionRequest.model_validate({**BASE, **changes})


def test_defaults_and_helpers() -> None:
    body = request(messages=[{"role": "system", "content": "be brief"},
                             {"role": "user", "content": [{"type": "text", "text": "a"},
                                                          {"type": "text", "text": "b"}]},
                             {"role": "assistant", "content": "ok"}])
    assert (body.stream, body.n, body.temperature, body.lorafeed.retrieval) == (False, 1, 1.0,
                                                                                True)
    assert body.turns()[1] == {"role": "user", "content": "ab"}
    assert body.last_user_turn() == "ab"
    assert request(stop="END").stops() == ["END"]
    assert request(max_tokens=9, max_completion_tokens=7).requested_max_tokens() == 7
    assert request().requested_max_tokens() is None


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"n": 2}, "n must be 1"),
        ({"stop": ["a", ""]}, "must not be empty"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "role"),
        ({"temperature": 2.5}, "temperature"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"logit_bias": {}}, "logit_bias"),
        ({"lorafeed": {"retrieval": "maybe"}}, "retrieval"),
    ],
)
def test_invalid_requests_name_the_field(changes: dict[str, Any], needle: str) -> None:
    with pytest.raises(ValidationError, match=needle):
        request(**changes)


def test_parse_model() -> None:
    assert oa.parse_model("support") == ("support", None)
    assert oa.parse_model("support@1.2.3") == ("support", "1.2.3")
    assert oa.parse_model("support@base") == ("support", "base")
    with pytest.raises(InvalidRequest, match="'support@1.2'"):
        oa.parse_model("support@1.2")


def test_sse_framing_and_bodies() -> None:
    ext = oa.lorafeed_extension("r1", None, ["kb-1#00001"])
    chunk = oa.chunk_body(completion_id="chatcmpl-r1", created=7, model="support",
                          delta={"content": "é\n"}, finish_reason=None, extension=ext)
    event = oa.sse(chunk)
    assert event.startswith(b"data: ") and event.endswith(b"\n\n")
    assert event.count(b"\n") == 2  # a newline in the content stays escaped inside the JSON
    assert json.loads(event[6:]) == chunk
    assert chunk["choices"][0]["delta"] == {"content": "é\n"}
    assert oa.SSE_DONE == b"data: [DONE]\n\n"
    done = oa.completion_body(completion_id="chatcmpl-r1", created=7, model="support",
                              content="hi", finish_reason="stop", usage_counts=oa.usage(3, 1),
                              extension=ext)
    assert done["usage"] == {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}
    assert done["lorafeed"] == {"request_id": "r1", "adapter_version": None,
                                "passage_ids": ["kb-1#00001"]}
    usage_chunk = oa.chunk_body(completion_id="c", created=7, model="m", delta={},
                                finish_reason=None, extension=ext, usage_counts=oa.usage(1, 1),
                                choices=False)
    assert usage_chunk["choices"] == [] and usage_chunk["usage"]["total_tokens"] == 2


def test_models_body() -> None:
    body = oa.models_body({"b": "generation", "a": "classification"}, {"a": "1.0.0"})
    assert [m["id"] for m in body["data"]] == ["a", "b"]
    assert body["data"][1]["lorafeed"] == {"kind": "generation", "active_version": None}


def test_the_official_openai_client_works_against_the_app() -> None:
    openai = pytest.importorskip("openai")
    httpx2 = pytest.importorskip("httpx2")
    from tests.unit.serving.fakes import APP_KEY
    from tests.unit.serving.harness import build

    app = build().client.app

    async def talk() -> tuple[Any, list[Any], Any]:
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://serving") as http:
            client = openai.AsyncOpenAI(api_key=APP_KEY, base_url="http://serving/v1",
                                        http_client=http, max_retries=0)
            answer = await client.chat.completions.create(
                model="support", messages=[{"role": "user", "content": "refunds?"}],
                max_tokens=8, extra_body={"lorafeed": {"retrieval": False}},
            )
            stream = await client.chat.completions.create(
                model="support", messages=[{"role": "user", "content": "refunds?"}], stream=True,
            )
            chunks = [chunk async for chunk in stream]
            models = await client.models.list()
            with pytest.raises(openai.NotFoundError, match="not served here"):
                await client.chat.completions.create(model="nope", messages=[
                    {"role": "user", "content": "x"}])
            return answer, chunks, models

    answer, chunks, models = anyio.run(talk)
    assert answer.choices[0].message.content == "Refunds take five days."
    assert answer.model_extra["lorafeed"]["passage_ids"] == []
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Refunds take five days."
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert chunks[0].model_extra["lorafeed"]["request_id"] == "req-1"
    assert [m.id for m in models.data] == ["fraud", "support"]
