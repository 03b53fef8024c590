"""lorafeed event contracts: versioned pydantic models, the topic table, the codec, JSON Schemas.

Imports nothing of the project; every service depends on it.
"""

from schemas.audit import AuditRecorded
from schemas.base import Contract, Event, canonical_json
from schemas.codec import UPGRADERS, decode, encode
from schemas.dead_letters import (
    DLQ_FULL_MAX,
    DLQ_HEAD_BYTES,
    DeadLettered,
    DeadLetterReason,
    dead_letter,
)
from schemas.errors import (
    InvalidFieldError,
    NestingTooDeep,
    NotAnObject,
    NotJson,
    NotUtf8,
    PayloadTooLarge,
    SchemaError,
    SchemaVersionError,
    UnknownFieldError,
    UnknownTopic,
)
from schemas.feedback import ChatMessage, FeedbackReceived
from schemas.fields import (
    EventId,
    Identifier,
    LabelName,
    RecordId,
    RequestId,
    Sha256Hex,
    TaskName,
    UtcDatetime,
)
from schemas.manifest import (
    AdapterManifest,
    GateDecision,
    Lineage,
    OffsetRange,
    manifest_sha256,
)
from schemas.model_events import (
    MODEL_EVENT_ADAPTER,
    AdapterActivated,
    AdapterLoadFailed,
    AdapterPromoted,
    AdapterPublished,
    AdapterRejected,
    AdapterRolledBack,
    ModelEvent,
    ModelEventBase,
)
from schemas.records import RecordCleaned, RecordIndexed, RecordIngested
from schemas.tasks import (
    EwcSettings,
    GateSettings,
    LoraSettings,
    ReplaySettings,
    TaskConfig,
    TaskKind,
    TrainingSettings,
    TriggerSettings,
    WatchSettings,
)
from schemas.topics import TOPICS, Topic, TopicSpec, topic_from_name, topic_name
from schemas.transactions import TransactionReceived, TransactionScored
from schemas.version import SemVer, Version

__all__ = [
    "DLQ_FULL_MAX",
    "DLQ_HEAD_BYTES",
    "MODEL_EVENT_ADAPTER",
    "TOPICS",
    "UPGRADERS",
    "AdapterActivated",
    "AdapterLoadFailed",
    "AdapterManifest",
    "AdapterPromoted",
    "AdapterPublished",
    "AdapterRejected",
    "AdapterRolledBack",
    "AuditRecorded",
    "ChatMessage",
    "Contract",
    "DeadLetterReason",
    "DeadLettered",
    "Event",
    "EventId",
    "EwcSettings",
    "FeedbackReceived",
    "GateDecision",
    "GateSettings",
    "Identifier",
    "InvalidFieldError",
    "LabelName",
    "Lineage",
    "LoraSettings",
    "ModelEvent",
    "ModelEventBase",
    "NestingTooDeep",
    "NotAnObject",
    "NotJson",
    "NotUtf8",
    "OffsetRange",
    "PayloadTooLarge",
    "RecordCleaned",
    "RecordId",
    "RecordIndexed",
    "RecordIngested",
    "ReplaySettings",
    "RequestId",
    "SchemaError",
    "SchemaVersionError",
    "SemVer",
    "Sha256Hex",
    "TaskConfig",
    "TrainingSettings",
    "TaskKind",
    "TaskName",
    "Topic",
    "TopicSpec",
    "TransactionReceived",
    "TransactionScored",
    "TriggerSettings",
    "WatchSettings",
    "UnknownFieldError",
    "UnknownTopic",
    "UtcDatetime",
    "Version",
    "canonical_json",
    "dead_letter",
    "decode",
    "encode",
    "manifest_sha256",
    "topic_from_name",
    "topic_name",
]
