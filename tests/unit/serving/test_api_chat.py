"""Chat completions over fakes: grounding, the lorafeed extension, stored contexts, explicit
versions, SSE streaming and in-band stream errors."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from lorafeed.knowledge_errors import KnowledgeUnavailable
from serving.microbatch import QueueFull
from tests.unit.serving.harness import APP, CHAT_BODY, Harness, fresh


@pytest.fixture
def h() -> Iterator[Harness]:
    yield from fresh()


# --- chat ----------------------------------------------------------------------------------

def test_chat_answers_grounded_with_the_lorafeed_extension(h: Harness) -> None:
    response = h.chat(max_tokens=3, stop=["\n"])
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "Refunds take five "}
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["lorafeed"] == {"request_id": "req-0", "adapter_version": "1.0.0",
                                "passage_ids": ["kb-1#00001", "kb-2#00000"]}
    assert body["usage"]["completion_tokens"] == 3
    assert response.headers["x-request-id"] == "req-0"
    engine = h.registry.engines["support"]
    assert engine.calls[0]["stop"] == ["\n"] and engine.calls[0]["version"] == "1.0.0"
    assert h.retriever.queries[0][0].startswith("How long do refunds take?")
    stored = h.contexts.contexts["req-0"][0]
    assert stored.passage_ids == ["kb-1#00001", "kb-2#00000"]
    assert "jane.doe@example.com" not in stored.model_dump_json()  # pseudonymized
    assert "[EMAIL:" in stored.input[0].content  # type: ignore[union-attr]


def test_chat_retrieval_can_be_disabled_and_failures_only_cost_grounding(h: Harness) -> None:
    off = h.chat(lorafeed={"retrieval": False})
    assert off.json()["lorafeed"]["passage_ids"] == []
    assert h.retriever.queries == []
    h.retriever.fail = KnowledgeUnavailable("milvus is down")
    degraded = h.chat()
    assert degraded.status_code == 200
    assert degraded.json()["lorafeed"]["passage_ids"] == []
    assert "lorafeed_serving_retrieval_failures_total 1.0" in h.deps.metrics.render().decode()


def test_chat_with_an_explicit_version_leases_it(h: Harness) -> None:
    assert h.chat(model="support@0.9.0").json()["lorafeed"]["adapter_version"] == "0.9.0"
    assert h.chat(model="support@base").json()["lorafeed"]["adapter_version"] is None
    assert h.registry.leased == [("support", "0.9.0"), ("support", None)]


def sse_events(text: str) -> list[str]:
    assert text.endswith("\n\n")
    events = text.split("\n\n")[:-1]
    assert all(event.startswith("data: ") and "\n" not in event for event in events)
    return [event.removeprefix("data: ") for event in events]


def test_chat_streams_openai_chunks_then_done(h: Harness) -> None:
    stream = {"stream": True, "stream_options": {"include_usage": True}}
    with h.client.stream("POST", "/v1/chat/completions", json={**CHAT_BODY, **stream},
                         headers=APP) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        text = "".join(response.iter_text())
    events = sse_events(text)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    content = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert content == "Refunds take five days."
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 4
    assert {c["lorafeed"]["request_id"] for c in chunks} == {"req-0"}
    assert h.contexts.contexts["req-0"][0].output == "Refunds take five days."
    assert h.registry.engines["support"].generations[0].closed


def test_a_fault_mid_stream_is_reported_in_band(h: Harness) -> None:
    h.registry.engines["support"].fail = QueueFull("queue is full")
    with h.client.stream("POST", "/v1/chat/completions", json={**CHAT_BODY, "stream": True},
                         headers=APP) as response:
        events = sse_events("".join(response.iter_text()))
    assert json.loads(events[-1])["error"]["code"] == "queue_full"
    assert "[DONE]" not in events
    assert "req-0" not in h.contexts.contexts
