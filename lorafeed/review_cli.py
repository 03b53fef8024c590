"""`lorafeed review list|resolve`: the disputed-label queue in the learner's pending store."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console

from learner.errors import LearnerError
from learner.pending import PendingStore
from learner.review import list_disputed, render, resolve
from learner.settings import LearnerSettings
from lorafeed.adapters_cli import Sender, audit_record, default_actor
from lorafeed.endpoints import EndpointError
from lorafeed.publish import PublishError
from lorafeed.settings import PlatformSettings
from lorafeed.task_catalog import CatalogError, load_catalog


def _store(state_dir: Path | None) -> PendingStore:
    platform, settings = PlatformSettings(), LearnerSettings()
    data_dir = settings.data_dir or (state_dir or platform.state_dir) / "learner"
    path = data_dir / "pending.sqlite3"
    if not path.exists():
        raise LearnerError(f"no learner data at {path}: has `lorafeed run learner` run here?")
    return PendingStore(path)


def run_review_list(task: str, as_json: bool, state_dir: Path | None, console: Console) -> int:
    """Print the open review items of `task` (exit 0 even when there are none)."""
    try:
        store = _store(state_dir)
    except LearnerError as exc:
        console.print(f"[red]error:[/] {exc}")
        return 2
    try:
        items = list_disputed(store, task)
    finally:
        store.close()
    if as_json:
        console.print_json(json.dumps([
            {"item": i.item, "text": i.text, "votes": [list(v) for v in i.votes]} for i in items
        ], ensure_ascii=False))
    elif not items:
        console.print(f"no disputed labels for task {task!r}")
    for line in [] if as_json else render(items):
        console.print(line, highlight=False, markup=False)
    return 0


def run_review_resolve(task: str, item: str, label: str, actor: str | None,
                       state_dir: Path | None, console: Console, send: Sender) -> int:
    """Decide `item`'s label and audit it on audit.events; exit 2 with the reason for an
    unknown task, item or label, 1 when the decision stands but its audit record was refused."""
    try:
        config = load_catalog(LearnerSettings().tasks_file).task(task)
        store = _store(state_dir)
    except (CatalogError, LearnerError) as exc:
        console.print(f"[red]error:[/] {exc}")
        return 2
    who = actor or default_actor()
    try:
        example = resolve(store, config, item, label, who)
    except LearnerError as exc:
        console.print(f"[red]error:[/] {exc}")
        return 2
    finally:
        store.close()
    console.print(f"{task}/{item}: label {example.label} (pending as {example.example_id})")
    detail = {"item": item, "label": label, "example_id": example.example_id}
    try:
        send([audit_record(who, "review.resolve", task, None, detail, datetime.now(UTC))])
    except (PublishError, EndpointError) as exc:
        console.print(f"[red]error:[/] the label is decided, but its audit record failed: {exc}")
        return 1
    return 0
