"""Label aggregation: unanimity (or a configured majority) agrees, anything else is disputed."""

from __future__ import annotations

import pytest

from learner.aggregate import (
    Agreed,
    Disputed,
    Vote,
    aggregate,
    agreement_for,
    label_example,
)
from learner.errors import InvalidVote


def votes(*pairs: tuple[str, str], item: str = "r1") -> list[Vote]:
    return [Vote("cls", item, annotator, label, "text") for annotator, label in pairs]


def test_single_vote_agrees() -> None:
    assert aggregate(votes(("a", "pos"))) == Agreed("pos", 1.0, 1)


def test_unanimous_votes_agree() -> None:
    assert aggregate(votes(("a", "pos"), ("b", "pos"), ("c", "pos"))) == Agreed("pos", 1.0, 3)


def test_any_disagreement_is_disputed_by_default() -> None:
    outcome = aggregate(votes(("a", "pos"), ("b", "pos"), ("c", "neg")))
    assert outcome == Disputed((("pos", 2), ("neg", 1)), 3)


def test_min_agreement_accepts_a_majority() -> None:
    outcome = aggregate(votes(("a", "pos"), ("b", "pos"), ("c", "neg")), min_agreement=0.6)
    assert isinstance(outcome, Agreed)
    assert (outcome.label, outcome.n) == ("pos", 3)
    assert outcome.agreement == pytest.approx(2 / 3)


def test_ties_are_disputed_even_at_low_min_agreement() -> None:
    outcome = aggregate(votes(("a", "pos"), ("b", "neg")), min_agreement=0.5)
    assert outcome == Disputed((("neg", 1), ("pos", 1)), 2)


def test_each_annotator_counts_once_with_their_first_vote() -> None:
    assert aggregate(votes(("a", "pos"), ("a", "neg"), ("b", "pos"))) == Agreed("pos", 1.0, 2)
    assert agreement_for(votes(("a", "pos"), ("a", "neg"), ("b", "neg")), "neg") == 0.5


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.01])
def test_bad_min_agreement_is_rejected(bad: float) -> None:
    with pytest.raises(InvalidVote, match=repr(bad)):
        aggregate(votes(("a", "pos")), min_agreement=bad)


def test_votes_of_different_items_cannot_mix() -> None:
    with pytest.raises(InvalidVote, match="several items"):
        aggregate(votes(("a", "pos")) + votes(("b", "pos"), item="r2"))


def test_no_votes_is_an_error() -> None:
    with pytest.raises(InvalidVote, match="no votes"):
        aggregate([])


def test_empty_vote_fields_are_rejected() -> None:
    with pytest.raises(InvalidVote, match="label is empty"):
        Vote("cls", "r1", "a", "", "text")


def test_label_example_records_label_agreement_and_annotator() -> None:
    [vote] = votes(("a", "pos"))
    example = label_example(vote, "pos", 0.5, annotator="lead")
    assert (example.example_id, example.kind, example.label, example.agreement) == (
        "fb:r1:label:lead",
        "label",
        "pos",
        0.5,
    )
    assert example.request_id == "r1" and example.text == "text"
