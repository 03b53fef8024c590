"""Audit events on `audit.events`: who did what to which task or adapter, and when.

Written by the CLI and services for operator actions (rollback, promotion override, ...).
"""

from __future__ import annotations

from pydantic import Field

from schemas.base import Event
from schemas.fields import EventId, Identifier, JsonObject, TaskName, UtcDatetime
from schemas.version import SemVer


class AuditRecorded(Event):
    """One audited action (key: audit_id). `action` is a dotted verb, e.g. "adapter.rollback"."""

    audit_id: EventId
    actor: Identifier
    action: Identifier
    task: TaskName | None = None
    version: SemVer | None = None
    detail: JsonObject = Field(default_factory=dict)
    occurred_at: UtcDatetime
