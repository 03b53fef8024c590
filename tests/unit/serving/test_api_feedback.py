"""Score and feedback over fakes: stored score contexts, feedback published after the ack,
idempotent retries, conflicts, unknown requests, 503s, 504s and an injected fault's 500."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from schemas.codec import decode
from schemas.feedback import FeedbackReceived
from schemas.topics import Topic, topic_name
from serving.microbatch import QueueFull
from serving.publisher import PublishFailed, PublishQueueFull
from tests.unit.serving.fakes import NOW
from tests.unit.serving.harness import ADMIN, PREFIX, Harness, build, error_of, fresh


@pytest.fixture
def h() -> Iterator[Harness]:
    yield from fresh()


# --- score and feedback ----------------------------------------------------------------------

def test_score_returns_probabilities_and_keeps_the_context_for_late_labels(h: Harness) -> None:
    response = h.score(fields={"amount": 9000, "country": "NZ"}, text=None)
    assert response.status_code == 200
    assert response.json() == {"request_id": "req-0", "task": "fraud", "label": "fraud",
                               "probabilities": {"fraud": 0.55, "ok": 0.45},
                               "low_margin": True, "adapter_version": "1.0.0"}
    assert h.registry.engines["fraud"].calls[0]["texts"] == ["amount: 9000\ncountry: NZ"]
    stored, ttl = h.contexts.contexts["req-0"]
    assert (stored.kind, stored.output, ttl) == ("score", "fraud", 30 * 86400)
    assert h.score(text="  ").status_code == 422


def test_feedback_is_published_after_ack_and_idempotent(h: Harness) -> None:
    request_id = h.chat().json()["lorafeed"]["request_id"]
    body = {"kind": "correction", "correction": "Five days; ask jane.doe@example.com",
            "annotator": "agent-7"}
    first = h.feedback_on(request_id, **body)
    assert first.status_code == 202
    assert first.json()["status"] == "accepted"
    [(topic, key, value)] = h.feedback.sent
    assert (topic, key) == (topic_name(Topic.FEEDBACK_EVENTS, PREFIX), request_id)
    event = decode(Topic.FEEDBACK_EVENTS, value)
    assert isinstance(event, FeedbackReceived)
    assert event.adapter_version == "1.0.0" and event.retrieved_passage_ids == ["kb-1#00001",
                                                                                "kb-2#00000"]
    assert event.correction is not None and "jane.doe" not in event.correction
    assert event.output == "Refunds take five days." and event.served_at == NOW
    retry = h.feedback_on(request_id, **body)
    assert (retry.status_code, retry.json()) == (202, first.json())
    assert len(h.feedback.sent) == 1
    conflict = h.feedback_on(request_id, **{**body, "correction": "Six days."})
    assert conflict.status_code == 409
    assert error_of(conflict)["code"] == "feedback_conflict"
    other_annotator = h.feedback_on(request_id, **{**body, "annotator": "agent-8"})
    assert other_annotator.status_code == 202


def test_feedback_on_unknown_requests_and_mismatched_kinds(h: Harness) -> None:
    unknown = h.feedback_on("never-served", kind="rating", rating=1)
    assert unknown.status_code == 404
    assert error_of(unknown)["code"] == "unknown_request"
    scored = h.score().json()["request_id"]
    assert h.feedback_on(scored, kind="label", label="maybe").status_code == 422
    assert h.feedback_on(scored, kind="correction", correction="x").status_code == 422
    assert h.feedback_on(scored, kind="rating", rating=1, label="ok").status_code == 422
    assert h.feedback_on(scored, kind="rating", rating=True).status_code == 422
    assert h.feedback_on(scored, kind="label", label="ok").status_code == 202
    assert h.feedback.sent[-1][1] == scored


def test_publish_queue_full_is_503_and_the_retry_succeeds(h: Harness) -> None:
    request_id = h.chat().json()["lorafeed"]["request_id"]
    h.feedback.fail = PublishQueueFull("1000 messages await the broker's ack")
    full = h.feedback_on(request_id, kind="rating", rating=-1)
    assert full.status_code == 503
    assert full.headers["retry-after"] == "1"
    h.feedback.fail = PublishFailed("no broker acknowledgement within 10 s")
    assert h.feedback_on(request_id, kind="rating", rating=-1).status_code == 503
    h.feedback.fail = None
    assert h.feedback_on(request_id, kind="rating", rating=-1).status_code == 202
    metrics = h.deps.metrics.render().decode()
    assert 'lorafeed_serving_queue_full_total{queue="publish"} 1.0' in metrics


def test_model_queue_full_is_503_and_a_slow_model_is_504(h: Harness) -> None:
    h.registry.engines["fraud"].fail = QueueFull("micro-batch queue is full")
    full = h.score()
    assert (full.status_code, full.headers["retry-after"]) == (503, "1")
    slow = build(request_timeout_s=0.05)
    slow.registry.engines["fraud"].delay_s = 1.0
    timed_out = slow.score()
    assert timed_out.status_code == 504
    assert "0.05 s" in error_of(timed_out)["message"]


def test_an_unexpected_fault_is_a_bare_500_and_counted() -> None:
    h = build(raise_server_exceptions=False)
    h.registry.engines["fraud"].fail = RuntimeError("boom: secret detail")
    response = h.score()
    assert response.status_code == 500
    assert error_of(response)["code"] == "internal"
    assert "secret detail" not in response.text
    assert h.registry.open_leases == 0
    metrics = h.client.get("/metrics", headers=ADMIN).text
    assert ('lorafeed_serving_requests_total{endpoint="/v1/score",status="500",task="fraud"} 1.0'
            in metrics)
