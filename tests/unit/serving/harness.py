"""A serving app over in-memory fakes, and helpers shared by the API tests."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from fastapi.testclient import TestClient

from serving.api import create_app
from serving.deps import ServingDeps
from tests.unit.serving.fakes import (
    ADMIN_KEY,
    APP_KEY,
    NOW,
    FakeLimiter,
    FakePublisher,
    FakeRegistry,
    FakeRetriever,
    MemoryContexts,
    hit,
    settings,
)

PREFIX = "t."
APP = {"Authorization": f"Bearer {APP_KEY}"}
ADMIN = {"X-API-Key": ADMIN_KEY}
CHAT_BODY = {"model": "support", "messages": [{"role": "user", "content": "How long do refunds "
                                                "take? Mail me at jane.doe@example.com"}]}


@dataclass
class Harness:
    client: TestClient
    registry: FakeRegistry
    contexts: MemoryContexts
    feedback: FakePublisher
    audit: FakePublisher
    retriever: FakeRetriever
    deps: ServingDeps

    def chat(self, **changes: Any) -> Any:
        return self.client.post("/v1/chat/completions", json={**CHAT_BODY, **changes},
                                headers=APP)

    def score(self, **body: Any) -> Any:
        return self.client.post("/v1/score", json={"task": "fraud", "text": "wire 9000 USD",
                                                   **body}, headers=APP)

    def feedback_on(self, request_id: str, **body: Any) -> Any:
        return self.client.post("/v1/feedback", json={"request_id": request_id, **body},
                                headers=APP)


def build(limiter: FakeLimiter | None = None, raise_server_exceptions: bool = True,
          **overrides: Any) -> Harness:
    registry, contexts = FakeRegistry(), MemoryContexts()
    feedback, audit = FakePublisher(), FakePublisher()
    retriever = FakeRetriever([hit("kb-1#00001", "Refunds take five business days."),
                               hit("kb-2#00000", "Shipping is free over 50 EUR.")])
    ids = iter(f"req-{n}" for n in range(1000))
    deps = ServingDeps(
        settings=settings(**overrides), registry=registry, contexts=contexts,
        feedback_publisher=feedback, audit_publisher=audit, pseudonymizer=contexts.pseudonymizer,
        retriever=retriever, rate_limiter=limiter, topic_prefix=PREFIX, clock=lambda: NOW,
        new_id=lambda: next(ids),
    )
    client = TestClient(create_app(deps), raise_server_exceptions=raise_server_exceptions)
    return Harness(client, registry, contexts, feedback, audit, retriever, deps)


def fresh() -> Iterator[Harness]:
    """A fresh harness (for a fixture); afterwards every lease must have been released."""
    harness = build()
    yield harness
    assert harness.registry.open_leases == 0


def error_of(response: Any) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}
    return dict(body["error"])
