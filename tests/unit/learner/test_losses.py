"""The labelled-columns losses give the full-logits values and gradients while projecting onto the
vocabulary only where some sequence has a labelled next token."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import Tensor, nn

from learner.batches import IGNORE, Encoded, collate
from learner.losses import (
    causal_lm_loss,
    labelled_causal_lm_loss,
    token_logprobs,
    train_loss_fn_for,
)
from lorafeed.task_models import new_adapter
from lorafeed.tiny_models import Arch, tiny_causal_lm
from schemas.tasks import TaskConfig

TASK = TaskConfig.model_validate(
    {"name": "chat", "kind": "generation", "base_model": "tiny", "lora": {"r": 4}}
)


def _batch(vocab: int) -> dict[str, Tensor]:
    """Three right-padded sequences whose prompts (IGNORE labels) differ in length: the first
    two columns carry no label in any sequence, the last columns only in the longest."""
    rng = torch.Generator().manual_seed(7)
    shapes = [(5, 4), (3, 2), (4, 9)]  # (prompt tokens, answer tokens)
    items = []
    for prompt, answer in shapes:
        ids = torch.randint(3, vocab, (prompt + answer,), generator=rng).tolist()
        items.append(Encoded(tuple(ids), (IGNORE,) * prompt + tuple(ids[prompt:])))
    return dict(collate(items, pad_id=0))


def _full_logprobs(model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    targets = batch["labels"][:, 1:]
    mask = targets != IGNORE
    logp = (
        torch.log_softmax(logits[:, :-1].float(), -1)
        .gather(-1, targets.clamp(min=0).unsqueeze(-1))
        .squeeze(-1)
    )
    return (logp * mask).sum(-1), mask.sum(-1)


def _grads(model: nn.Module, loss: Tensor) -> list[Tensor]:
    params = [p for p in model.parameters() if p.requires_grad]
    return list(torch.autograd.grad(loss, params))


@pytest.mark.parametrize("arch", ["llama", "qwen2", "deepseek_v3"])
def test_labelled_loss_equals_the_full_loss_with_equal_gradients(arch: Arch) -> None:
    base, _tokenizer = tiny_causal_lm(arch, seed=0)
    model = new_adapter(TASK, base, seed=0).eval()  # no dropout: both passes see one function
    batch = _batch(base.config.vocab_size)
    full, labelled = causal_lm_loss(model, batch), labelled_causal_lm_loss(model, batch)
    assert float(labelled.detach()) == pytest.approx(float(full.detach()), rel=1e-5)
    for a, b in zip(_grads(model, full), _grads(model, labelled), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    sums, counts = token_logprobs(model, batch)
    want_sums, want_counts = _full_logprobs(model, batch)
    torch.testing.assert_close(sums, want_sums, rtol=1e-5, atol=1e-5)
    assert counts.tolist() == want_counts.tolist() == [4, 2, 9]


def test_the_vocabulary_projection_sees_only_labelled_columns() -> None:
    base, _tokenizer = tiny_causal_lm("llama", seed=0)
    batch = _batch(base.config.vocab_size)  # width 13; labelled next tokens at columns 2-11
    widths: list[int] = []
    base.lm_head.register_forward_hook(lambda _m, args, _out: widths.append(args[0].shape[1]))
    causal_lm_loss(base, batch)
    labelled_causal_lm_loss(base, batch)
    assert widths == [13, 10]


def test_nothing_labelled_is_a_zero_loss() -> None:
    base, _tokenizer = tiny_causal_lm("llama", seed=0)
    batch = _batch(base.config.vocab_size)
    batch["labels"] = torch.full_like(batch["labels"], IGNORE)
    with torch.no_grad():
        assert (
            float(labelled_causal_lm_loss(base, batch)) == 0.0 == float(causal_lm_loss(base, batch))
        )


class _NoKeep(nn.Module):
    """A causal LM whose forward has no `logits_to_keep`: the losses fall back to every column."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Any:
        return self.inner(input_ids=input_ids, attention_mask=attention_mask)


def test_a_model_without_logits_to_keep_gets_every_column() -> None:
    base, _tokenizer = tiny_causal_lm("qwen2", seed=0)
    batch = _batch(base.config.vocab_size)
    plain = _NoKeep(base)
    with torch.no_grad():
        assert float(labelled_causal_lm_loss(plain, batch)) == pytest.approx(
            float(causal_lm_loss(base, batch)), rel=1e-6
        )


def test_training_uses_the_labelled_loss_and_the_fisher_the_vmap_safe_one() -> None:
    from learner.losses import loss_fn_for

    assert train_loss_fn_for(TASK) is labelled_causal_lm_loss
    assert loss_fn_for(TASK) is causal_lm_loss
