"""Training hooks: the named extension points of `train_steps`, and the EWC hook.

`train_steps` calls, in this order: `on_start` once; per step `extra_loss` (added to the task
loss before backward) then, after the optimizer step, `on_step_end`; `on_end` once. EWC, replay,
DPO and metrics are hooks, so the loop itself never branches on them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from learner.errors import EwcStateError
from learner.ewc import Batch, ewc_penalty


@dataclass
class TrainState:
    """What hooks see: the model and optimizer, steps done, and the objective of each step."""

    model: nn.Module
    optimizer: Optimizer
    step: int = 0
    losses: list[float] = field(default_factory=list)


class TrainHook(Protocol):
    """An extension of the training loop; `BaseHook` gives no-op defaults."""

    def on_start(self, state: TrainState) -> None: ...

    def extra_loss(self, state: TrainState, batch: Batch) -> Tensor | None: ...

    def on_step_end(self, state: TrainState) -> None: ...

    def on_end(self, state: TrainState) -> None: ...


class BaseHook:
    """A hook that does nothing; subclass it and override only the points you need."""

    def on_start(self, state: TrainState) -> None:
        return None

    def extra_loss(self, state: TrainState, batch: Batch) -> Tensor | None:
        return None

    def on_step_end(self, state: TrainState) -> None:
        return None

    def on_end(self, state: TrainState) -> None:
        return None


class EwcHook(BaseHook):
    """Adds `lam / 2 * sum F * (theta - anchor)**2` over the Fisher's parameters to every step.

    Parameters are found by `named_parameters()` name at `on_start`; each must be trainable.
    `penalties` records the penalty of each step (for metrics and the manifest).
    """

    def __init__(
        self, anchor: Mapping[str, Tensor], fisher: Mapping[str, Tensor], lam: float
    ) -> None:
        if lam < 0.0:
            raise EwcStateError(f"EWC lambda must be >= 0, got {lam}")
        self.anchor = dict(anchor)
        self.fisher = dict(fisher)
        self.lam = lam
        self.penalties: list[float] = []
        self._params: dict[str, Tensor] = {}

    def on_start(self, state: TrainState) -> None:
        named = dict(state.model.named_parameters())
        missing = sorted(name for name in self.fisher if name not in named)
        frozen = sorted(
            name for name in self.fisher if name in named and not named[name].requires_grad
        )
        if missing or frozen:
            raise EwcStateError(
                f"EWC Fisher names parameters the model lacks {missing[:5]} "
                f"or does not train {frozen[:5]}"
            )
        self._params = {name: named[name] for name in self.fisher}
        with torch.no_grad():  # one move to the parameters' device, not one per step
            for name, param in self._params.items():
                self.anchor[name] = self.anchor[name].to(param.device)  # keep its precision
                self.fisher[name] = self.fisher[name].to(param.device)

    def extra_loss(self, state: TrainState, batch: Batch) -> Tensor | None:
        penalty = ewc_penalty(self._params, self.anchor, self.fisher, self.lam)  # []
        self.penalties.append(float(penalty.detach()))
        return penalty
