"""Review of disputed labels: list with votes, resolve into an agreed label example."""

from __future__ import annotations

from pathlib import Path

import pytest

from learner.aggregate import Agreed, Vote
from learner.errors import InvalidVote, LabelNotInSet, ReviewNotFound
from learner.pending import PendingStore
from learner.review import list_disputed, render, resolve
from schemas.tasks import TaskConfig

TASK = TaskConfig.model_validate(
    {
        "name": "cls",
        "kind": "classification",
        "base_model": "tiny",
        "labels": ["pos", "neg", "mixed"],
        "training": {"holdout_percent": 1},
    }
)


@pytest.fixture
def store(tmp_path: Path) -> PendingStore:
    store = PendingStore(tmp_path / "s.sqlite")
    item = "req-7"  # not heldout at 1%: the resolved example must be trainable below
    for annotator, label in [("a", "pos"), ("b", "neg"), ("c", "neg")]:
        store.add_vote(Vote("cls", item, annotator, label, "it was   fine\nI guess"), 1)
    return store


def test_disputed_items_are_listed_with_votes(store: PendingStore) -> None:
    [item] = list_disputed(store, "cls")
    assert (item.item, item.votes) == ("req-7", (("a", "pos"), ("b", "neg"), ("c", "neg")))
    assert render([item]) == ["req-7\ta=pos b=neg c=neg\tit was fine I guess"]
    assert list_disputed(store, "other") == []


def test_resolve_creates_the_agreed_example_with_actor_and_agreement(store: PendingStore) -> None:
    example = resolve(store, TASK, "req-7", "neg", "alice")
    assert (example.example_id, example.label) == ("fb:req-7:label:alice", "neg")
    assert example.agreement == pytest.approx(2 / 3)
    assert [e.example_id for e, _ in store.pending("cls")] == ["fb:req-7:label:alice"]
    assert store.state_of("cls", "fb:req-7:label:-") == ("train", "superseded", None)
    assert list_disputed(store, "cls") == []


def test_resolution_stands_against_later_votes(store: PendingStore) -> None:
    resolve(store, TASK, "req-7", "mixed", "alice")
    outcome = store.add_vote(Vote("cls", "req-7", "d", "pos", "it was fine"), 1)
    assert outcome == Agreed("mixed", 0.0, 4)
    assert [e.label for e, _ in store.pending("cls")] == ["mixed"]


def test_resolve_rejects_labels_outside_the_set(store: PendingStore) -> None:
    with pytest.raises(LabelNotInSet, match="'meh'"):
        resolve(store, TASK, "req-7", "meh", "alice")


def test_resolve_needs_an_open_item(store: PendingStore) -> None:
    with pytest.raises(ReviewNotFound, match="never disputed"):
        resolve(store, TASK, "req-unknown", "pos", "alice")
    resolve(store, TASK, "req-7", "neg", "alice")
    with pytest.raises(ReviewNotFound, match="already resolved"):
        resolve(store, TASK, "req-7", "pos", "bob")
    with pytest.raises(InvalidVote, match="actor"):
        resolve(store, TASK, "req-7", "pos", " ")


def test_long_text_preview_is_cut() -> None:
    from learner.pending import ReviewItem

    [line] = render([ReviewItem("t", "i", "x" * 200, (("a", "pos"),), 0.0)])
    assert line.endswith("...") and len(line.split("\t")[2]) == 80
