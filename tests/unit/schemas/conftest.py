"""Valid sample contracts shared by the schemas unit tests (one or more per topic)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from schemas.audit import AuditRecorded
from schemas.base import Event
from schemas.codec import encode
from schemas.dead_letters import DeadLetterReason, dead_letter
from schemas.feedback import ChatMessage, FeedbackReceived
from schemas.model_events import (
    AdapterActivated,
    AdapterLoadFailed,
    AdapterPromoted,
    AdapterPublished,
    AdapterRejected,
    AdapterRolledBack,
)
from schemas.records import RecordCleaned, RecordIndexed, RecordIngested
from schemas.topics import Topic
from schemas.transactions import TransactionReceived, TransactionScored

NOW = datetime(2024, 5, 1, 12, 30, 15, 123456, tzinfo=UTC)
SHA_A = "a" * 64
SHA_B = "0123456789abcdef" * 4


def _record() -> RecordIngested:
    return RecordIngested(
        schema_version=1,
        record_id="faq-42",
        op="upsert",
        source="crm",
        content_type="text/markdown",
        content="# Refunds\nRefunds take **5 days**. Café ☕",
        metadata={"lang": "en", "tags": ["billing", 3, 2.5, None, True], "nested": {"a": {}}},
        occurred_at=NOW,
    )


def _model_events() -> list[Event]:
    common: dict[str, Any] = {"schema_version": 1, "task": "support-triage", "occurred_at": NOW}
    return [
        AdapterPublished(
            **common, event_id="e1", version="1.2.0", manifest_sha256=SHA_A, parent_version="1.1.3"
        ),
        AdapterPromoted(**common, event_id="e2", version="1.2.0", manifest_sha256=SHA_A),
        AdapterRejected(
            **common,
            event_id="e3",
            version="1.2.1",
            manifest_sha256=SHA_B,
            reason="forgetting 0.031 > 0.02 on retained task faq",
        ),
        AdapterRolledBack(
            **common,
            event_id="e4",
            from_version="1.2.0",
            to_version="1.1.3",
            manifest_sha256=SHA_B,
            reason="operator",
            automatic=False,
        ),
        AdapterActivated(
            **common, event_id="e5", node="serve-1", version="1.2.0", manifest_sha256=SHA_A
        ),
        AdapterLoadFailed(
            **common,
            event_id="e6",
            node="serve-2",
            version="1.2.0",
            reason="manifest digest mismatch",
        ),
    ]


def sample_events() -> dict[Topic, list[Event]]:
    """At least one valid event per topic; model.events has every variant."""
    feedback = FeedbackReceived(
        schema_version=1,
        request_id="req-1",
        task="support-triage",
        kind="correction",
        correction="Refunds take 5 business days.",
        adapter_version=None,
        input=[ChatMessage(role="user", content="How long do refunds take?")],
        output="A week.",
        retrieved_passage_ids=["faq-42#0"],
        served_at=NOW,
        received_at=NOW,
    )
    return {
        Topic.RECORDS_RAW: [_record()],
        Topic.RECORDS_CLEAN: [
            RecordCleaned(
                schema_version=1,
                record_id="faq-42",
                op="upsert",
                source="crm",
                content_type="text/html",
                text="Mail <EMAIL_1a2b> for refunds.",
                occurred_at=NOW,
                content_sha256=SHA_A,
                pii_replaced={"email": 1},
                cleaned_at=NOW,
            )
        ],
        Topic.RECORDS_INDEXED: [
            RecordIndexed(
                schema_version=1,
                record_id="faq-42",
                collection="knowledge",
                chunk_count=2,
                chunk_ids=["faq-42#0", "faq-42#1"],
                deleted_chunk_ids=["faq-42#2"],
                indexed_at=NOW,
            )
        ],
        Topic.RECORDS_DLQ: [
            dead_letter(
                b"\xff\xfe not utf8",
                DeadLetterReason.NOT_UTF8,
                "byte 0xff at 0",
                source_topic="acme.records.raw",
                partition=3,
                offset=17,
                key="faq-42",
                now=NOW,
            )
        ],
        Topic.FEEDBACK_EVENTS: [feedback],
        Topic.FEEDBACK_DLQ: [
            dead_letter(
                b"{}",
                DeadLetterReason.SCHEMA_VERSION,
                "schema_version is missing",
                source_topic="feedback.events",
                now=NOW,
            )
        ],
        Topic.TRANSACTIONS_RAW: [
            TransactionReceived(
                schema_version=1,
                event_id="tx-9",
                fields={"amount": 12.5, "country": "FR"},
                occurred_at=NOW,
            )
        ],
        Topic.SCORES_OUT: [
            TransactionScored(
                schema_version=1,
                event_id="tx-9",
                task="fraud",
                adapter_version="3.0.1",
                label="legit",
                probabilities={"legit": 0.93, "fraud": 0.07},
                low_margin=False,
                scored_at=NOW,
            )
        ],
        Topic.MODEL_EVENTS: _model_events(),
        Topic.AUDIT_EVENTS: [
            AuditRecorded(
                schema_version=1,
                audit_id="a-1",
                actor="ops@example",
                action="adapter.rollback",
                task="support-triage",
                version="1.1.3",
                detail={"why": "regression"},
                occurred_at=NOW,
            )
        ],
    }


@pytest.fixture(scope="session")
def samples() -> dict[Topic, list[Event]]:
    return sample_events()


@pytest.fixture
def record_payload() -> dict[str, Any]:
    """A valid raw record as a producer's JSON object (fresh for each test)."""
    loaded: dict[str, Any] = json.loads(encode(_record()))
    return loaded


@pytest.fixture
def feedback_payload() -> dict[str, Any]:
    """A valid rating feedback JSON object (fresh for each test)."""
    return {
        "schema_version": 1,
        "request_id": "req-7",
        "task": "support-triage",
        "kind": "rating",
        "rating": 1,
        "adapter_version": "1.2.0",
        "input": "Where is my parcel?",
        "output": "It ships tomorrow.",
        "served_at": "2024-05-01T12:00:00Z",
        "received_at": "2024-05-01T12:00:05+02:00",
    }
