"""`lorafeed adapters ...`: list, show, diff, roll back, pin and unpin adapter versions.

The adapter store's pointer files are the truth; a rollback or pin moves them first, then
announces the change on `model.events` and records it on `audit.events`.
"""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from learner.announce import event_id, rollback_event
from lorafeed.adapter_pointers import Champion
from lorafeed.adapter_store import AdapterStore
from lorafeed.adapter_store_errors import AdapterStoreError
from schemas import Event, Topic
from schemas.audit import AuditRecorded
from schemas.manifest import AdapterManifest, manifest_sha256
from schemas.model_events import AdapterPromoted, ModelEventBase
from schemas.version import Version

Sender = Callable[[list[tuple[Topic, str, Event]]], None]
"""Publishes events and waits for the broker's acknowledgement (raises when it does not)."""


def default_actor() -> str:
    """`cli@<host>`: who the audit trail names when no --actor is given."""
    host = "".join(c if c.isalnum() or c in "._-" else "-" for c in socket.gethostname())
    return f"cli@{host[:100] or 'localhost'}"


def list_versions(store: AdapterStore, task: str | None, console: Console) -> int:
    """A table of every version of `task` (or of all tasks) with gate verdicts and pointers."""
    tasks = [task] if task else store.tasks()
    table = Table("task", "version", "parent", "created", "gate", "state", "reason")
    for name in tasks:
        champion, pin = store.champion(name), store.pinned(name)
        for version in reversed(store.versions(name)):
            manifest = store.read_manifest(name, version)
            marks = []
            if champion is not None and champion.version == version:
                marks.append("champion")
            if pin is not None and pin.version == version:
                marks.append("pinned")
            table.add_row(
                name, version, manifest.parent_version or "-",
                manifest.created_at.strftime("%Y-%m-%d %H:%M:%S"),
                "promoted" if manifest.gate.promoted else "rejected",
                ",".join(marks), manifest.gate.reason[:80],
            )
    console.print(table)
    return 0


def show_version(store: AdapterStore, task: str, version: str | None, as_json: bool,
                 console: Console) -> int:
    """The manifest of `task`@`version` (default: the champion), verified file by file."""
    version = version or _champion_version(store, task)
    manifest = store.verify(task, version)
    if as_json:
        console.print_json(manifest.model_dump_json(by_alias=True))
        return 0
    console.print(f"[bold]{task}@{version}[/] parent {manifest.parent_version or '-'}; "
                  f"manifest sha256 {manifest_sha256(manifest)}")
    lora = manifest.lora
    console.print(f"base {manifest.base_model_id} ({manifest.base_model_sha256[:12]}), "
                  f"kind {manifest.kind}, LoRA r={lora.r} on {lora.target_modules}")
    console.print(f"gate: {manifest.gate.reason}")
    lineage = manifest.lineage
    ranges = [f"{o.topic}[{o.partition}]{o.first}-{o.last}" for o in lineage.offsets]
    console.print(f"lineage: {len(lineage.request_ids)} requests, {len(lineage.record_ids)} "
                  f"records, sources {lineage.knowledge_sources}, offsets {ranges}")
    for name, value in sorted(manifest.metrics.items()):
        console.print(f"  {name} = {value:.6g}")
    return 0


def diff_versions(store: AdapterStore, task: str, old: str, new: str, console: Console) -> int:
    """What changed between two versions: settings, metrics, files and lineage sizes."""
    a, b = store.read_manifest(task, old), store.read_manifest(task, new)
    table = Table("field", old, new)
    for key, left, right in _differences(_flat(a), _flat(b)):
        table.add_row(key, left, right)
    console.print(table)
    return 0


def _flat(manifest: AdapterManifest) -> dict[str, str]:
    data = manifest.model_dump(mode="json", by_alias=True)
    flat: dict[str, str] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), inner)
        elif isinstance(value, list) and len(value) > 8:
            flat[prefix] = f"{len(value)} items"
        else:
            flat[prefix] = json.dumps(value, ensure_ascii=False)[:120]

    walk("", data)
    return flat


def _differences(a: dict[str, str], b: dict[str, str]) -> list[tuple[str, str, str]]:
    keys = sorted(set(a) | set(b))
    return [(k, a.get(k, "-"), b.get(k, "-")) for k in keys if a.get(k) != b.get(k)]


