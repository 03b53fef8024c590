"""One incremental LoRA update: base (+ champion adapter) -> train on new examples mixed with
replay under online EWC (and DPO when configured) -> adapter files plus the new EWC state.

Called by `learner.cycle` with a scratch `out_dir`; the cycle gates the result and stores it.
With a fixed seed on CPU two runs write byte-identical files.
"""

from __future__ import annotations

import logging
import random
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import torch
from torch import Tensor, nn

from learner.batches import (
    Encoded,
    collate,
    collate_pairs,
    encode_example,
    encode_pair,
    pad_id_of,
    plan_batches,
)
from learner.dpo import DpoHook
from learner.errors import EwcStateError, TrainingError
from learner.ewc import (
    Batch,
    FisherStrategy,
    anchor_from,
    ewc_penalty,
    fisher_diagonal,
    load_ewc_state,
    online_fisher,
    save_ewc_state,
    trainable_parameters,
)
from learner.examples import Example
from learner.hooks import BaseHook, EwcHook, TrainHook, TrainState
from learner.losses import loss_fn_for, train_loss_fn_for
from learner.training import train_steps
from lorafeed import failpoints
from lorafeed.task_models import (
    DTYPE_NAMES,
    load_base,
    new_adapter,
    open_adapter,
    resolved_targets,
    save_adapter,
    torch_dtype,
)

if TYPE_CHECKING:
    from peft import PeftModel
    from transformers import PreTrainedTokenizerBase

    from schemas.tasks import TaskConfig

EWC_STATE_NAME: Final = "ewc_state.safetensors"
MID_TRAINING: Final = failpoints.declare(
    "learner.mid_training", "an update's optimizer step N done (hit N), nothing written yet"
)

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UpdateInputs:
    """What one update trains: new examples (sft/text/label, + preference for DPO) and replay."""

    task: TaskConfig
    base_dir: Path
    champion_dir: Path | None
    train: Sequence[Example]
    replay: Sequence[Example]
    device: str = "cpu"
    dtype: str = "float32"
    passages: Mapping[str, str] = field(default_factory=dict)  # chunk pk -> text, for grounding


@dataclass(frozen=True)
class UpdateOutcome:
    """Where the files are and what training did (for the manifest and metrics)."""

    files_dir: Path
    steps: int
    losses: tuple[float, ...]
    examples: int
    tokens: int
    fisher_samples: int
    ewc_penalty: float | None
    seconds: float
    target_modules: list[str]
    trained_ids: frozenset[str] = frozenset()  # new (not replayed) examples the steps used


class _CrashPoint(BaseHook):
    """Hits the `learner.mid_training` failpoint after every optimizer step (armed: the first)."""

    def on_step_end(self, state: TrainState) -> None:
        failpoints.failpoint(MID_TRAINING)


class _Progress(BaseHook):
    def __init__(self, report: Callable[[int, int], None], total: int) -> None:
        self.report, self.total = report, total

    def on_step_end(self, state: TrainState) -> None:
        self.report(state.step, self.total)


def run_update(
    inputs: UpdateInputs,
    out_dir: Path,
    *,
    hooks: Sequence[TrainHook] = (),
    progress: Callable[[int, int], None] | None = None,
) -> UpdateOutcome:
    """Train the task's adapter once and write `out_dir/{adapter files, ewc_state.safetensors}`.

    Starts from the champion adapter when `champion_dir` is given (else a fresh seeded one);
    EWC pulls towards the champion's weights with the champion's stored Fisher (skipped with no
    champion, no stored Fisher, or lambda 0). Progress is reported as (step, total steps).
    """
    started = time.monotonic()
    task, settings = inputs.task, inputs.task.training
    model, tokenizer, targets = _load(inputs)
    params = trainable_parameters(model)
    encode = _Encoder(task, tokenizer, inputs.device, inputs.passages)
    plain = [e for e in inputs.train if e.kind != "preference"]
    plan = _plan(task, plain, [e for e in inputs.replay if e.kind != "preference"])
    ewc = _ewc_hook(task, inputs.champion_dir, params)
    dpo = _dpo_hook(task, inputs.train, encode)
    total = len(plan) or (min(settings.max_steps, len(dpo.pair_batches)) if dpo else 0)
    if total == 0:
        raise TrainingError(f"task {task.name!r}: no trainable examples among {len(inputs.train)}")
    all_hooks: list[TrainHook] = [h for h in (ewc, dpo) if h is not None] + list(hooks)
    all_hooks.append(_CrashPoint())
    if progress is not None:
        all_hooks.append(_Progress(progress, total))
    batches = encode.batches(plan) if plan else iter([{}] * total)
    loss_fn = train_loss_fn_for(task) if plan else _no_task_loss
    optimizer = torch.optim.AdamW(list(params.values()), lr=settings.learning_rate)
    with _checkpointing(model, settings.gradient_checkpointing):
        result = train_steps(model, batches, optimizer, loss_fn, all_hooks, total, settings.seed)
    fisher_used = _write_outputs(task, model, params, plain, encode, ewc, out_dir)
    return UpdateOutcome(
        files_dir=out_dir,
        steps=result.steps,
        losses=result.losses,
        examples=len({e.example_id for step in plan for e in step}),
        tokens=encode.tokens,
        fisher_samples=fisher_used,
        ewc_penalty=_final_penalty(ewc, params),
        seconds=time.monotonic() - started,
        target_modules=targets,
        trained_ids=_trained_ids(inputs.train, plan, dpo, total, settings.batch_size),
    )


