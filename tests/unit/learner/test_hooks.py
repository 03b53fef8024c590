"""The EWC hook adds the penalty through the loop's extra_loss point, with known answers."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from learner.errors import EwcStateError
from learner.ewc import Batch
from learner.hooks import BaseHook, EwcHook, TrainHook, TrainState
from learner.training import train_steps


class Point(nn.Module):
    """A model that is one trainable vector and has no task loss of its own."""

    def __init__(self, start: list[float]) -> None:
        super().__init__()
        self.theta = nn.Parameter(torch.tensor(start))
        self.frozen = nn.Parameter(torch.zeros(1), requires_grad=False)


def no_task_loss(model: nn.Module, batch: Batch) -> Tensor:
    return torch.zeros(())


def test_ewc_hook_pulls_towards_the_anchor_by_the_known_factor() -> None:
    model = Point([3.0, -1.0])
    anchor = {"theta": torch.tensor([1.0, 1.0])}
    fisher = {"theta": torch.tensor([1.0, 2.0])}
    hook = EwcHook(anchor, fisher, lam=1.0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.25)
    result = train_steps(model, [{}] * 3, optimizer, no_task_loss, [hook], 3, seed=0)
    # SGD on lam/2 * F * d**2: d <- d * (1 - lr * lam * F) = d * 0.75 and d * 0.5 per step
    expected = torch.tensor([1.0 + 2.0 * 0.75**3, 1.0 - 2.0 * 0.5**3])
    torch.testing.assert_close(model.theta.detach(), expected)
    assert result.losses[0] == pytest.approx(0.5 * (1.0 * 4.0 + 2.0 * 4.0))
    assert hook.penalties == pytest.approx(list(result.losses))


def test_zero_lambda_adds_nothing() -> None:
    model = Point([3.0])
    hook = EwcHook({"theta": torch.tensor([0.0])}, {"theta": torch.tensor([5.0])}, lam=0.0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    assert train_steps(model, [{}], optimizer, no_task_loss, [hook], 1, seed=0).losses == (0.0,)


def test_fisher_for_missing_or_frozen_parameters_is_refused() -> None:
    model = Point([1.0])
    optimizer = torch.optim.SGD([model.theta], lr=0.1)
    for name in ("nope", "frozen"):
        hook = EwcHook({name: torch.zeros(1)}, {name: torch.ones(1)}, lam=1.0)
        with pytest.raises(EwcStateError, match=f"'{name}'"):
            train_steps(model, [{}], optimizer, no_task_loss, [hook], 1, seed=0)
    with pytest.raises(EwcStateError, match="lambda must be >= 0, got -1.0"):
        EwcHook({}, {}, lam=-1.0)


def test_base_hook_satisfies_the_protocol_and_does_nothing() -> None:
    hook: TrainHook = BaseHook()
    state = TrainState(Point([1.0]), torch.optim.SGD(Point([1.0]).parameters(), lr=0.1))
    hook.on_start(state)
    assert hook.extra_loss(state, {}) is None
