"""Record events: the raw record keeps DESIGN.md's exact shape; cleaned/indexed stay consistent."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from schemas.records import RecordCleaned, RecordIndexed, RecordIngested

DESIGN_SHAPE = {
    "schema_version",
    "record_id",
    "op",
    "source",
    "content_type",
    "content",
    "metadata",
    "occurred_at",
}
NOW = "2024-05-01T12:00:00Z"


def _indexed(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "schema_version": 1,
        "record_id": "r1",
        "collection": "knowledge",
        "chunk_count": 1,
        "chunk_ids": ["r1#0"],
        "indexed_at": NOW,
    }
    data.update(changes)
    return data


def test_raw_record_fields_are_exactly_the_documented_shape() -> None:
    assert set(RecordIngested.model_fields) == DESIGN_SHAPE
    schema = RecordIngested.model_json_schema()
    assert set(schema["required"]) == DESIGN_SHAPE - {"metadata"}
    assert schema["additionalProperties"] is False


def test_raw_record_from_producer_json(record_payload: dict[str, Any]) -> None:
    record = RecordIngested.model_validate(record_payload)
    assert record.metadata["tags"] == ["billing", 3, 2.5, None, True]
    assert record.occurred_at.tzinfo is not None


def test_metadata_defaults_to_empty(record_payload: dict[str, Any]) -> None:
    del record_payload["metadata"]
    assert RecordIngested.model_validate(record_payload).metadata == {}


def test_delete_may_have_empty_content(record_payload: dict[str, Any]) -> None:
    record_payload.update(op="delete", content="")
    assert RecordIngested.model_validate(record_payload).content == ""


def test_upsert_needs_content(record_payload: dict[str, Any]) -> None:
    record_payload["content"] = ""
    with pytest.raises(ValidationError, match="'faq-42': op 'upsert' needs non-empty content"):
        RecordIngested.model_validate(record_payload)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("op", "insert"),
        ("content_type", "application/pdf"),
        ("schema_version", 2),
        ("schema_version", "1"),
        ("schema_version", True),
        ("schema_version", 1.0),
        ("record_id", ""),
        ("source", "crm\n"),
        ("occurred_at", "2024-05-01T12:00:00"),
    ],
)
def test_raw_record_rejects(record_payload: dict[str, Any], field: str, value: object) -> None:
    record_payload[field] = value
    with pytest.raises(ValidationError) as info:
        RecordIngested.model_validate(record_payload)
    assert info.value.errors()[0]["loc"][0] == field


def test_missing_schema_version_is_an_error(record_payload: dict[str, Any]) -> None:
    del record_payload["schema_version"]
    with pytest.raises(ValidationError, match="schema_version"):
        RecordIngested.model_validate(record_payload)


def test_unknown_fields_are_refused(record_payload: dict[str, Any]) -> None:
    record_payload["colour"] = "red"
    with pytest.raises(ValidationError, match="colour"):
        RecordIngested.model_validate(record_payload)


def test_events_are_frozen(record_payload: dict[str, Any]) -> None:
    record = RecordIngested.model_validate(record_payload)
    with pytest.raises(ValidationError):
        record.content = "changed"  # type: ignore[misc]


def test_cleaned_counts_are_non_negative() -> None:
    data = {
        "schema_version": 1,
        "record_id": "r1",
        "op": "upsert",
        "source": "crm",
        "content_type": "text/plain",
        "text": "t",
        "occurred_at": NOW,
        "content_sha256": "a" * 64,
        "pii_replaced": {"email": 2},
        "cleaned_at": NOW,
    }
    assert RecordCleaned.model_validate(data).pii_replaced == {"email": 2}
    with pytest.raises(ValidationError, match="pii_replaced"):
        RecordCleaned.model_validate({**data, "pii_replaced": {"email": -1}})
    with pytest.raises(ValidationError, match="content_sha256"):
        RecordCleaned.model_validate({**data, "content_sha256": "A" * 64})


def test_indexed_chunk_count_matches_ids() -> None:
    assert RecordIndexed.model_validate(_indexed()).chunk_count == 1
    with pytest.raises(ValidationError, match="chunk_count is 2 but 1 chunk_ids"):
        RecordIndexed.model_validate(_indexed(chunk_count=2))


def test_indexed_alias_has_no_chunks() -> None:
    alias = RecordIndexed.model_validate(
        _indexed(chunk_count=0, chunk_ids=[], duplicate_of="r0", deleted_chunk_ids=["r1#0"])
    )
    assert alias.duplicate_of == "r0"
    with pytest.raises(ValidationError, match="must have no chunks of its own"):
        RecordIndexed.model_validate(_indexed(duplicate_of="r0"))
    with pytest.raises(ValidationError, match="duplicate of itself"):
        RecordIndexed.model_validate(_indexed(chunk_count=0, chunk_ids=[], duplicate_of="r1"))