def _load(inputs: UpdateInputs) -> tuple[PeftModel, PreTrainedTokenizerBase, list[str]]:
    """The trainable model (champion adapter, else a fresh seeded one), tokenizer, targets."""
    if inputs.dtype not in DTYPE_NAMES:
        raise TrainingError(f"dtype {inputs.dtype!r} is not one of {list(DTYPE_NAMES)}")
    task = inputs.task
    base, tokenizer = load_base(
        task, inputs.base_dir, device=inputs.device, dtype=torch_dtype(inputs.dtype)
    )
    targets = resolved_targets(task, base)
    return _start_model(task, base, inputs.champion_dir), tokenizer, targets


def _plan(
    task: TaskConfig, plain: Sequence[Example], replay: Sequence[Example]
) -> list[list[Example]]:
    settings = task.training
    return plan_batches(
        plain,
        replay,
        batch_size=settings.batch_size,
        ratio=task.replay.ratio,
        epochs=settings.epochs,
        max_steps=settings.max_steps,
        seed=settings.seed,
    )


def _start_model(task: TaskConfig, base: nn.Module, champion_dir: Path | None) -> PeftModel:
    if champion_dir is None:
        return new_adapter(task, base, seed=task.training.seed)  # type: ignore[arg-type]
    return open_adapter(task, base, champion_dir, trainable=True)  # type: ignore[arg-type]


def _no_task_loss(model: nn.Module, batch: Batch) -> Tensor:
    return torch.zeros(())  # a DPO-only update: the hook supplies the whole objective


class _Encoder:
    """Encodes each example once; turns planned steps into collated batches on the device."""

    def __init__(
        self,
        task: TaskConfig,
        tokenizer: PreTrainedTokenizerBase,
        device: str,
        passages: Mapping[str, str],
    ) -> None:
        self.task, self.tokenizer, self.device = task, tokenizer, device
        self.passages = passages
        self.pad_id = pad_id_of(tokenizer)
        self.tokens = 0
        self._cache: dict[str, Encoded] = {}

    def encoded(self, example: Example) -> Encoded:
        if example.example_id not in self._cache:
            self._cache[example.example_id] = encode_example(
                self.task, self.tokenizer, example, self.passages
            )
        return self._cache[example.example_id]

    def to_device(self, batch: Batch) -> Batch:
        return {key: value.to(self.device) for key, value in batch.items()}

    def batches(self, plan: Sequence[Sequence[Example]]) -> Iterator[Batch]:
        for step in plan:
            items = [self.encoded(example) for example in step]
            self.tokens += sum(len(item.input_ids) for item in items)
            yield self.to_device(collate(items, self.pad_id))

    def fisher_batches(self, examples: Sequence[Example], size: int) -> Iterator[Batch]:
        """Fisher batches. Causal LMs go without attention_mask, which vmap cannot trace in sdpa
        attention (right padding: pads never precede a real token); classification keeps its
        mask, for the batched nn.Linear strategy (`fisher_strategy`)."""
        items = [self.encoded(example) for example in examples]
        masked = self.task.kind == "classification"
        if masked:  # similar lengths together: less padding (the Fisher is a mean, order-free)
            items.sort(key=lambda item: len(item.input_ids))
        for start in range(0, len(items), size):
            yield self.to_device(
                collate(items[start : start + size], self.pad_id, attention_mask=masked)
            )

    def fisher_strategy(self) -> FisherStrategy:
        """Classification's loss is a mean of per-sample cross-entropies, which the nn.Linear
        strategy needs; causal-LM loss is a token mean, so it uses vmap (or the loop)."""
        return "linear" if self.task.kind == "classification" else "auto"


