"""A valid sample of every event type, keyed as the topic table says; used by the demo and tests.

The samples are small but realistic (a Chinese and an English record, a correction with its
serving context, a full adapter lifecycle), so a round trip through the broker exercises every
contract and both scripts.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from schemas import (
    TOPICS,
    AdapterActivated,
    AdapterLoadFailed,
    AdapterPromoted,
    AdapterPublished,
    AdapterRejected,
    AdapterRolledBack,
    AuditRecorded,
    ChatMessage,
    DeadLetterReason,
    Event,
    FeedbackReceived,
    RecordCleaned,
    RecordIndexed,
    RecordIngested,
    Topic,
    TransactionReceived,
    TransactionScored,
    dead_letter,
)

_SHA = "9f2c" * 16
_SHA_0 = "0b7e" * 16
_SHA_2 = "5d1a" * 16


def message_key(topic: Topic, event: Event) -> str:
    """The Kafka message key of ``event`` on ``topic``: the field the topic table names."""
    field = TOPICS[topic].key
    value = getattr(event, field, None) if field.isidentifier() else getattr(event, "key", None)
    return "" if value is None else str(value)


def sample_events(now: datetime | None = None) -> dict[Topic, list[Event]]:
    """One or more valid events per topic, timestamped around ``now``."""
    now = now or datetime.now(UTC)
    earlier = now - timedelta(minutes=5)
    return {
        Topic.RECORDS_RAW: [
            RecordIngested(schema_version=1, record_id="kb-refund-zh", op="upsert",
                           source="helpdesk", content_type="text/html",
                           content="<h1>退款政策</h1><p>收到商品后 30 天内可申请退款。</p>",
                           metadata={"lang": "zh"}, occurred_at=earlier),
            RecordIngested(schema_version=1, record_id="kb-refund-en", op="upsert",
                           source="helpdesk", content_type="text/plain",
                           content="Refunds are accepted within 30 days of delivery.",
                           metadata={"lang": "en"}, occurred_at=earlier),
        ],
        Topic.RECORDS_CLEAN: [
            RecordCleaned(schema_version=1, record_id="kb-refund-zh", op="upsert",
                          source="helpdesk", content_type="text/html",
                          text="退款政策\n收到商品后 30 天内可申请退款。", metadata={"lang": "zh"},
                          occurred_at=earlier, content_sha256=_SHA, pii_replaced={},
                          cleaned_at=now),
        ],
        Topic.RECORDS_INDEXED: [
            RecordIndexed(schema_version=1, record_id="kb-refund-zh", collection="knowledge",
                          chunk_count=1, chunk_ids=["kb-refund-zh#00000"], indexed_at=now),
        ],
        Topic.RECORDS_DLQ: [
            dead_letter(b"{not json", DeadLetterReason.NOT_JSON, "Expecting property name",
                        source_topic="records.raw", partition=0, offset=7, key="bad-1", now=now),
        ],
        Topic.FEEDBACK_EVENTS: [
            FeedbackReceived(
                schema_version=1, request_id="req-0001", task="support-chat", kind="correction",
                correction="Refunds are accepted within 30 days of delivery.",
                adapter_version="1.0.0",
                input=[ChatMessage(role="user", content="How long do I have to ask for a refund?")],
                output="You can ask for a refund within 14 days.",
                retrieved_passage_ids=["kb-refund-en#00000"], served_at=earlier, received_at=now),
        ],
        Topic.FEEDBACK_DLQ: [
            dead_letter(b'{"schema_version": 1, "kind": "rating"}', DeadLetterReason.INVALID_FIELD,
                        "request_id: field required", source_topic="feedback.events",
                        partition=1, offset=3, key="req-x", now=now),
        ],
        Topic.TRANSACTIONS_RAW: [
            TransactionReceived(schema_version=1, event_id="tx-1001",
                                fields={"amount": 129.5, "currency": "CNY", "country": "CN"},
                                occurred_at=now),
        ],
        Topic.SCORES_OUT: [
            TransactionScored(schema_version=1, event_id="tx-1001", task="fraud",
                              adapter_version="1.0.0", label="legit",
                              probabilities={"legit": 0.93, "fraud": 0.07}, low_margin=False,
                              scored_at=now),
        ],
        Topic.MODEL_EVENTS: [
            AdapterPublished(schema_version=1, event_id="ev-1", task="support-chat",
                             occurred_at=now, version="1.0.1", manifest_sha256=_SHA,
                             parent_version="1.0.0"),
            AdapterPromoted(schema_version=1, event_id="ev-2", task="support-chat",
                            occurred_at=now, version="1.0.1", manifest_sha256=_SHA,
                            previous_version="1.0.0"),
            AdapterActivated(schema_version=1, event_id="ev-3", task="support-chat",
                             occurred_at=now, node="serve-1", version="1.0.1",
                             manifest_sha256=_SHA),
            AdapterPublished(schema_version=1, event_id="ev-4", task="support-chat",
                             occurred_at=now, version="1.0.2", manifest_sha256=_SHA_2,
                             parent_version="1.0.1"),
            AdapterRejected(schema_version=1, event_id="ev-5", task="support-chat",
                            occurred_at=now, version="1.0.2", manifest_sha256=_SHA_2,
                            reason="held-out gain 0.004 below min_gain 0.01"),
            AdapterLoadFailed(schema_version=1, event_id="ev-6", task="support-chat",
                              occurred_at=now, node="serve-2", version="1.0.1",
                              manifest_sha256=_SHA,
                              reason="sha256 mismatch: adapter_model.safetensors"),
            AdapterRolledBack(schema_version=1, event_id="ev-7", task="support-chat",
                              occurred_at=now, from_version="1.0.1", to_version="1.0.0",
                              manifest_sha256=_SHA_0, automatic=True,
                              reason="a node could not load 1.0.1"),
        ],
        Topic.AUDIT_EVENTS: [
            AuditRecorded(schema_version=1, audit_id="au-1", actor="ops", action="pin",
                          task="support-chat", version="1.0.1", detail={"why": "demo"},
                          occurred_at=now),
        ],
    }
