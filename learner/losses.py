"""Loss functions over collated batches: causal-LM loss on labelled tokens, classification
cross-entropy, and per-sequence log-probabilities of the labelled tokens (DPO, evaluation).

`causal_lm_loss` and `classification_loss` are vmap-safe (no data-dependent shapes), so
`fisher_diagonal` can use them. Training and evaluation use the labelled-columns forms instead:
a causal LM's vocabulary projection (the lm_head, ~20 % of a small model's compute, and a
[B, T, V] log-softmax) runs only at the positions where some sequence of the batch has a
labelled next token, skipping the prompt and padding columns, through the model's own
`logits_to_keep` (so architecture-specific logit scaling still applies).
"""

from __future__ import annotations

import inspect
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
    logits, targets = _labelled_logits(model, batch, prefix)  # [B, K, V], [B, K]
    mask = targets != IGNORE  # [B, K]
    picked = torch.log_softmax(logits, dim=-1).gather(
        -1, targets.clamp(min=0).unsqueeze(-1)
    )  # [B, K, 1]
    logp = picked.squeeze(-1) * mask  # [B, K]
    return logp.sum(-1), mask.sum(-1)


def causal_lm_loss(model: nn.Module, batch: Batch) -> Tensor:
    """Mean negative log-likelihood over every labelled token of the batch, a scalar [].
    vmap-safe: logits at every position."""
    logits = model(**_model_inputs(batch)).logits[:, :-1].float()  # [B, T-1, V]
    return _mean_nll(logits, batch["labels"][:, 1:])


def labelled_causal_lm_loss(model: nn.Module, batch: Batch) -> Tensor:
    """`causal_lm_loss` with logits only at the labelled columns (equal up to float rounding);
    the kept columns depend on the labels, so not for vmap."""
    logits, targets = _labelled_logits(model, batch)  # [B, K, V], [B, K]
    return _mean_nll(logits, targets)


def _mean_nll(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean NLL of `targets` [B, K] (IGNORE skipped) under `logits` [B, K, V], a scalar []."""
    nll = F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]),
        targets.reshape(-1),
        ignore_index=IGNORE,
        reduction="sum",
    )
    return nll / (targets != IGNORE).sum().clamp(min=1)


def _labelled_logits(model: nn.Module, batch: Batch, prefix: str = "") -> tuple[Tensor, Tensor]:
    """Next-token logits [B, K, V] and targets [B, K] at the K positions where some sequence has
    a labelled next token (all T-1 positions for a model without `logits_to_keep`)."""
    targets = batch[f"{prefix}labels"][:, 1:]  # [B, T-1]
    inputs = _model_inputs(batch, prefix)
    if not _keeps_logits(_unwrapped(model)):
        return model(**inputs).logits[:, :-1].float(), targets
    keep = (targets != IGNORE).any(0).nonzero().flatten()  # [K]
    if keep.numel() == 0:
        keep = keep.new_zeros(1)  # nothing labelled: one column, every target IGNORE
    logits = model(**inputs, logits_to_keep=keep).logits.float()  # [B, K, V]
    return logits, targets[:, keep]


def _unwrapped(model: nn.Module) -> nn.Module:
    """The transformers model under a peft wrapper (which passes extra keywords through)."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def _keeps_logits(model: nn.Module) -> bool:
    return "logits_to_keep" in inspect.signature(model.forward).parameters  # ~20 us a call


def classification_loss(model: nn.Module, batch: Batch) -> Tensor:
    """Cross-entropy of the class logits [B, C] against class indices [B], a scalar []."""
    logits = model(**_model_inputs(batch)).logits.float()  # [B, C]
    return F.cross_entropy(logits, batch["labels"])


def loss_fn_for(task: TaskConfig) -> LossFn:
    """The vmap-safe loss of `task` (the Fisher estimate)."""
    return classification_loss if task.kind == "classification" else causal_lm_loss


def train_loss_fn_for(task: TaskConfig) -> LossFn:
    """The loss `task` trains on: the same objective, with logits only where labels are."""
    return classification_loss if task.kind == "classification" else labelled_causal_lm_loss
