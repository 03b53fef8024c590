"""Continual-learning metrics on hand-built accuracy matrices with known answers."""

from __future__ import annotations

import pytest

from bench.forgetting_metrics import (
    average_accuracy,
    backward_transfer,
    mean_spread,
    newest_accuracy,
)

# row i: after learning domain i; column j: accuracy on domain j
FORGETS = [
    [0.9, 0.1, 0.0],
    [0.3, 0.8, 0.1],
    [0.1, 0.2, 0.7],
]


def test_backward_transfer_averages_the_drop_of_every_earlier_domain() -> None:
    # domain 0: 0.1 - 0.9 = -0.8; domain 1: 0.2 - 0.8 = -0.6
    assert backward_transfer(FORGETS) == pytest.approx(-0.7)


def test_backward_transfer_is_positive_when_later_steps_help_earlier_domains() -> None:
    assert backward_transfer([[0.5, 0.0], [0.7, 0.9]]) == pytest.approx(0.2)


def test_no_forgetting_and_a_single_domain_give_zero_backward_transfer() -> None:
    assert backward_transfer([[0.9, 0.0], [0.9, 0.8]]) == 0.0
    assert backward_transfer([[0.6]]) == 0.0


def test_average_accuracy_reads_only_the_last_row() -> None:
    assert average_accuracy(FORGETS) == pytest.approx(1.0 / 3)
    assert newest_accuracy(FORGETS) == 0.7


def test_a_ragged_or_empty_matrix_is_refused_with_its_shape() -> None:
    with pytest.raises(ValueError, match=r"rows of \[2, 1\]"):
        backward_transfer([[0.1, 0.2], [0.3]])
    with pytest.raises(ValueError, match="non-empty"):
        average_accuracy([])


def test_mean_spread_is_the_mean_and_sample_standard_deviation() -> None:
    assert mean_spread([1.0, 2.0, 3.0]) == pytest.approx((2.0, 1.0))
    assert mean_spread([0.4]) == (0.4, 0.0)
    with pytest.raises(ValueError):
        mean_spread([])
