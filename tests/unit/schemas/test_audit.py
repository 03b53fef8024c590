"""Audit events validate their target task and version."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from schemas.audit import AuditRecorded


def _audit(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "schema_version": 1,
        "audit_id": "a-1",
        "actor": "cli:alice",
        "action": "adapter.rollback",
        "task": "faq",
        "version": "1.0.0",
        "occurred_at": "2024-05-01T12:00:00Z",
    }
    data.update(changes)
    return data


def test_valid_audit_with_defaults() -> None:
    audit = AuditRecorded.model_validate(_audit())
    assert audit.detail == {}
    assert AuditRecorded.model_validate(_audit(task=None, version=None)).task is None


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"task": "../x"}, "task name"),
        ({"version": "1"}, "MAJOR.MINOR.PATCH"),
        ({"actor": ""}, "must not be empty"),
        ({"detail": {"x": float("nan")}}, "finite"),
    ],
)
def test_invalid_audit(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        AuditRecorded.model_validate(_audit(**changes))