def _ewc_hook(
    task: TaskConfig, champion_dir: Path | None, params: dict[str, nn.Parameter]
) -> EwcHook | None:
    if champion_dir is None or task.ewc.lambda_ == 0.0:
        return None
    path = champion_dir / EWC_STATE_NAME
    if not path.is_file():
        _log.warning("champion %s has no %s: training without EWC", champion_dir, path.name)
        return None
    fisher, _stored_anchor = load_ewc_state(path)
    if set(fisher) != set(params):
        only_stored = sorted(set(fisher) - set(params))[:3]
        only_model = sorted(set(params) - set(fisher))[:3]
        raise EwcStateError(
            f"{path} does not match the champion's trainable parameters: "
            f"only stored {only_stored}, only in the model {only_model}"
        )
    return EwcHook(anchor_from(params), fisher, task.ewc.lambda_)


def _trained_ids(
    train: Sequence[Example],
    plan: list[list[Example]],
    dpo: DpoHook | None,
    steps: int,
    pair_batch_size: int,
) -> frozenset[str]:
    """Ids of `train` examples some step used: planned plain ones, and preference pairs in the
    pair batches the DPO hook reached (it takes batch `step % len(batches)` at each step)."""
    wanted = {e.example_id for e in train}
    used = {e.example_id for step in plan for e in step} & wanted
    if dpo is not None:
        pairs = [e for e in train if e.kind == "preference"]
        reached = min(steps, len(dpo.pair_batches))
        used |= {e.example_id for e in pairs[: reached * pair_batch_size]}
    return frozenset(used)


def _dpo_hook(task: TaskConfig, train: Sequence[Example], encode: _Encoder) -> DpoHook | None:
    pairs = [e for e in train if e.kind == "preference"]
    if task.training.preference_loss != "dpo" or not pairs:
        return None
    size = task.training.batch_size
    encoded = [encode_pair(encode.tokenizer, e, task.max_seq_len, encode.passages) for e in pairs]
    pair_batches = [
        encode.to_device(collate_pairs(encoded[start : start + size], encode.pad_id))
        for start in range(0, len(encoded), size)
    ]
    return DpoHook(pair_batches, task.training.dpo_beta, task.training.dpo_weight)


class _checkpointing:
    """Gradient checkpointing (non-reentrant: LoRA inputs need no grad) while training."""

    def __init__(self, model: PeftModel, enabled: bool) -> None:
        self.model: Any = model.get_base_model()
        self.enabled = enabled

    def __enter__(self) -> None:
        if self.enabled:
            self.model.gradient_checkpointing_enable({"use_reentrant": False})
            self.model.config.use_cache = False

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self.model.gradient_checkpointing_disable()


def _write_outputs(
    task: TaskConfig,
    model: PeftModel,
    params: dict[str, nn.Parameter],
    plain: Sequence[Example],
    encode: _Encoder,
    ewc: EwcHook | None,
    out_dir: Path,
) -> int:
    """Save the adapter and, unless lambda is 0, the online Fisher with this adapter as anchor."""
    save_adapter(model, out_dir)
    if task.ewc.lambda_ == 0.0 or not plain:
        return 0
    sample = list(plain)
    random.Random(task.training.seed).shuffle(sample)
    sample = sample[: task.ewc.fisher_samples]
    with warnings.catch_warnings():  # vmap falls back to a loop for CPU sdpa, and says so
        warnings.filterwarnings("ignore", message=".*batching rule.*")
        fisher, used = fisher_diagonal(
            model,
            encode.fisher_batches(sample, task.training.batch_size),
            loss_fn_for(task),
            params,
            task.ewc.fisher_samples,
            strategy=encode.fisher_strategy(),
        )
    combined = online_fisher(ewc.fisher if ewc else None, fisher, task.ewc.decay)
    save_ewc_state(out_dir / EWC_STATE_NAME, combined, anchor_from(params))
    return used


def _final_penalty(ewc: EwcHook | None, params: dict[str, nn.Parameter]) -> float | None:
    if ewc is None:
        return None
    with torch.no_grad():
        return float(ewc_penalty(params, ewc.anchor, ewc.fisher, ewc.lam))
