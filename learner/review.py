"""Human review of disputed labels, behind `lorafeed review list|resolve`.

Thin over `PendingStore`: list open items with their votes; resolve one with a label from the
task's label set, which creates the agreed label example with the reviewer as annotator.
"""

from __future__ import annotations

from learner.errors import InvalidVote, LabelNotInSet
from learner.examples import Example
from learner.pending import PendingStore, ReviewItem
from schemas.tasks import TaskConfig

TEXT_PREVIEW = 80


def list_disputed(store: PendingStore, task: str) -> list[ReviewItem]:
    """Open review items of `task`, oldest first."""
    return store.review_list(task)


def resolve(store: PendingStore, task: TaskConfig, item: str, label: str, actor: str) -> Example:
    """Decide `item`'s label; returns the new pending label example.

    Raises `LabelNotInSet` for a label outside the task's labels and `ReviewNotFound` when the
    item is not open for review.
    """
    labels = task.labels or []
    if label not in labels:
        raise LabelNotInSet(f"label {label!r} not in task {task.name!r} labels {labels}")
    if not actor.strip():
        raise InvalidVote(f"resolving item {item!r} needs a non-empty actor, got {actor!r}")
    return store.review_resolve(task.name, item, label, actor, task.training.holdout_percent)


def render(items: list[ReviewItem]) -> list[str]:
    """One line per item for the CLI: item, votes "annotator=label", and a text preview."""
    lines = []
    for entry in items:
        votes = " ".join(f"{annotator}={label}" for annotator, label in entry.votes)
        text = " ".join(entry.text.split())
        preview = text if len(text) <= TEXT_PREVIEW else text[: TEXT_PREVIEW - 3] + "..."
        lines.append(f"{entry.item}\t{votes}\t{preview}")
    return lines
