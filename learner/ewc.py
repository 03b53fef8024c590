"""EWC maths: the diagonal Fisher, its online (decayed) sum, the quadratic penalty, and storage.

Pure functions over `name -> tensor` mappings keyed by `model.named_parameters()` names (the
trainable LoRA and head parameters). The training loop calls `ewc_penalty` through `EwcHook`;
the learner calls `fisher_diagonal` after an update and stores Fisher + anchor beside the adapter.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Final, Literal

import safetensors
import safetensors.torch
import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from learner.errors import EwcStateError, FisherError
from learner.fisher_linear import linear_squared_grads

Batch = Mapping[str, Tensor]
"""Model inputs; every tensor has the same leading batch dimension [B, ...]."""

LossFn = Callable[[nn.Module, Batch], Tensor]
"""The mean loss of a batch, a scalar []; called with batches of one sample for the Fisher."""

FisherStrategy = Literal["auto", "vmap", "loop", "linear"]

EWC_FORMAT: Final = "lorafeed-ewc-1"
_FISHER_PREFIX: Final = "fisher/"
_ANCHOR_PREFIX: Final = "anchor/"

_log = logging.getLogger(__name__)


def trainable_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """The parameters that train (LoRA and head), by their `named_parameters()` name."""
    return {name: param for name, param in model.named_parameters() if param.requires_grad}


def anchor_from(params: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Detached copies of `params`: the theta* that the penalty pulls towards."""
    return {name: param.detach().clone() for name, param in params.items()}


def fisher_diagonal(
    model: nn.Module,
    batches: Iterable[Batch],
    loss_fn: LossFn,
    params: Mapping[str, nn.Parameter],
    max_samples: int,
    *,
    strategy: FisherStrategy = "auto",
) -> tuple[dict[str, Tensor], int]:
    """The mean over samples of per-sample squared gradients of `params`, and the sample count.

    Reads batches until `max_samples` samples are used (a batch is cut to fit). The model runs
    in eval mode (no dropout) and is restored after; `.grad` fields are left untouched. "auto"
    uses `torch.func` (vmap over per-sample grads) and falls back to a per-sample loop for a
    model that vmap cannot trace (e.g. data-dependent control flow); "vmap" refuses to fall back;
    "linear" rebuilds per-sample grads of nn.Linear parameters from one batched backward
    (`learner.fisher_linear`: the loss must be a mean of per-sample losses, masks are fine).
    Result tensors are float32 with the shapes of `params`.
    """
    _check_fisher_args(model, params, max_samples)
    sums = {name: torch.zeros_like(param, dtype=torch.float32) for name, param in params.items()}
    used, use_vmap = 0, strategy != "loop"
    with _eval_mode(model):
        for batch in batches:
            if _batch_size(batch) == 0:
                continue
            part = _head(batch, max_samples - used)
            squared, use_vmap = _squared_grads(model, part, loss_fn, params, use_vmap, strategy)
            for name, value in squared.items():
                sums[name] += value
            used += _batch_size(part)
            if used >= max_samples:
                break  # before pulling another batch from the iterator
    if used == 0:
        raise FisherError("fisher_diagonal got no samples (every batch was empty)")
    fisher = {name: total / used for name, total in sums.items()}
    _check_finite(fisher)
    return fisher, used


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode (no dropout: vmap refuses randomness, and the Fisher should not be noisy)."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _check_fisher_args(
    model: nn.Module, params: Mapping[str, nn.Parameter], max_samples: int
) -> None:
    if max_samples < 1:
        raise FisherError(f"max_samples must be >= 1, got {max_samples}")
    if not params:
        raise FisherError("fisher_diagonal got no parameters")
    named = dict(model.named_parameters())
    for name, param in params.items():
        if named.get(name) is not param:
            raise FisherError(f"{name!r} is not a parameter of the model under that name")
        if not param.requires_grad:
            raise FisherError(f"parameter {name!r} does not require grad (not trainable)")


