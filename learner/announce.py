"""Model events the learner sends, with ids derived from (task, version, type) so a resend after a
crash is the same event (serving nodes also ignore it: the champion pointer already moved)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Final

from schemas.manifest import AdapterManifest, manifest_sha256
from schemas.model_events import (
    AdapterPromoted,
    AdapterPublished,
    AdapterRejected,
    AdapterRolledBack,
    ModelEventBase,
)

_NAMESPACE: Final = uuid.UUID("6f1d7f0e-2a3b-4c5d-8e9f-a0b1c2d3e4f5")


def event_id(task: str, version: str | None, kind: str, salt: str = "") -> str:
    """A stable id: the same (task, version, kind, salt) always names the same event."""
    return str(uuid.uuid5(_NAMESPACE, f"{task}|{version}|{kind}|{salt}"))


def publication_events(
    manifest: AdapterManifest, champion_before: str | None, now: datetime
) -> list[ModelEventBase]:
    """AdapterPublished, then AdapterPromoted or AdapterRejected, for a version just written."""
    digest = manifest_sha256(manifest)
    task, version = manifest.task, manifest.version
    published = AdapterPublished(
        schema_version=1,
        event_id=event_id(task, version, "published"),
        task=task,
        occurred_at=now,
        version=version,
        manifest_sha256=digest,
        parent_version=manifest.parent_version,
    )
    verdict: ModelEventBase
    if manifest.gate.promoted:
        verdict = AdapterPromoted(
            schema_version=1,
            event_id=event_id(task, version, "promoted"),
            task=task,
            occurred_at=now,
            version=version,
            manifest_sha256=digest,
            previous_version=champion_before,
        )
    else:
        verdict = AdapterRejected(
            schema_version=1,
            event_id=event_id(task, version, "rejected"),
            task=task,
            occurred_at=now,
            version=version,
            manifest_sha256=digest,
            reason=manifest.gate.reason[:4000],
        )
    return [published, verdict]


def rollback_event(
    task: str,
    from_version: str,
    to_version: str | None,
    digest: str | None,
    reason: str,
    *,
    automatic: bool,
    now: datetime,
) -> AdapterRolledBack:
    """The event announcing that `task` went back from `from_version` to `to_version`."""
    return AdapterRolledBack(
        schema_version=1,
        event_id=event_id(task, from_version, "rolled_back", f"{to_version}|{now.isoformat()}"),
        task=task,
        occurred_at=now,
        from_version=from_version,
        to_version=to_version,
        manifest_sha256=digest,
        reason=reason[:4000],
        automatic=automatic,
    )
