"""The training loop runs its hooks in order, is deterministic for a seed, and EWC holds LoRA."""

from __future__ import annotations

import pytest
import safetensors.torch
import torch
from peft import LoraConfig, PeftModel, get_peft_model, get_peft_model_state_dict
from torch import Tensor, nn

from learner.errors import TrainingError
from learner.ewc import Batch, anchor_from, trainable_parameters
from learner.hooks import BaseHook, EwcHook, TrainState
from learner.training import train_steps
from lorafeed.models import lora_target_modules
from lorafeed.tiny_models import tiny_causal_lm

TEXTS = [
    "The customer ordered three blue widgets.",
    "Refunds are issued within five business days.",
    "What is the capital of France? The capital of France is Paris.",
    "Please confirm the delivery address before we dispatch the part.",
]
STEPS = 12


def lora_llama() -> tuple[PeftModel, list[Batch]]:
    model, tokenizer = tiny_causal_lm("llama", seed=0)
    with torch.random.fork_rng():
        torch.manual_seed(1)  # LoRA A is drawn from the global RNG
        config = LoraConfig(r=4, target_modules=lora_target_modules(model), lora_dropout=0.1)
        peft_model = get_peft_model(model, config)
    encoded = tokenizer(TEXTS, return_tensors="pt", padding=True)
    mask = encoded["attention_mask"]
    labels = encoded["input_ids"].masked_fill(mask == 0, -100)
    batches: list[Batch] = [
        {"input_ids": encoded["input_ids"][i : i + 2], "attention_mask": mask[i : i + 2]}
        | {"labels": labels[i : i + 2]}
        for i in (0, 2)
    ]
    return peft_model, batches * (STEPS // 2)


def lm_loss(model: nn.Module, batch: Batch) -> Tensor:
    loss: Tensor = model(**batch).loss
    return loss


def train_lora(lam: float | None, seed: int = 0) -> tuple[PeftModel, dict[str, Tensor]]:
    model, batches = lora_llama()
    params = trainable_parameters(model)
    anchor = anchor_from(params)
    fisher = {name: torch.ones_like(param) for name, param in params.items()}
    hooks = [] if lam is None else [EwcHook(anchor, fisher, lam)]
    optimizer = torch.optim.AdamW(params.values(), lr=1e-3)
    result = train_steps(model, batches, optimizer, lm_loss, hooks, STEPS, seed)
    assert result.steps == STEPS
    return model, anchor


def max_shift(model: PeftModel, anchor: dict[str, Tensor]) -> float:
    params = trainable_parameters(model)
    return max(float((params[name].detach() - anchor[name]).abs().max()) for name in anchor)


def test_ewc_with_a_huge_lambda_holds_lora_at_the_anchor() -> None:
    held, anchor = train_lora(lam=1e6)
    # Adam's step is ~lr whatever the gradient's scale, so the hold is to within ~lr, not exact.
    assert max_shift(held, anchor) < 1e-3
    free, free_anchor = train_lora(lam=0.0)
    assert max_shift(free, free_anchor) > 1e-2


def lora_bytes(model: PeftModel) -> bytes:
    state = get_peft_model_state_dict(model)
    return safetensors.torch.save({name: state[name].contiguous() for name in sorted(state)})


def test_same_seed_gives_byte_identical_lora_weights() -> None:
    first = lora_bytes(train_lora(lam=10.0, seed=3)[0])
    assert first == lora_bytes(train_lora(lam=10.0, seed=3)[0])
    assert first != lora_bytes(train_lora(lam=10.0, seed=4)[0])  # the seed drives dropout


class Recorder(BaseHook):
    def __init__(self) -> None:
        self.calls: list[str] = []

    def on_start(self, state: TrainState) -> None:
        self.calls.append(f"start@{state.step}")

    def extra_loss(self, state: TrainState, batch: Batch) -> Tensor | None:
        self.calls.append(f"extra@{state.step}")
        return torch.tensor(1.0)

    def on_step_end(self, state: TrainState) -> None:
        self.calls.append(f"end@{state.step}")

    def on_end(self, state: TrainState) -> None:
        self.calls.append(f"finish@{state.step}")


def squared_error(model: nn.Module, batch: Batch) -> Tensor:
    prediction: Tensor = model(batch["x"])  # [B, 1]
    return (prediction - batch["y"]).pow(2).mean()


def test_hooks_run_in_order_and_extra_losses_are_added() -> None:
    model = nn.Linear(1, 1)
    batch = {"x": torch.ones(2, 1), "y": torch.zeros(2, 1)}
    recorder = Recorder()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    result = train_steps(model, [batch] * 5, optimizer, squared_error, [recorder], 2, seed=0)
    assert recorder.calls == ["start@0", "extra@0", "end@1", "extra@1", "end@2", "finish@2"]
    with torch.no_grad():
        task_loss = float(squared_error(model, batch))
    assert result.losses == pytest.approx((task_loss + 1.0, task_loss + 1.0))
    short = train_steps(model, [batch], optimizer, squared_error, [], 10, seed=0)
    assert short.steps == 1  # the batches ran out first


def test_loop_restores_the_callers_rng_and_determinism_setting() -> None:
    model = nn.Linear(1, 1).eval()
    batch = {"x": torch.ones(2, 1), "y": torch.zeros(2, 1)}
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    train_steps(model, [batch], optimizer, squared_error, [], 1, seed=0)
    torch.testing.assert_close(torch.rand(3), expected)
    assert not torch.are_deterministic_algorithms_enabled()
    assert not model.training


def test_bad_step_counts_and_non_finite_losses_stop_training() -> None:
    model = nn.Linear(1, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(TrainingError, match="max_steps must be >= 1, got 0"):
        train_steps(model, [], optimizer, squared_error, [], 0, seed=0)
    poisoned = {"x": torch.ones(1, 1), "y": torch.tensor([[float("nan")]])}
    with pytest.raises(TrainingError, match="step 1: the loss is nan"):
        train_steps(model, [poisoned], optimizer, squared_error, [], 1, seed=0)