def _batch_size(batch: Batch) -> int:
    sizes = {name: int(value.shape[0]) for name, value in batch.items()}
    if not sizes or len(set(sizes.values())) != 1:
        raise FisherError(f"a batch needs tensors with one leading batch size, got {sizes}")
    return next(iter(sizes.values()))


def _head(batch: Batch, limit: int) -> Batch:
    """The first `limit` samples of `batch` (the batch itself if it is no larger)."""
    if _batch_size(batch) <= limit:
        return batch
    return {name: value[:limit] for name, value in batch.items()}  # [limit, ...]


def _squared_grads(
    model: nn.Module,
    batch: Batch,
    loss_fn: LossFn,
    params: Mapping[str, nn.Parameter],
    use_vmap: bool,
    strategy: FisherStrategy,
) -> tuple[dict[str, Tensor], bool]:
    """Sum over the batch of squared per-sample gradients, and whether vmap is still usable."""
    if strategy == "linear":
        return linear_squared_grads(model, batch, loss_fn, params), False
    if use_vmap:
        try:
            return _vmap_squared_grads(model, batch, loss_fn, params), True
        except (RuntimeError, NotImplementedError) as exc:
            if strategy == "vmap":
                raise FisherError(f"vmap cannot compute per-sample gradients: {exc}") from exc
            _log.info("fisher_diagonal falls back to a per-sample loop: %s", exc)
    return _loop_squared_grads(model, batch, loss_fn, params), False


class _LossModule(nn.Module):
    """Wraps `loss_fn(model, batch)` as a module so `functional_call` can swap the weights."""

    def __init__(self, model: nn.Module, loss_fn: LossFn) -> None:
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn

    def forward(self, batch: Batch) -> Tensor:
        return self.loss_fn(self.model, batch)


def _vmap_squared_grads(
    model: nn.Module, batch: Batch, loss_fn: LossFn, params: Mapping[str, nn.Parameter]
) -> dict[str, Tensor]:
    wrapper = _LossModule(model, loss_fn)
    weights = {f"model.{name}": param.detach() for name, param in params.items()}

    def sample_loss(weights: dict[str, Tensor], sample: dict[str, Tensor]) -> Tensor:
        one = {key: value.unsqueeze(0) for key, value in sample.items()}  # [1, ...]
        loss: Tensor = functional_call(wrapper, weights, (one,))  # []
        return loss

    per_sample = vmap(grad(sample_loss), in_dims=(None, 0))(weights, dict(batch))
    # per_sample[name]: [B, *param.shape]
    return {name: per_sample[f"model.{name}"].float().pow(2).sum(0) for name in params}


def _loop_squared_grads(
    model: nn.Module, batch: Batch, loss_fn: LossFn, params: Mapping[str, nn.Parameter]
) -> dict[str, Tensor]:
    names = list(params)
    tensors = [params[name] for name in names]
    sums = {name: torch.zeros_like(params[name], dtype=torch.float32) for name in names}
    for index in range(_batch_size(batch)):
        sample = {key: value[index : index + 1] for key, value in batch.items()}  # [1, ...]
        grads = torch.autograd.grad(loss_fn(model, sample), tensors, allow_unused=True)
        for name, gradient in zip(names, grads, strict=True):
            if gradient is not None:  # a parameter the loss does not reach has gradient 0
                sums[name] += gradient.float().pow(2)
    return sums


def _check_finite(fisher: Mapping[str, Tensor]) -> None:
    bad = sorted(name for name, value in fisher.items() if not bool(torch.isfinite(value).all()))
    if bad:
        raise FisherError(f"the Fisher estimate is not finite for {bad[:5]} (loss NaN or inf?)")


def online_fisher(
    previous: Mapping[str, Tensor] | None, new: Mapping[str, Tensor], decay: float
) -> dict[str, Tensor]:
    """The online Fisher after an update: `decay * previous + new` (just `new` the first time)."""
    if not 0.0 <= decay <= 1.0:
        raise EwcStateError(f"Fisher decay must be in [0, 1], got {decay}")
    if previous is None:
        return {name: value.detach().clone() for name, value in new.items()}
    _check_layout(previous, new, "previous Fisher", "new Fisher")
    return {
        name: decay * previous[name].to(value.device) + value.detach()
        for name, value in new.items()
    }


