"""Per-sample squared gradients from one batched backward pass, for parameters of `nn.Linear`
layers (LoRA's A and B matrices and a classification head are all such layers).

A linear layer's weight gradient is a sum over samples (and positions) of outer products of the
gradient at its output and its input. Hooks keep both per call, so each sample's gradient is
rebuilt exactly from one ordinary forward/backward of the whole padded batch: no vmap (which
cannot trace the mask handling of attention implementations) and no per-sample loop.

The loss must be the mean over the batch of independent per-sample losses (cross-entropy over
classes is); the backward pass runs on `loss * batch size`, their sum.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from learner.errors import FisherError

Batch = Mapping[str, Tensor]
LossFn = Callable[[nn.Module, Batch], Tensor]


def linear_owners(
    model: nn.Module, params: Mapping[str, nn.Parameter]
) -> dict[str, tuple[nn.Linear, str]]:
    """For each parameter, the linear layer holding it and which of its tensors it is."""
    by_id = {id(param): name for name, param in params.items()}
    owners: dict[str, tuple[nn.Linear, str]] = {}
    for module in model.modules():
        if not isinstance(module, nn.Linear):
            continue
        for field in ("weight", "bias"):
            tensor = getattr(module, field)
            if tensor is not None and id(tensor) in by_id:
                owners[by_id[id(tensor)]] = (module, field)
    missing = sorted(set(params) - set(owners))
    if missing:
        raise FisherError(f"not parameters of nn.Linear layers: {missing[:5]}")
    return owners


def linear_squared_grads(
    model: nn.Module, batch: Batch, loss_fn: LossFn, params: Mapping[str, nn.Parameter]
) -> dict[str, Tensor]:
    """Sum over the batch of squared per-sample gradients of `params`; `.grad` is untouched."""
    owners = linear_owners(model, params)
    size = int(next(iter(batch.values())).shape[0])
    per_sample: dict[str, Tensor] = {}
    tensors = [params[name] for name in params]
    with _capture(owners, per_sample, size):
        loss = loss_fn(model, batch) * size  # the sum of the per-sample losses
        torch.autograd.grad(loss, tensors, allow_unused=True)  # runs the tensor hooks
    return {
        name: per_sample[name].pow(2).sum(0)
        if name in per_sample
        else torch.zeros_like(params[name], dtype=torch.float32)
        for name in params
    }


@contextmanager
def _capture(
    owners: Mapping[str, tuple[nn.Linear, str]], per_sample: dict[str, Tensor], size: int
) -> Iterator[None]:
    fields: dict[nn.Linear, dict[str, str]] = {}
    for name, (module, field) in owners.items():
        fields.setdefault(module, {})[field] = name

    def forward_hook(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        if not output.requires_grad:
            return
        features = inputs[0].detach()
        names = fields[module]  # type: ignore[index]

        def on_grad(grad_out: Tensor) -> None:
            _add(per_sample, names, features.float(), grad_out.float(), size)

        output.register_hook(on_grad)  # type: ignore[no-untyped-call]

    handles = [module.register_forward_hook(forward_hook) for module in fields]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _add(
    per_sample: dict[str, Tensor],
    names: Mapping[str, str],
    features: Tensor,
    grad_out: Tensor,
    size: int,
) -> None:
    """Add one call's per-sample gradients: inputs [B, ..., in], output grads [B, ..., out]."""
    if features.shape[0] != size:
        raise FisherError(f"a linear layer saw {features.shape[0]} rows for a batch of {size}")
    x = features.reshape(size, -1, features.shape[-1])  # [B, T, in]
    g = grad_out.reshape(size, -1, grad_out.shape[-1])  # [B, T, out]
    parts = {"weight": torch.einsum("bto,bti->boi", g, x), "bias": g.sum(1)}
    for field, name in names.items():
        part = parts[field]
        per_sample[name] = per_sample[name] + part if name in per_sample else part