def rollback(store: AdapterStore, task: str, to_version: str | None, actor: str, reason: str,
             send: Sender, console: Console, *, to_base: bool = False) -> int:
    """Move the champion back (to `to_version`, or the base model with `to_base`, default the
    newest earlier promoted version, else the base model), pin it there, then announce and
    audit the change."""
    current = _champion_version(store, task)
    target = to_version
    if target is None and not to_base:
        target = _previous_promoted(store, task, current)
    old, new = store.rollback(task, target, actor, reason)
    assert old is not None  # rollback refuses when there is no champion
    digest = None if new is None else store.champion(task).manifest_sha256  # type: ignore[union-attr]
    now = datetime.now(UTC)
    event = rollback_event(task, old, new, digest, reason, automatic=False, now=now)
    console.print(f"{task}: champion {old} -> {new or 'base model'} (pinned by {actor})")
    send([(Topic.MODEL_EVENTS, task, event),
          audit_record(actor, "adapter.rollback", task, new, {"from": old, "reason": reason},
                       now)])
    return 0


def pin(store: AdapterStore, task: str, version: str, actor: str, reason: str, send: Sender,
        console: Console) -> int:
    """Pin `task` at `version` (it becomes the champion; the learner will not replace it). When
    that moves the champion, nodes are told on `model.events` (as a manual rollback event: they
    re-read the pointer), so they switch now rather than at their next restart."""
    before = store.champion(task)
    store.pin(task, version, actor, reason)
    after = store.champion(task)
    now = datetime.now(UTC)
    console.print(f"{task}: pinned at {version} by {actor}")
    events: list[tuple[Topic, str, Any]] = []
    moved = _pin_event(task, before, after, f"pinned at {version} by {actor}: {reason}", now)
    if moved is not None:
        events.append((Topic.MODEL_EVENTS, task, moved))
    events.append(audit_record(actor, "adapter.pin", task, version, {"reason": reason}, now))
    send(events)
    return 0


def _pin_event(task: str, before: Champion | None, after: Champion | None, note: str,
               now: datetime) -> ModelEventBase | None:
    """The model event telling nodes a pin moved the champion: a manual rollback event from a
    version, or a promotion when the task was on its base model; None if nothing moved."""
    if after is None or (before is not None and before.version == after.version):
        return None  # a pin at the base model comes only from rollback, which announces itself
    if before is not None:
        return rollback_event(task, before.version, after.version, after.manifest_sha256, note,
                              automatic=False, now=now)
    return AdapterPromoted(
        schema_version=1, event_id=event_id(task, after.version, "pinned", now.isoformat()),
        task=task, occurred_at=now, version=after.version, manifest_sha256=after.manifest_sha256,
    )


def unpin(store: AdapterStore, task: str, actor: str, send: Sender, console: Console) -> int:
    """Remove `task`'s pin; the champion stays until the learner promotes another."""
    old = store.unpin(task, actor)
    now = datetime.now(UTC)
    console.print(f"{task}: unpinned (was {old.version if old else 'not pinned'})")
    was = {"was": old.version if old else None}
    send([audit_record(actor, "adapter.unpin", task, None, was, now)])
    return 0


def affected(store: AdapterStore, record_id: str, console: Console) -> int:
    """Every version whose lineage holds `record_id` (exit 0 even when none does)."""
    hits = store.affected_by_record(record_id)
    for task, version in hits:
        console.print(f"{task}@{version}")
    if not hits:
        console.print(f"no version's lineage holds record {record_id!r}")
    return 0


def _champion_version(store: AdapterStore, task: str) -> str:
    champion = store.champion(task)
    if champion is None:
        raise AdapterStoreError(f"task {task!r} has no champion (it serves the base model)")
    return champion.version


def _previous_promoted(store: AdapterStore, task: str, current: str) -> str | None:
    earlier = [v for v in store.versions(task) if Version.parse(v) < Version.parse(current)]
    for version in reversed(earlier):
        if store.read_manifest(task, version).gate.promoted:
            return version
    return None


def audit_record(actor: str, action: str, task: str | None, version: str | None,
           detail: dict[str, Any], now: datetime) -> tuple[Topic, str, Event]:
    """The audit record of an operator's action, keyed by its audit_id (the contract's key)."""
    record = AuditRecorded(schema_version=1, audit_id=str(uuid.uuid4()), actor=actor,
                           action=action, task=task, version=version, detail=detail,
                           occurred_at=now)
    return Topic.AUDIT_EVENTS, record.audit_id, record
