"""The training loop: a bounded number of optimizer steps, extended only through hooks.

Called by the learner for each incremental update after it has built the model (LoRA attached,
continued from the champion), the optimizer and the hooks (EWC, replay, ...). With a fixed seed
on CPU two runs produce byte-identical weights; device and dtype are the caller's choice.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from learner.errors import TrainingError
from learner.ewc import Batch, LossFn
from learner.hooks import TrainHook, TrainState


@dataclass(frozen=True)
class TrainResult:
    """Steps taken and the objective (task loss plus hook extras) of each step."""

    steps: int
    losses: tuple[float, ...]


def train_steps(
    model: nn.Module,
    batches: Iterable[Batch],
    optimizer: Optimizer,
    loss_fn: LossFn,
    hooks: Sequence[TrainHook],
    max_steps: int,
    seed: int,
) -> TrainResult:
    """One optimizer step per batch, at most `max_steps` (fewer if `batches` runs out).

    The model trains in train mode and gets its previous mode back; the caller's RNG state and
    deterministic-algorithms setting are restored afterwards.
    """
    if max_steps < 1:
        raise TrainingError(f"max_steps must be >= 1, got {max_steps}")
    was_training = model.training
    state = TrainState(model, optimizer)
    with _seeded_and_deterministic(seed):
        model.train()
        for hook in hooks:
            hook.on_start(state)
        for batch in itertools.islice(batches, max_steps):
            optimizer.zero_grad(set_to_none=True)
            loss = _objective(state, batch, loss_fn, hooks)  # []
            torch.autograd.backward(loss)
            optimizer.step()
            state.step += 1
            state.losses.append(float(loss.detach()))
            for hook in hooks:
                hook.on_step_end(state)
        for hook in hooks:
            hook.on_end(state)
    model.train(was_training)
    return TrainResult(state.step, tuple(state.losses))


def _objective(
    state: TrainState, batch: Batch, loss_fn: LossFn, hooks: Sequence[TrainHook]
) -> Tensor:
    """The task loss plus every hook's extra loss, a finite scalar []."""
    loss = loss_fn(state.model, batch)
    for hook in hooks:
        extra = hook.extra_loss(state, batch)
        if extra is not None:
            loss = loss + extra
    if not bool(torch.isfinite(loss)):
        raise TrainingError(f"step {state.step + 1}: the loss is {float(loss.detach())}")
    return loss


@contextmanager
def _seeded_and_deterministic(seed: int) -> Iterator[None]:
    """Seed torch and ask for deterministic kernels (warn where none exists), then restore."""
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        torch.use_deterministic_algorithms(True, warn_only=True)
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(enabled, warn_only=warn_only)
