"""Continual-learning metrics over an accuracy matrix (pure): `matrix[i][j]` is the accuracy on
domain j's test set after training step i (step i learns domain i), as in Lopez-Paz & Ranzato,
"Gradient Episodic Memory for Continual Learning" (2017). Used by `bench/forgetting.py`.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

Matrix = Sequence[Sequence[float]]


def _check_square(matrix: Matrix) -> int:
    steps = len(matrix)
    if steps == 0 or any(len(row) != steps for row in matrix):
        widths = [len(row) for row in matrix]
        raise ValueError(f"need a non-empty square accuracy matrix, got rows of {widths}")
    return steps


def average_accuracy(matrix: Matrix) -> float:
    """Mean accuracy over all domains after the last step."""
    steps = _check_square(matrix)
    return statistics.fmean(matrix[steps - 1])


def backward_transfer(matrix: Matrix) -> float:
    """Mean over earlier domains j of (accuracy after the last step - accuracy right after
    learning j); negative means forgetting. 0.0 for a single domain."""
    steps = _check_square(matrix)
    if steps == 1:
        return 0.0
    last = matrix[steps - 1]
    return statistics.fmean(last[j] - matrix[j][j] for j in range(steps - 1))


def newest_accuracy(matrix: Matrix) -> float:
    """Accuracy on the last domain right after learning it."""
    steps = _check_square(matrix)
    return matrix[steps - 1][steps - 1]


def mean_spread(values: Sequence[float]) -> tuple[float, float]:
    """(mean, sample standard deviation) of `values`; the spread is 0.0 for one value."""
    if not values:
        raise ValueError("mean_spread needs at least one value")
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return statistics.fmean(values), spread
