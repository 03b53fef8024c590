"""EWC maths on hand-built models with known answers, and vmap checked against a plain loop."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
import torch
from peft import LoraConfig, get_peft_model
from torch import Tensor, nn

from learner.errors import EwcStateError, FisherError
from learner.ewc import (
    Batch,
    LossFn,
    anchor_from,
    ewc_penalty,
    fisher_diagonal,
    load_ewc_state,
    online_fisher,
    save_ewc_state,
    trainable_parameters,
)
from lorafeed.models import lora_target_modules
from lorafeed.tiny_models import Arch, tiny_causal_lm

TEXTS = [
    "The customer ordered three blue widgets.",
    "Refunds are issued within five business days after the item arrives.",
    "Paris.",
    "Please confirm the delivery address before we dispatch the replacement part.",
    "The warehouse in Lyon restocks printer cartridges every Monday morning.",
    "What is the capital of France?",
]


def reference_fisher(
    model: nn.Module, batch: Batch, loss_fn: LossFn, names: list[str], count: int
) -> dict[str, Tensor]:
    """The definition, written out: mean over samples of squared per-sample gradients."""
    params = dict(model.named_parameters())
    total = {name: torch.zeros_like(params[name]) for name in names}
    for index in range(count):
        model.zero_grad(set_to_none=True)
        sample = {key: value[index : index + 1] for key, value in batch.items()}
        torch.autograd.backward(loss_fn(model, sample))
        for name in names:
            gradient = params[name].grad
            if gradient is not None:
                total[name] += gradient.pow(2)
    model.zero_grad(set_to_none=True)
    return {name: value / count for name, value in total.items()}


def assert_close(left: Mapping[str, Tensor], right: Mapping[str, Tensor]) -> None:
    assert set(left) == set(right)
    for name in left:
        torch.testing.assert_close(left[name], right[name], atol=1e-5, rtol=1e-5, msg=name)


def split(batch: Batch, size: int) -> list[Batch]:
    total = next(iter(batch.values())).shape[0]
    return [{k: v[i : i + size] for k, v in batch.items()} for i in range(0, total, size)]


def half_squared_error(model: nn.Module, batch: Batch) -> Tensor:
    prediction: Tensor = model(batch["x"]).squeeze(-1)  # [B]
    return (0.5 * (prediction - batch["y"]).pow(2)).mean()


def test_linear_model_has_the_hand_computed_fisher() -> None:
    model = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 2.0]]))
    batch = {"x": torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]), "y": torch.zeros(3)}
    # per-sample gradients (w.x - y) * x: [1, 0], [0, 2], [3, 3]; squared mean below
    expected = torch.tensor([[10.0 / 3.0, 13.0 / 3.0]])
    for strategy in ("vmap", "loop"):
        fisher, used = fisher_diagonal(
            model, [batch], half_squared_error, trainable_parameters(model), 10, strategy=strategy
        )
        assert used == 3
        torch.testing.assert_close(fisher["weight"], expected)


def test_mlp_vmap_and_loop_match_the_definition_over_a_bounded_sample() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3))
    batch = {"x": torch.randn(12, 5), "y": torch.randint(0, 3, (12,))}

    def cross_entropy(module: nn.Module, data: Batch) -> Tensor:
        return nn.functional.cross_entropy(module(data["x"]), data["y"])

    params = trainable_parameters(model)
    expected = reference_fisher(model, batch, cross_entropy, list(params), 10)
    for strategy in ("vmap", "loop", "auto"):
        fisher, used = fisher_diagonal(
            model, split(batch, 4), cross_entropy, params, 10, strategy=strategy
        )
        assert used == 10  # 4 + 4 + the first 2 of the last batch
        assert_close(fisher, expected)
    assert all(param.grad is None for param in model.parameters())


def test_fisher_stops_pulling_batches_once_it_has_enough_samples() -> None:
    model = nn.Linear(2, 1)
    pulled: list[int] = []

    def batches() -> Iterator[Batch]:
        for index in range(10):
            pulled.append(index)
            size = 0 if index == 0 else 3  # an empty batch is skipped
            yield {"x": torch.ones(size, 2), "y": torch.zeros(size)}

    params = trainable_parameters(model)
    _, used = fisher_diagonal(model, batches(), half_squared_error, params, 6)
    assert (used, pulled) == (6, [0, 1, 2])


def lora_model(arch: Arch = "llama") -> tuple[nn.Module, Batch]:
    model, tokenizer = tiny_causal_lm(arch, seed=0)
    torch.manual_seed(0)
    config = LoraConfig(
        r=4, target_modules=lora_target_modules(model), lora_dropout=0.1, init_lora_weights=False
    )
    peft_model = get_peft_model(model, config)  # random A and B: every LoRA gradient is nonzero
    encoded = tokenizer(TEXTS, return_tensors="pt", padding=True)
    mask = encoded["attention_mask"]
    batch = {
        "input_ids": encoded["input_ids"],
        "attention_mask": mask,
        "labels": encoded["input_ids"].masked_fill(mask == 0, -100),
    }
    return peft_model, batch


def lm_loss(model: nn.Module, batch: Batch) -> Tensor:
    loss: Tensor = model(**batch).loss
    return loss


def lm_loss_without_mask(model: nn.Module, batch: Batch) -> Tensor:
    # Right padding + causal attention: real tokens never see pads, so the mask is redundant,
    # and without it transformers' sdpa path has no data-dependent branch, so vmap can trace it.
    loss: Tensor = model(input_ids=batch["input_ids"], labels=batch["labels"]).loss
    return loss


@pytest.mark.filterwarnings("ignore:There is a performance drop")
@pytest.mark.parametrize("arch", ["llama", "deepseek_v3"])
def test_tiny_lora_model_vmap_matches_a_per_sample_loop(arch: Arch) -> None:
    model, batch = lora_model(arch)
    params = trainable_parameters(model)
    assert params and all("lora_" in name for name in params)
    model.eval()
    expected = reference_fisher(model, batch, lm_loss, list(params), len(TEXTS))
    model.train()
    fisher, used = fisher_diagonal(
        model, split(batch, 4), lm_loss_without_mask, params, 100, strategy="vmap"
    )
    assert used == len(TEXTS)
    assert_close(fisher, expected)
    assert all(bool((value > 0).any()) for value in fisher.values())
    assert model.training  # eval mode (no dropout) only while estimating


def test_auto_falls_back_to_the_loop_when_vmap_cannot_trace_the_model() -> None:
    model, batch = lora_model()
    params = trainable_parameters(model)
    with pytest.raises(FisherError, match="vmap cannot compute"):
        fisher_diagonal(model, [batch], lm_loss, params, 100, strategy="vmap")
    fisher, used = fisher_diagonal(model, split(batch, 4), lm_loss, params, 5)
    model.eval()
    assert_close(fisher, reference_fisher(model, batch, lm_loss, list(params), 5))
    assert used == 5


def test_fisher_rejects_bad_arguments_with_the_values() -> None:
    model = nn.Linear(2, 1)
    params = trainable_parameters(model)
    batch = {"x": torch.ones(2, 2), "y": torch.zeros(2)}
    with pytest.raises(FisherError, match="max_samples must be >= 1, got 0"):
        fisher_diagonal(model, [batch], half_squared_error, params, 0)
    with pytest.raises(FisherError, match="no samples"):
        fisher_diagonal(model, [], half_squared_error, params, 4)
    with pytest.raises(FisherError, match="'weight' is not a parameter"):
        fisher_diagonal(
            model, [batch], half_squared_error, {"weight": nn.Parameter(torch.ones(1))}, 4
        )
    ragged = {"x": torch.ones(2, 2), "y": torch.zeros(3)}
    with pytest.raises(FisherError, match="'x': 2, 'y': 3"):
        fisher_diagonal(model, [ragged], half_squared_error, params, 4)


def test_online_fisher_is_a_decayed_sum() -> None:
    previous = {"a": torch.tensor([1.0, 2.0])}
    new = {"a": torch.tensor([3.0, 4.0])}
    torch.testing.assert_close(online_fisher(previous, new, 0.5)["a"], torch.tensor([3.5, 5.0]))
    torch.testing.assert_close(online_fisher(None, new, 0.5)["a"], new["a"])
    torch.testing.assert_close(online_fisher(previous, new, 0.0)["a"], new["a"])
    with pytest.raises(EwcStateError, match=r"only in new Fisher \['b'\]"):
        online_fisher(previous, {"b": torch.ones(2)}, 0.5)
    with pytest.raises(EwcStateError, match="decay must be in \\[0, 1\\], got 1.5"):
        online_fisher(previous, new, 1.5)


def test_penalty_is_zero_at_the_anchor_and_quadratic_in_the_shift() -> None:
    anchor = {"w": torch.tensor([1.0, -1.0, 0.5])}
    fisher = {"w": torch.tensor([1.0, 2.0, 3.0])}
    shift = torch.tensor([0.5, 1.0, -2.0])
    assert ewc_penalty(anchor, anchor, fisher, 4.0).item() == 0.0
    theta = (anchor["w"] + shift).requires_grad_()
    penalty = ewc_penalty({"w": theta}, anchor, fisher, 4.0)
    assert penalty.item() == pytest.approx(28.5)  # 4 / 2 * (1 * 0.25 + 2 * 1 + 3 * 4)
    doubled = ewc_penalty({"w": anchor["w"] + 2 * shift}, anchor, fisher, 4.0)
    assert doubled.item() == pytest.approx(4 * 28.5)
    torch.autograd.backward(penalty)
    assert theta.grad is not None
    torch.testing.assert_close(theta.grad, 4.0 * fisher["w"] * shift)  # lambda * F * shift
    with pytest.raises(EwcStateError, match=r"\['w'\] have a Fisher entry but are not trained"):
        ewc_penalty({}, anchor, fisher, 1.0)


def test_ewc_state_round_trips_with_deterministic_bytes(tmp_path: Path) -> None:
    fisher = {"b.lora_A": torch.rand(2, 3), "a.lora_B": torch.rand(3, 2)}
    params = {
        "a.lora_B": nn.Parameter(torch.rand(3, 2)),
        "b.lora_A": nn.Parameter(torch.rand(2, 3)),
    }
    anchor = anchor_from(params)
    save_ewc_state(tmp_path / "one.safetensors", fisher, anchor)
    reordered = {name: fisher[name] for name in reversed(list(fisher))}
    save_ewc_state(tmp_path / "two.safetensors", reordered, anchor)
    assert (tmp_path / "one.safetensors").read_bytes() == (
        tmp_path / "two.safetensors"
    ).read_bytes()
    loaded_fisher, loaded_anchor = load_ewc_state(tmp_path / "one.safetensors")
    assert_close(loaded_fisher, fisher)
    assert_close(loaded_anchor, anchor)
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "one.safetensors",
        "two.safetensors",
    ]


def test_unreadable_or_foreign_ewc_state_is_refused(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a safetensors file")
    with pytest.raises(EwcStateError, match="cannot read EWC state"):
        load_ewc_state(garbage)
    from safetensors.torch import save_file

    foreign = tmp_path / "adapter.safetensors"
    save_file({"x": torch.ones(1)}, str(foreign))
    with pytest.raises(EwcStateError, match="has format None, expected 'lorafeed-ewc-1'"):
        load_ewc_state(foreign)
    with pytest.raises(EwcStateError, match=r"shape \(2,\) in anchor, \(3,\) in Fisher"):
        save_ewc_state(tmp_path / "bad.safetensors", {"w": torch.ones(3)}, {"w": torch.ones(2)})


def lora_classifier() -> tuple[nn.Module, Batch]:
    from transformers import BertConfig, BertForSequenceClassification

    from lorafeed.tiny_models import tiny_tokenizer

    tokenizer = tiny_tokenizer()
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, num_labels=3, pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    lora = LoraConfig(
        r=4, target_modules=["query", "value", "dense"], modules_to_save=["classifier"],
        init_lora_weights=False,
    )  # fmt: skip
    model = get_peft_model(BertForSequenceClassification(config), lora)
    encoded = tokenizer(TEXTS, return_tensors="pt", padding=True)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    return model, {**encoded, "labels": labels}


def class_loss(model: nn.Module, batch: Batch) -> Tensor:
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    return nn.functional.cross_entropy(logits, batch["labels"])


def test_batched_linear_strategy_matches_the_loop_on_a_padded_masked_classifier() -> None:
    model, batch = lora_classifier()
    params = trainable_parameters(model)
    assert any("classifier" in name for name in params) and any("lora_A" in n for n in params)
    model.eval()
    expected = reference_fisher(model, batch, class_loss, list(params), len(TEXTS))
    fisher, used = fisher_diagonal(
        model, split(batch, 4), class_loss, params, 100, strategy="linear"
    )
    assert used == len(TEXTS)
    assert_close(fisher, expected)
    assert all(bool((value > 0).any()) for value in fisher.values())


def test_linear_strategy_refuses_parameters_outside_linear_layers() -> None:
    model, batch = lora_classifier()
    norm = next(m for m in model.modules() if isinstance(m, nn.LayerNorm))
    norm.weight.requires_grad_(True)
    params = trainable_parameters(model)
    with pytest.raises(FisherError, match=r"not parameters of nn.Linear layers: \[.*LayerNorm"):
        fisher_diagonal(model, [batch], class_loss, params, 100, strategy="linear")
