"""The evaluation gate: promote a candidate adapter over the champion only with evidence.

`decide` is pure: it takes already computed metrics (target with per-example scores, retention
per older domain, a general probe) and the task's `GateSettings`, and returns the verdict with a
one-line reason and every number it used; the learner stores that in the version's manifest.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

import numpy as np
from numpy.typing import NDArray

from learner.errors import GateInputError
from schemas.manifest import GateDecision
from schemas.tasks import GateSettings

_CHUNK_ELEMENTS: Final = 1 << 20  # resampled indices held in memory at once


def _check_finite(where: str, values: Sequence[float]) -> None:
    bad = [value for value in values if not math.isfinite(value)]
    if bad:
        raise GateInputError(f"{where} must be finite numbers, got {bad[:3]}")


@dataclass(frozen=True)
class MetricComparison:
    """One aggregate metric of candidate and champion on one evaluation set.

    `relative` measures regression as a fraction of the champion's value (for perplexity or
    loss, whose scale is not [0, 1]); otherwise in the metric's own units.
    """

    name: str
    candidate: float
    champion: float
    higher_is_better: bool = True
    relative: bool = False

    def __post_init__(self) -> None:
        if not self.name:
            raise GateInputError("a metric needs a name")
        _check_finite(f"metric {self.name!r} values", [self.candidate, self.champion])
        if self.relative and self.champion == 0.0:
            raise GateInputError(f"metric {self.name!r} is relative but the champion scored 0")

    def gain(self) -> float:
        """How much better the candidate is, in metric units (negative when worse)."""
        difference = self.candidate - self.champion
        return difference if self.higher_is_better else -difference

    def regression(self) -> float:
        """How much worse the candidate is (negative when better), relative if so declared."""
        worse = -self.gain()
        return worse / abs(self.champion) if self.relative else worse


@dataclass(frozen=True)
class TargetMetric:
    """The target metric on the held-out pool, with per-example scores paired by example.

    `candidate` / `champion` are the aggregate values (e.g. F1); the per-example scores (e.g.
    1.0 correct / 0.0 wrong, or negated loss) feed the paired bootstrap.
    """

    name: str
    candidate: float
    champion: float
    candidate_scores: Sequence[float]
    champion_scores: Sequence[float]
    higher_is_better: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "candidate_scores", tuple(self.candidate_scores))
        object.__setattr__(self, "champion_scores", tuple(self.champion_scores))
        if len(self.candidate_scores) != len(self.champion_scores):
            raise GateInputError(
                f"target {self.name!r} has {len(self.candidate_scores)} candidate scores "
                f"but {len(self.champion_scores)} champion scores; they must be paired"
            )
        if not self.candidate_scores:
            raise GateInputError(f"target {self.name!r} has n=0 examples; cannot gate")
        _check_finite(f"target {self.name!r} values", [self.candidate, self.champion])
        _check_finite(f"target {self.name!r} candidate scores", self.candidate_scores)
        _check_finite(f"target {self.name!r} champion scores", self.champion_scores)

    @property
    def n(self) -> int:
        return len(self.candidate_scores)

    def comparison(self) -> MetricComparison:
        return MetricComparison(self.name, self.candidate, self.champion, self.higher_is_better)


@dataclass(frozen=True)
class GateInputs:
    """Everything the gate compares: target, retention per older domain, general probe."""

    target: TargetMetric
    retention: tuple[MetricComparison, ...] = ()
    probe: MetricComparison | None = None

    def __post_init__(self) -> None:
        names = [metric.name for metric in self.retention]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise GateInputError(f"retention domains {repeated} appear more than once")


@dataclass(frozen=True)
class GateResult:
    """The verdict, a one-line reason with the numbers, and every number by name."""

    promoted: bool
    reason: str
    numbers: dict[str, float] = field(default_factory=dict)

    def as_decision(self) -> GateDecision:
        """The manifest form of this verdict."""
        return GateDecision(promoted=self.promoted, reason=self.reason, numbers=self.numbers)


def paired_bootstrap_lower_bound(
    candidate_scores: Sequence[float],
    champion_scores: Sequence[float],
    *,
    samples: int,
    alpha: float = 0.05,
    seed: int,
) -> float:
    """One-sided (1 - alpha) lower bound of the mean paired difference candidate - champion.

    Resamples examples with replacement `samples` times (the same examples for both sides) and
    returns the alpha quantile of the resampled means; deterministic for a seed.
    """
    if len(candidate_scores) != len(champion_scores):
        raise GateInputError(
            f"paired bootstrap needs as many candidate scores ({len(candidate_scores)}) "
            f"as champion scores ({len(champion_scores)})"
        )
    if not candidate_scores:
        raise GateInputError("paired bootstrap needs at least one example, got n=0")
    if samples < 1:
        raise GateInputError(f"bootstrap samples must be >= 1, got {samples}")
    if not 0.0 < alpha < 1.0:
        raise GateInputError(f"alpha must be in (0, 1), got {alpha}")
    differences = np.asarray(candidate_scores, dtype=np.float64) - np.asarray(
        champion_scores, dtype=np.float64
    )  # [n]
    return float(np.quantile(_resampled_means(differences, samples, seed), alpha))


def _resampled_means(
    differences: NDArray[np.float64], samples: int, seed: int
) -> NDArray[np.float64]:
    rng = np.random.default_rng(seed)
    size = differences.shape[0]
    means = np.empty(samples, dtype=np.float64)  # [samples]
    step = max(1, _CHUNK_ELEMENTS // size)
    for start in range(0, samples, step):
        count = min(step, samples - start)
        picks = rng.integers(0, size, size=(count, size))  # [count, n]
        means[start : start + count] = differences[picks].mean(axis=1)
    return means


def decide(
    inputs: GateInputs, settings: GateSettings, *, alpha: float = 0.05, seed: int = 0
) -> GateResult:
    """Promote only if the target gains >= min_gain with a bootstrap lower bound > 0 and every
    retention domain and the probe regress by <= max_forgetting."""
    target = inputs.target
    sign = 1.0 if target.higher_is_better else -1.0
    lower = paired_bootstrap_lower_bound(
        [sign * score for score in target.candidate_scores],
        [sign * score for score in target.champion_scores],
        samples=settings.bootstrap_samples,
        alpha=alpha,
        seed=seed,
    )
    gain = target.comparison().gain()
    numbers = _target_numbers(target, gain, lower, alpha) | {
        "min_gain": settings.min_gain,
        "max_forgetting": settings.max_forgetting,
    }
    failures: list[str] = []
    if gain < settings.min_gain:
        failures.append(f"target gain {gain:+.4g} < min_gain {settings.min_gain:.4g}")
    if lower <= 0.0:
        failures.append(f"target lower bound {lower:+.4g} <= 0")
    guarded = [("retention", metric) for metric in inputs.retention]
    if inputs.probe is not None:
        guarded.append(("probe", inputs.probe))
    for group, metric in guarded:
        numbers |= _guard_numbers(group, metric)
        failures += _forgetting_failures(group, metric, settings.max_forgetting)
    summary = _summary(target, gain, lower, alpha, guarded)
    if failures:
        return GateResult(False, f"rejected: {'; '.join(failures)} | {summary}", numbers)
    return GateResult(True, f"promoted: {summary}", numbers)


def _target_numbers(
    target: TargetMetric, gain: float, lower: float, alpha: float
) -> dict[str, float]:
    return {
        "target.candidate": target.candidate,
        "target.champion": target.champion,
        "target.gain": gain,
        "target.lower_bound": lower,
        "target.alpha": alpha,
        "target.n": float(target.n),
    }


def _guard_numbers(group: str, metric: MetricComparison) -> dict[str, float]:
    prefix = f"{group}.{metric.name}"
    return {
        f"{prefix}.candidate": metric.candidate,
        f"{prefix}.champion": metric.champion,
        f"{prefix}.regression": metric.regression(),
    }


def _forgetting_failures(group: str, metric: MetricComparison, budget: float) -> list[str]:
    regression = metric.regression()
    if regression <= budget:
        return []
    return [f"{group} {metric.name!r} regressed {regression:.4g} > max_forgetting {budget:.4g}"]


def _summary(
    target: TargetMetric,
    gain: float,
    lower: float,
    alpha: float,
    guarded: Sequence[tuple[str, MetricComparison]],
) -> str:
    parts = [
        f"{target.name} {target.candidate:.4g} vs {target.champion:.4g} "
        f"(gain {gain:+.4g}, {1 - alpha:.0%} lower bound {lower:+.4g}, n={target.n})"
    ]
    parts += [
        f"{group} {metric.name} regression {metric.regression():+.4g}" for group, metric in guarded
    ]
    return ", ".join(parts)
