"""model.events: the `type` field picks the class; events name versions and digests, no paths."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from schemas.base import Event
from schemas.model_events import (
    MODEL_EVENT_ADAPTER,
    MODEL_EVENT_CLASSES,
    AdapterActivated,
    AdapterLoadFailed,
    AdapterPromoted,
    AdapterPublished,
    AdapterRejected,
    AdapterRolledBack,
)
from schemas.topics import Topic

SHA = "c" * 64


def _rollback(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "schema_version": 1,
        "type": "adapter_rolled_back",
        "event_id": "e",
        "task": "faq",
        "occurred_at": "2024-05-01T12:00:00Z",
        "from_version": "2.0.0",
        "to_version": "1.4.2",
        "manifest_sha256": SHA,
        "reason": "regression",
        "automatic": True,
    }
    data.update(changes)
    return data


def test_the_union_picks_the_class_named_by_type(samples: dict[Topic, list[Event]]) -> None:
    events = samples[Topic.MODEL_EVENTS]
    assert {type(event) for event in events} == set(MODEL_EVENT_CLASSES.values())
    for event in events:
        data = event.model_dump(mode="json")
        decoded = MODEL_EVENT_ADAPTER.validate_python(data)
        assert type(decoded) is type(event)
        assert decoded == event


def test_classes_by_type_value() -> None:
    assert {
        "adapter_published": AdapterPublished,
        "adapter_promoted": AdapterPromoted,
        "adapter_rejected": AdapterRejected,
        "adapter_rolled_back": AdapterRolledBack,
        "adapter_activated": AdapterActivated,
        "adapter_load_failed": AdapterLoadFailed,
    } == MODEL_EVENT_CLASSES


def test_type_is_required_on_the_wire() -> None:
    data = _rollback()
    del data["type"]
    with pytest.raises(ValidationError, match="Unable to extract tag using discriminator 'type'"):
        MODEL_EVENT_ADAPTER.validate_python(data)
    with pytest.raises(ValidationError, match="does not match any of the expected tags"):
        MODEL_EVENT_ADAPTER.validate_python(_rollback(type="adapter_deleted"))
    for schema in MODEL_EVENT_ADAPTER.json_schema()["$defs"].values():
        assert schema["required"][0] == "type"


def test_fields_of_one_variant_do_not_fit_another() -> None:
    with pytest.raises(ValidationError, match="from_version"):
        MODEL_EVENT_ADAPTER.validate_python(_rollback(type="adapter_promoted"))


def test_no_event_names_a_path() -> None:
    for cls in MODEL_EVENT_CLASSES.values():
        for name in cls.model_fields:
            assert not any(word in name for word in ("path", "dir", "file", "uri")), (cls, name)


def test_rollback_rules() -> None:
    event = MODEL_EVENT_ADAPTER.validate_python(_rollback())
    assert isinstance(event, AdapterRolledBack)
    assert event.version == "1.4.2"
    to_base = MODEL_EVENT_ADAPTER.validate_python(_rollback(to_version=None, manifest_sha256=None))
    assert to_base.version is None
    with pytest.raises(ValidationError, match="exactly when to_version is"):
        MODEL_EVENT_ADAPTER.validate_python(_rollback(to_version=None))
    with pytest.raises(ValidationError, match="exactly when to_version is"):
        MODEL_EVENT_ADAPTER.validate_python(_rollback(manifest_sha256=None))
    with pytest.raises(ValidationError, match="to_version 2.0.0 must be lower than from_version"):
        MODEL_EVENT_ADAPTER.validate_python(_rollback(to_version="2.0.0"))
    with pytest.raises(ValidationError, match="to_version 2.0.10 must be lower"):
        MODEL_EVENT_ADAPTER.validate_python(_rollback(to_version="2.0.10", from_version="2.0.9"))


def test_invalid_versions_and_digests_are_refused() -> None:
    with pytest.raises(ValidationError, match="MAJOR.MINOR.PATCH"):
        MODEL_EVENT_ADAPTER.validate_python(_rollback(from_version="2.0"))
    with pytest.raises(ValidationError, match="sha256"):
        MODEL_EVENT_ADAPTER.validate_python(_rollback(manifest_sha256="C" * 64))
    with pytest.raises(ValidationError, match="task name"):
        MODEL_EVENT_ADAPTER.validate_python(_rollback(task="../adapters"))


def test_python_callers_may_omit_type() -> None:
    event = AdapterPromoted(
        schema_version=1,
        event_id="e",
        task="faq",
        occurred_at="2024-05-01T12:00:00Z",
        version="1.0.0",
        manifest_sha256=SHA,
    )
    assert event.type == "adapter_promoted"
    assert event.model_dump()["type"] == "adapter_promoted"
