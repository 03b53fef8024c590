"""The online watch decides only after min_rated answers, and only on excess over the margin."""

from __future__ import annotations

import pytest

from learner.watch import RatingStats, judge
from schemas.tasks import WatchSettings

SETTINGS = WatchSettings(min_rated=10, margin=0.1)


def test_no_verdict_before_enough_ratings() -> None:
    assert judge(RatingStats(9, 9), RatingStats(100, 0), SETTINGS) is None


def test_rolls_back_when_the_rate_exceeds_the_parents_by_more_than_the_margin() -> None:
    verdict = judge(RatingStats(10, 4), RatingStats(100, 20), SETTINGS)
    assert verdict is not None and verdict.rollback
    assert "0.400 over 10" in verdict.reason and "0.200 over 100" in verdict.reason


def test_keeps_the_version_within_the_margin() -> None:
    verdict = judge(RatingStats(10, 3), RatingStats(100, 20), SETTINGS)
    assert verdict is not None and not verdict.rollback


def test_a_parent_without_ratings_counts_as_zero() -> None:
    verdict = judge(RatingStats(10, 2), RatingStats(0, 0), SETTINGS)
    assert verdict is not None and verdict.rollback


@pytest.mark.parametrize(("rated", "negative"), [(-1, 0), (3, 4), (3, -1)])
def test_impossible_counts_are_refused(rated: int, negative: int) -> None:
    with pytest.raises(ValueError, match="negative <= rated"):
        RatingStats(rated, negative)
