"""Loss functions over collated batches: causal-LM loss on labelled tokens, classification
cross-entropy, and per-sequence log-probabilities of the labelled tokens (DPO, evaluation).

Every function is vmap-safe (no data-dependent branches), so `fisher_diagonal` can use them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F  # noqa: N812 (the conventional name)
from torch import Tensor, nn

from learner.batches import IGNORE
from learner.ewc import Batch, LossFn

if TYPE_CHECKING:
    from schemas.tasks import TaskConfig


def _model_inputs(batch: Batch, prefix: str = "") -> dict[str, Tensor]:
    """input_ids and, when present, attention_mask (absent for vmap-traced Fisher batches)."""
    inputs = {"input_ids": batch[f"{prefix}input_ids"]}
    if f"{prefix}attention_mask" in batch:
        inputs["attention_mask"] = batch[f"{prefix}attention_mask"]
    return inputs


def token_logprobs(model: nn.Module, batch: Batch, prefix: str = "") -> tuple[Tensor, Tensor]:
    """Per sequence: the sum of log p(token) over labelled tokens [B] and their count [B]."""
    logits = model(**_model_inputs(batch, prefix)).logits[:, :-1].float()  # [B, T-1, V]
    targets = batch[f"{prefix}labels"][:, 1:]  # [B, T-1]
    mask = targets != IGNORE  # [B, T-1]
    picked = torch.log_softmax(logits, dim=-1).gather(
        -1, targets.clamp(min=0).unsqueeze(-1)
    )  # [B, T-1, 1]
    logp = picked.squeeze(-1) * mask  # [B, T-1]
    return logp.sum(-1), mask.sum(-1)


def causal_lm_loss(model: nn.Module, batch: Batch) -> Tensor:
    """Mean negative log-likelihood over every labelled token of the batch, a scalar []."""
    logits = model(**_model_inputs(batch)).logits[:, :-1].float()  # [B, T-1, V]
    targets = batch["labels"][:, 1:]  # [B, T-1]
    nll = F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]),
        targets.reshape(-1),
        ignore_index=IGNORE,
        reduction="sum",
    )
    return nll / (targets != IGNORE).sum().clamp(min=1)


def classification_loss(model: nn.Module, batch: Batch) -> Tensor:
    """Cross-entropy of the class logits [B, C] against class indices [B], a scalar []."""
    logits = model(**_model_inputs(batch)).logits.float()  # [B, C]
    return F.cross_entropy(logits, batch["labels"])


def loss_fn_for(task: TaskConfig) -> LossFn:
    return classification_loss if task.kind == "classification" else causal_lm_loss
