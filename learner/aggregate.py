"""Label aggregation (pure): annotator votes on one item -> an agreed label or a dispute.

An item is one served request (`item` = request_id). Each annotator counts once (their first
vote); the majority label is agreed when its share reaches `min_agreement`, else disputed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from learner.errors import InvalidVote
from learner.examples import Example

ANONYMOUS = "-"


@dataclass(frozen=True)
class Vote:
    """One annotator's label for one item; `text` is the classified input."""

    task: str
    item: str
    annotator: str
    label: str
    text: str
    domain: str = "feedback"

    def __post_init__(self) -> None:
        for name in ("task", "item", "annotator", "label", "text"):
            if not getattr(self, name):
                raise InvalidVote(f"vote on item {self.item!r}: {name} is empty")


@dataclass(frozen=True)
class Agreed:
    """The item's label: `agreement` is the majority's share of the `n` annotators."""

    label: str
    agreement: float
    n: int


@dataclass(frozen=True)
class Disputed:
    """No label reached the required agreement; `counts` is (label, votes), most voted first."""

    counts: tuple[tuple[str, int], ...]
    n: int


Outcome = Agreed | Disputed


def aggregate(votes: Iterable[Vote], min_agreement: float = 1.0) -> Outcome:
    """Aggregate the votes of one item; ties are always disputed."""
    if not 0.0 < min_agreement <= 1.0:
        raise InvalidVote(f"min_agreement {min_agreement!r} not in (0, 1]")
    first: dict[str, str] = {}
    items: set[tuple[str, str]] = set()
    for vote in votes:
        items.add((vote.task, vote.item))
        first.setdefault(vote.annotator, vote.label)
    if len(items) > 1:
        raise InvalidVote(f"votes of several items aggregated together: {sorted(items)}")
    if not first:
        raise InvalidVote("no votes to aggregate")
    counts = sorted(Counter(first.values()).items(), key=lambda pair: (-pair[1], pair[0]))
    n = len(first)
    top_label, top = counts[0]
    tied = len(counts) > 1 and counts[1][1] == top
    if not tied and top / n >= min_agreement:
        return Agreed(label=top_label, agreement=top / n, n=n)
    return Disputed(counts=tuple(counts), n=n)


def agreement_for(votes: Iterable[Vote], label: str) -> float:
    """Share of distinct annotators who voted `label` (0.0 with no votes)."""
    first: dict[str, str] = {}
    for vote in votes:
        first.setdefault(vote.annotator, vote.label)
    if not first:
        return 0.0
    return sum(1 for chosen in first.values() if chosen == label) / len(first)


def label_example_id(item: str, annotator: str = ANONYMOUS) -> str:
    """Id of the label example of `item`: aggregated ("-") or resolved by `annotator`."""
    return f"fb:{item}:label:{annotator}"


def label_example(vote: Vote, label: str, agreement: float, annotator: str = ANONYMOUS) -> Example:
    """The trainable label example for `vote`'s item with the decided `label`."""
    return Example(
        example_id=label_example_id(vote.item, annotator),
        task=vote.task,
        kind="label",
        text=vote.text,
        label=label,
        domain=vote.domain,
        request_id=vote.item,
        agreement=agreement,
    )
