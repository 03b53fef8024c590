"""DPO: the known loss at the reference, and training on pairs moves the policy towards the
chosen answers (the hook's term falls)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from learner.batches import collate_pairs, encode_pair, pad_id_of
from learner.dpo import DpoHook, dpo_loss
from learner.errors import TrainingError
from learner.ewc import Batch
from learner.examples import Example
from learner.training import train_steps
from lorafeed.task_models import new_adapter
from lorafeed.tiny_models import tiny_causal_lm
from schemas.tasks import LoraSettings, TaskConfig

TASK = TaskConfig(
    name="faq",
    kind="generation",
    base_model="tiny-llama",
    lora=LoraSettings(r=4, alpha=8, dropout=0.0),
    training={"preference_loss": "dpo"},
)


def no_task_loss(model: nn.Module, batch: Batch) -> Tensor:
    return torch.zeros(())


def pair(n: int) -> Example:
    return Example(
        f"p{n}", "faq", "preference", prompt=(("user", f"When does order {n} ship?"),),
        text="It ships on Monday.", rejected="Refunds are issued within five days.",
    )  # fmt: skip


def test_dpo_loss_known_values() -> None:
    zero = torch.zeros(3)
    assert float(dpo_loss(zero, zero, zero, zero, beta=0.1)) == pytest.approx(math.log(2))
    chosen_up = torch.tensor([10.0])
    expected = -math.log(1 / (1 + math.exp(-0.5 * 10.0)))  # -log sigmoid(beta * margin)
    loss = dpo_loss(chosen_up, torch.zeros(1), torch.zeros(1), torch.zeros(1), beta=0.5)
    assert float(loss) == pytest.approx(expected)


def test_the_hook_starts_at_log2_and_learns_the_preference() -> None:
    base, tokenizer = tiny_causal_lm("llama", seed=0)
    model = new_adapter(TASK, base, seed=0)
    pairs = [encode_pair(tokenizer, pair(n), 64) for n in range(4)]
    batches = [collate_pairs(pairs[:2], pad_id_of(tokenizer)), collate_pairs(pairs[2:], 0)]
    hook = DpoHook(batches, beta=0.5, weight=2.0)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=2e-2)
    result = train_steps(model, [{}] * 8, optimizer, no_task_loss, [hook], 8, seed=0)
    assert hook.losses[0] == pytest.approx(2.0 * math.log(2), abs=1e-5)
    assert result.losses == pytest.approx(hook.losses)
    assert hook.losses[-1] < hook.losses[0] - 0.1


def test_bad_settings_are_refused() -> None:
    with pytest.raises(TrainingError, match="at least one batch"):
        DpoHook([], beta=0.1, weight=1.0)
    with pytest.raises(TrainingError, match="beta > 0 and weight >= 0, got 0.0 and 1.0"):
        DpoHook([{}], beta=0.0, weight=1.0)