def ewc_penalty(
    params: Mapping[str, Tensor],
    anchor: Mapping[str, Tensor],
    fisher: Mapping[str, Tensor],
    lam: float,
) -> Tensor:
    """`lam / 2 * sum F * (theta - theta*)**2` over the Fisher's names, a scalar [].

    Differentiable in `params`; `params` may hold more names than the Fisher (they are free).
    """
    if lam < 0.0:
        raise EwcStateError(f"EWC lambda must be >= 0, got {lam}")
    _check_layout(anchor, fisher, "anchor", "Fisher")
    missing = sorted(set(fisher) - set(params))
    if missing:
        raise EwcStateError(f"parameters {missing[:5]} have a Fisher entry but are not trained")
    total = torch.zeros((), device=next(iter(params.values())).device if params else None)
    for name, weight in fisher.items():
        theta = params[name]
        if theta.shape != weight.shape:
            raise EwcStateError(
                f"parameter {name!r} has shape {tuple(theta.shape)}, "
                f"its Fisher {tuple(weight.shape)}"
            )
        shift = theta - anchor[name].to(theta.device)  # [*param.shape]
        total = total + (weight.to(theta.device) * shift.pow(2)).sum()
    return total * (lam / 2.0)


def _check_layout(
    left: Mapping[str, Tensor], right: Mapping[str, Tensor], left_name: str, right_name: str
) -> None:
    if set(left) != set(right):
        only_left = sorted(set(left) - set(right))[:5]
        only_right = sorted(set(right) - set(left))[:5]
        raise EwcStateError(
            f"{left_name} and {right_name} name different parameters: "
            f"only in {left_name} {only_left}, only in {right_name} {only_right}"
        )
    for name, value in left.items():
        if value.shape != right[name].shape:
            raise EwcStateError(
                f"parameter {name!r} has shape {tuple(value.shape)} in {left_name}, "
                f"{tuple(right[name].shape)} in {right_name}"
            )


def save_ewc_state(path: Path, fisher: Mapping[str, Tensor], anchor: Mapping[str, Tensor]) -> None:
    """Write Fisher and anchor as one safetensors file, atomically; same inputs, same bytes."""
    _check_layout(anchor, fisher, "anchor", "Fisher")
    tensors = {
        f"{prefix}{name}": source[name].detach().to("cpu", copy=True).contiguous()
        for prefix, source in ((_FISHER_PREFIX, fisher), (_ANCHOR_PREFIX, anchor))
        for name in source
    }
    ordered = {key: tensors[key] for key in sorted(tensors)}  # byte order follows insertion
    data = safetensors.torch.save(ordered, metadata={"format": EWC_FORMAT})
    scratch = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(scratch, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(scratch, path)
    finally:
        scratch.unlink(missing_ok=True)


def load_ewc_state(path: Path) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Read `(fisher, anchor)` written by `save_ewc_state` (CPU tensors)."""
    try:
        with safetensors.safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    except (OSError, safetensors.SafetensorError) as exc:
        raise EwcStateError(f"cannot read EWC state {path}: {exc}") from exc
    if metadata.get("format") != EWC_FORMAT:
        raise EwcStateError(
            f"{path} has format {metadata.get('format')!r}, expected {EWC_FORMAT!r}"
        )
    fisher = _strip(tensors, _FISHER_PREFIX)
    anchor = _strip(tensors, _ANCHOR_PREFIX)
    if len(fisher) + len(anchor) != len(tensors):
        raise EwcStateError(f"{path} holds tensors outside {_FISHER_PREFIX!r}/{_ANCHOR_PREFIX!r}")
    _check_layout(anchor, fisher, f"anchor in {path}", f"Fisher in {path}")
    return fisher, anchor


def _strip(tensors: Mapping[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {key[len(prefix) :]: value for key, value in tensors.items() if key.startswith(prefix)}
