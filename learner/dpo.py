"""Direct Preference Optimization as a training hook: corrections teach the model to prefer the
corrected answer over the served one, relative to the weights the update started from.

`run_update` adds a `DpoHook` when `task.training.preference_loss == "dpo"` and the update has
preference examples; the reference log-probabilities are computed once, at `on_start`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F  # noqa: N812 (the conventional name)
from torch import Tensor

from learner.errors import TrainingError
from learner.ewc import Batch
from learner.hooks import BaseHook, TrainState
from learner.losses import token_logprobs


def dpo_loss(
    policy_chosen: Tensor,
    policy_rejected: Tensor,
    reference_chosen: Tensor,
    reference_rejected: Tensor,
    beta: float,
) -> Tensor:
    """Mean of -log sigmoid(beta * ((pi_c - ref_c) - (pi_r - ref_r))) over pairs [B], a scalar.

    Inputs are per-sequence summed log-probabilities of the answer tokens, each [B].
    """
    margin = (policy_chosen - reference_chosen) - (policy_rejected - reference_rejected)  # [B]
    return -F.logsigmoid(beta * margin).mean()


class DpoHook(BaseHook):
    """Adds `weight * dpo_loss` on one batch of preference pairs per step (cycling the batches).

    `pair_batches` come from `learner.batches.collate_pairs`. The reference is the model as it
    is at `on_start` (the champion, or the base with a fresh zero-effect adapter), evaluated
    without dropout and without gradients. `losses` records the weighted term of each step.
    """

    def __init__(self, pair_batches: Sequence[Batch], beta: float, weight: float) -> None:
        if not pair_batches:
            raise TrainingError("DpoHook needs at least one batch of preference pairs")
        if beta <= 0.0 or weight < 0.0:
            raise TrainingError(f"DPO needs beta > 0 and weight >= 0, got {beta} and {weight}")
        self.pair_batches = list(pair_batches)
        self.beta = beta
        self.weight = weight
        self.losses: list[float] = []
        self._reference: list[tuple[Tensor, Tensor]] = []

    def on_start(self, state: TrainState) -> None:
        model = state.model
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                self._reference = [
                    (
                        token_logprobs(model, batch, "chosen_")[0],
                        token_logprobs(model, batch, "rejected_")[0],
                    )
                    for batch in self.pair_batches
                ]  # each [B]
        finally:
            model.train(was_training)

    def extra_loss(self, state: TrainState, batch: Batch) -> Tensor | None:
        if not self._reference:
            raise TrainingError("DpoHook.extra_loss called before on_start")
        index = state.step % len(self.pair_batches)
        pairs = self.pair_batches[index]
        reference_chosen, reference_rejected = self._reference[index]
        chosen, _ = token_logprobs(state.model, pairs, "chosen_")  # [B]
        rejected, _ = token_logprobs(state.model, pairs, "rejected_")  # [B]
        loss = self.weight * dpo_loss(
            chosen, rejected, reference_chosen, reference_rejected, self.beta
        )
        self.losses.append(float(loss.detach()))
        return loss
