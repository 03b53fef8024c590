"""The serving API over fakes: the auth matrix, rate limits, body cap, request validation,
models, search, admin audit, metrics and readiness."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lorafeed.knowledge_errors import KnowledgeUnavailable
from schemas.codec import decode
from schemas.topics import Topic, topic_name
from serving.publisher import PublishFailed
from tests.unit.serving.fakes import APP_KEY, FakeLimiter
from tests.unit.serving.harness import (
    ADMIN,
    APP,
    CHAT_BODY,
    PREFIX,
    Harness,
    build,
    error_of,
    fresh,
)


@pytest.fixture
def h() -> Iterator[Harness]:
    yield from fresh()


# --- auth ---------------------------------------------------------------------------------

ROUTES = [
    ("post", "/v1/chat/completions", "app"), ("post", "/v1/score", "app"),
    ("post", "/v1/feedback", "app"), ("post", "/v1/search", "app"), ("get", "/v1/models", "app"),
    ("get", "/metrics", "admin"), ("post", "/admin/tasks/fraud/pin", "admin"),
    ("post", "/admin/tasks/fraud/unpin", "admin"), ("post", "/admin/tasks/fraud/rollback",
                                                     "admin"),
]


@pytest.mark.parametrize(("method", "path", "role"), ROUTES)
def test_every_protected_route_needs_a_key_of_its_role(
    h: Harness, method: str, path: str, role: str
) -> None:
    call = getattr(h.client, method)
    missing = call(path)
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert error_of(missing)["code"] == "unauthenticated"
    assert call(path, headers={"Authorization": "Bearer not-a-key"}).status_code == 401
    assert call(path, headers={"Authorization": f"Basic {APP_KEY}"}).status_code == 401
    wrong = call(path, headers=ADMIN if role == "app" else APP)
    assert wrong.status_code == 403
    assert repr(role) in error_of(wrong)["message"]
    right = call(path, headers=APP if role == "app" else ADMIN)
    assert right.status_code not in (401, 403)


def test_health_is_open_and_auth_can_be_disabled_for_the_demo() -> None:
    closed = build()
    assert closed.client.get("/healthz").json() == {"status": "ok", "node_id": "node-1"}
    assert closed.client.get("/readyz").status_code == 200
    demo = build(auth_enabled=False)
    assert demo.client.get("/v1/models").status_code == 200
    assert demo.client.get("/metrics").status_code == 200


def test_rate_limit_answers_429_with_retry_after() -> None:
    h = build(limiter=FakeLimiter(limit=2))
    assert [h.client.get("/v1/models", headers=APP).status_code for _ in range(3)] == [200, 200,
                                                                                       429]
    limited = h.client.get("/v1/models", headers=APP)
    assert limited.headers["retry-after"] == "30"
    assert "'shop-app' exceeded 2 requests" in error_of(limited)["message"]
    assert h.client.get("/v1/models", headers=ADMIN).status_code == 403  # counted per key
    assert h.client.get("/healthz").status_code == 200  # never limited


# --- limits and validation -----------------------------------------------------------------

def test_body_over_the_cap_is_413_naming_the_limit(h: Harness) -> None:
    big = {**CHAT_BODY, "messages": [{"role": "user", "content": "x" * 1_100_000}]}
    response = h.client.post("/v1/chat/completions", json=big, headers=APP)
    assert response.status_code == 413
    assert "1048576 bytes" in error_of(response)["message"]


def test_streamed_body_without_length_is_counted(h: Harness) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"model": "support", "messages": [{"role": "user", "content": "'
        for _ in range(20):
            yield b"y" * 64_000
        yield b'"}]}'

    response = h.client.post("/v1/chat/completions", content=chunks(),
                             headers={**APP, "content-type": "application/json"})
    assert response.status_code == 413
    assert "1048576" in error_of(response)["message"]
    assert h.registry.leased == []


def test_malformed_json_and_wrong_types_are_422_without_echoing_input(h: Harness) -> None:
    bad_json = h.client.post("/v1/chat/completions", content=b'{"model": "support",',
                             headers={**APP, "content-type": "application/json"})
    assert bad_json.status_code == 422
    assert error_of(bad_json)["code"] == "invalid_request"
    wrong = h.chat(max_tokens="secret-value", temperature=[1])
    assert wrong.status_code == 422
    error = error_of(wrong)
    assert "max_tokens" in error["message"] and "temperature" in error["message"]
    assert "secret-value" not in wrong.text
    assert h.chat(n=2).status_code == 422
    assert h.chat(frequency_penalty=0.5).status_code == 422  # unknown fields are refused
    assert h.chat(messages=[]).status_code == 422


def test_max_tokens_above_the_cap_is_422_naming_it(h: Harness) -> None:
    response = h.chat(max_tokens=513)
    assert response.status_code == 422
    assert "cap of 512" in error_of(response)["message"]
    assert h.chat(max_completion_tokens=512).status_code == 200


def test_unknown_task_and_version_are_404_malformed_version_422(h: Harness) -> None:
    unknown = h.chat(model="gpt-4")
    assert unknown.status_code == 404
    assert error_of(unknown)["code"] == "unknown_task"
    assert "'gpt-4'" in error_of(unknown)["message"]
    missing = h.chat(model="support@7.7.7")
    assert missing.status_code == 404
    assert error_of(missing)["code"] == "unknown_version"
    assert h.chat(model="support@latest").status_code == 422
    assert h.score(task="nope").status_code == 404
    assert h.score(task="support").status_code == 422  # a generation task cannot score


# --- models, search, admin, metrics -------------------------------------------------------

def test_models_lists_tasks_with_active_versions(h: Harness) -> None:
    data = h.client.get("/v1/models", headers=APP).json()["data"]
    assert [(m["id"], m["lorafeed"]) for m in data] == [
        ("fraud", {"kind": "classification", "active_version": "1.0.0"}),
        ("support", {"kind": "generation", "active_version": "1.0.0"}),
    ]


def test_search_returns_hits_and_needs_a_retriever(h: Harness) -> None:
    hits = h.client.post("/v1/search", json={"query": "refunds", "top_k": 1}, headers=APP)
    assert [x["id"] for x in hits.json()["hits"]] == ["kb-1#00001"]
    assert h.client.post("/v1/search", json={"query": ""}, headers=APP).status_code == 422
    h.retriever.fail = KnowledgeUnavailable("milvus is down")
    assert h.client.post("/v1/search", json={"query": "x"}, headers=APP).status_code == 503


def test_admin_actions_are_node_local_and_audited(h: Harness) -> None:
    pinned = h.client.post("/admin/tasks/fraud/pin", json={"version": "0.9.0", "reason": "bad"},
                           headers=ADMIN)
    assert pinned.status_code == 200
    assert pinned.json()["version"] == "0.9.0" and pinned.json()["node_id"] == "node-1"
    assert h.registry.ops == [("pin", "fraud", "0.9.0", "ops")]
    [(topic, key, value)] = h.audit.sent
    event = decode(Topic.AUDIT_EVENTS, value)
    assert topic == topic_name(Topic.AUDIT_EVENTS, PREFIX) and key == event.audit_id
    assert (event.actor, event.action, event.version) == ("ops", "adapter.pin", "0.9.0")
    assert event.detail["node_id"] == "node-1" and event.detail["reason"] == "bad"
    rolled = h.client.post("/admin/tasks/fraud/rollback", headers=ADMIN)
    assert rolled.status_code == 200
    assert h.registry.ops[-1] == ("rollback", "fraud", "1.0.0", "ops")  # the previous version
    assert h.client.post("/admin/tasks/fraud/unpin", headers=ADMIN).status_code == 200
    assert h.client.post("/admin/tasks/nope/unpin", headers=ADMIN).status_code == 404
    assert len(h.audit.sent) == 3
    h.audit.fail = PublishFailed("no ack")
    unaudited = h.client.post("/admin/tasks/fraud/pin", json={"version": "base"}, headers=ADMIN)
    assert unaudited.status_code == 503
    assert "was applied" in error_of(unaudited)["message"]


def test_metrics_count_requests_per_endpoint_task_and_status(h: Harness) -> None:
    h.score()
    h.score(task="nope")
    h.client.post("/v1/score", json={})
    h.client.get("/nowhere", headers=APP)
    metrics = h.client.get("/metrics", headers=ADMIN).text
    assert ('lorafeed_serving_requests_total{endpoint="/v1/score",status="401",task="-"} 1.0'
            in metrics)
    assert ('lorafeed_serving_requests_total{endpoint="unmatched",status="404",task="-"} 1.0'
            in metrics)
    assert ('lorafeed_serving_requests_total{endpoint="/v1/score",status="200",task="fraud"} 1.0'
            in metrics)
    assert ('lorafeed_serving_requests_total{endpoint="/v1/score",status="404",task="-"} 1.0'
            in metrics)
    assert 'lorafeed_serving_active_adapter{task="fraud",version="1.0.0"} 1.0' in metrics
    assert "lorafeed_serving_request_seconds_bucket" in metrics


def test_readyz_reports_problems(h: Harness) -> None:
    h.contexts.healthy = False
    response = h.client.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {"ready": False, "problems": ["redis: connection refused"]}
