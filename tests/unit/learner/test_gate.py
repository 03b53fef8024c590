"""The gate promotes only clear, budget-respecting improvements and says why in numbers."""

from __future__ import annotations

import pytest

from learner.errors import GateInputError
from learner.gate import (
    GateInputs,
    MetricComparison,
    TargetMetric,
    decide,
    paired_bootstrap_lower_bound,
)
from schemas.tasks import GateSettings

SETTINGS = GateSettings(min_gain=0.02, max_forgetting=0.02, bootstrap_samples=2000)


def accuracy(name: str, candidate: list[float], champion: list[float]) -> TargetMetric:
    return TargetMetric(
        name,
        candidate=sum(candidate) / len(candidate),
        champion=sum(champion) / len(champion),
        candidate_scores=candidate,
        champion_scores=champion,
    )


# 200 examples: the champion gets 140 right; the candidate also fixes 30 and breaks 4.
CHAMPION = [1.0] * 140 + [0.0] * 60
CANDIDATE = [1.0] * 136 + [0.0] * 4 + [1.0] * 30 + [0.0] * 30
CLEAN = accuracy("accuracy", CANDIDATE, CHAMPION)


def test_clean_improvement_is_promoted_with_its_numbers() -> None:
    retained = (MetricComparison("billing", 0.90, 0.905), MetricComparison("shipping", 0.8, 0.79))
    probe = MetricComparison("perplexity", 20.2, 20.0, higher_is_better=False, relative=True)
    result = decide(GateInputs(CLEAN, retained, probe), SETTINGS)
    assert result.promoted, result.reason
    assert result.reason.startswith("promoted: accuracy 0.83 vs 0.7 (gain +0.13, 95% lower bound +")
    assert "\n" not in result.reason
    assert result.numbers["target.n"] == 200
    assert result.numbers["target.gain"] == pytest.approx(0.13)
    assert 0.0 < result.numbers["target.lower_bound"] < 0.13
    assert result.numbers["retention.billing.regression"] == pytest.approx(0.005)
    assert result.numbers["probe.perplexity.regression"] == pytest.approx(0.01)  # 1% worse
    assert result.as_decision().promoted


def test_gain_below_min_gain_is_rejected() -> None:
    result = decide(GateInputs(CLEAN), SETTINGS.model_copy(update={"min_gain": 0.2}))
    assert not result.promoted
    assert "target gain +0.13 < min_gain 0.2" in result.reason
    assert result.numbers["target.lower_bound"] > 0  # rejected on the gain alone


def test_noisy_gain_whose_lower_bound_is_not_positive_is_rejected() -> None:
    # 20 examples: the candidate fixes 4 and breaks 3, a +0.05 gain that noise explains.
    champion = [1.0] * 10 + [0.0] * 4 + [1.0] * 3 + [0.0] * 3
    candidate = [1.0] * 10 + [1.0] * 4 + [0.0] * 3 + [0.0] * 3
    result = decide(GateInputs(accuracy("accuracy", candidate, champion)), SETTINGS)
    assert not result.promoted
    assert result.numbers["target.gain"] == pytest.approx(0.05)
    assert result.numbers["target.lower_bound"] <= 0
    assert "target lower bound" in result.reason and "<= 0" in result.reason


def test_retention_regression_over_budget_is_rejected_naming_the_domain() -> None:
    retained = (MetricComparison("billing", 0.90, 0.905), MetricComparison("refunds", 0.70, 0.75))
    result = decide(GateInputs(CLEAN, retained), SETTINGS)
    assert not result.promoted
    assert "retention 'refunds' regressed 0.05 > max_forgetting 0.02" in result.reason
    assert "'billing' regressed" not in result.reason
    assert result.numbers["retention.refunds.regression"] == pytest.approx(0.05)


def test_lower_is_better_metrics_are_oriented_explicitly() -> None:
    champion_loss = [2.0, 2.1, 1.9, 2.2] * 25
    candidate_loss = [value - 0.3 for value in champion_loss]
    target = TargetMetric("loss", 1.75, 2.05, candidate_loss, champion_loss, higher_is_better=False)
    worse_probe = MetricComparison("perplexity", 21.0, 20.0, higher_is_better=False, relative=True)
    assert decide(GateInputs(target), SETTINGS).promoted
    rejected = decide(GateInputs(target, probe=worse_probe), SETTINGS)
    assert not rejected.promoted
    assert "probe 'perplexity' regressed 0.05 > max_forgetting 0.02" in rejected.reason
    higher_loss = TargetMetric(
        "loss", 2.05, 1.75, champion_loss, candidate_loss, higher_is_better=False
    )
    assert not decide(GateInputs(higher_loss), SETTINGS).promoted


def test_identical_scores_are_rejected_with_bound_zero() -> None:
    result = decide(GateInputs(accuracy("accuracy", CHAMPION, CHAMPION)), SETTINGS)
    assert not result.promoted
    assert result.numbers["target.lower_bound"] == 0.0
    assert "target lower bound +0 <= 0" in result.reason


def test_no_examples_or_unpaired_scores_are_clear_errors() -> None:
    with pytest.raises(GateInputError, match="target 'accuracy' has n=0 examples"):
        TargetMetric("accuracy", 0.5, 0.5, [], [])
    with pytest.raises(GateInputError, match="3 candidate scores but 2 champion scores"):
        TargetMetric("accuracy", 0.5, 0.5, [1.0, 0.0, 1.0], [1.0, 0.0])
    with pytest.raises(GateInputError, match="n=0"):
        paired_bootstrap_lower_bound([], [], samples=10, seed=0)
    with pytest.raises(GateInputError, match=r"must be finite numbers, got \[nan\]"):
        MetricComparison("billing", float("nan"), 0.5)
    with pytest.raises(GateInputError, match=r"retention domains \['billing'\] appear more"):
        GateInputs(CLEAN, (MetricComparison("billing", 1, 1), MetricComparison("billing", 1, 1)))


def test_bootstrap_is_deterministic_for_a_seed_and_exact_for_constant_differences() -> None:
    first = paired_bootstrap_lower_bound(CANDIDATE, CHAMPION, samples=500, seed=7)
    assert first == paired_bootstrap_lower_bound(CANDIDATE, CHAMPION, samples=500, seed=7)
    assert first != paired_bootstrap_lower_bound(CANDIDATE, CHAMPION, samples=500, seed=8)
    shifted = paired_bootstrap_lower_bound([0.5, 0.7, 0.9], [0.4, 0.6, 0.8], samples=50, seed=0)
    assert shifted == pytest.approx(0.1)
    # a smaller alpha asks for more confidence, so the bound can only go down
    loose = paired_bootstrap_lower_bound(CANDIDATE, CHAMPION, samples=500, alpha=0.2, seed=7)
    assert loose >= first
