"""Online watch after a promotion: compare the new version's negative-rating rate with its
parent's once enough of its answers were rated, and decide whether to roll back (pure)."""

from __future__ import annotations

from dataclasses import dataclass

from schemas.tasks import WatchSettings


@dataclass(frozen=True)
class RatingStats:
    """Rated answers of one version: `rated` in all, `negative` of them rated -1."""

    rated: int
    negative: int

    def __post_init__(self) -> None:
        if self.rated < 0 or not 0 <= self.negative <= self.rated:
            raise ValueError(f"rating counts must satisfy 0 <= negative <= rated, got {self}")

    @property
    def rate(self) -> float:
        return self.negative / self.rated if self.rated else 0.0


@dataclass(frozen=True)
class WatchVerdict:
    """Whether to roll back, and a one-line reason with the numbers either way."""

    rollback: bool
    reason: str


def judge(new: RatingStats, parent: RatingStats, settings: WatchSettings) -> WatchVerdict | None:
    """None until `min_rated` answers of the new version are rated; then the verdict.

    The parent's rate is 0 when it has no ratings (a new version must then stay within `margin`
    of a perfect record).
    """
    if new.rated < settings.min_rated:
        return None
    excess = new.rate - parent.rate
    numbers = (
        f"negative rate {new.rate:.3f} over {new.rated} rated answers vs parent "
        f"{parent.rate:.3f} over {parent.rated}; margin {settings.margin:.3f}"
    )
    if excess > settings.margin:
        return WatchVerdict(True, f"online watch: {numbers} (excess {excess:+.3f})")
    return WatchVerdict(False, f"online watch passed: {numbers}")
