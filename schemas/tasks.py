"""Task configuration shared by learner and serving: what a task is and how it learns.

Defaults are documented on each field; every adapter manifest records the values it used.
"""

from __future__ import annotations

from collections import Counter
from typing import Annotated, Literal, Self

from pydantic import ConfigDict, Field, FiniteFloat, model_validator

from schemas.base import Contract
from schemas.fields import Identifier, LabelName, TaskName, show

TaskKind = Literal["generation", "classification"]

ModuleName = Annotated[str, Field(min_length=1, max_length=256, pattern=r"^[A-Za-z0-9_.]+$")]


class LoraSettings(Contract):
    """LoRA shape: rank `r`, scaling `alpha`, `dropout`; `target_modules` None = model default."""

    r: Annotated[int, Field(ge=1, le=1024)] = 8
    alpha: Annotated[int, Field(ge=1, le=65536)] = 16
    dropout: Annotated[FiniteFloat, Field(ge=0.0, lt=1.0)] = 0.05
    target_modules: Annotated[list[ModuleName], Field(min_length=1)] | None = None


class EwcSettings(Contract):
    """Online EWC: penalty weight `lambda`, Fisher estimate size, and decay of old Fisher terms.

    The penalty is lambda / 2 * sum(F * (theta - theta_anchor) ** 2) over LoRA parameters;
    `decay` multiplies the previous Fisher before adding the new estimate.
    """

    model_config = ConfigDict(populate_by_name=True)

    lambda_: Annotated[FiniteFloat, Field(ge=0.0, alias="lambda")] = 1000.0
    fisher_samples: Annotated[int, Field(ge=1, le=100_000)] = 64
    decay: Annotated[FiniteFloat, Field(ge=0.0, le=1.0)] = 0.9


class ReplaySettings(Contract):
    """Replay buffer of past examples: `capacity` examples, `ratio` of each batch replayed."""

    capacity: Annotated[int, Field(ge=0, le=10_000_000)] = 2000
    ratio: Annotated[FiniteFloat, Field(ge=0.0, lt=1.0)] = 0.25


class TriggerSettings(Contract):
    """Train when `min_examples` are pending, or when the oldest has waited `max_wait_seconds`."""

    min_examples: Annotated[int, Field(ge=1)] = 32
    max_wait_seconds: Annotated[int, Field(ge=1)] = 600


class GateSettings(Contract):
    """Promotion gate: gain on the target metric must exceed `min_gain`; regression on retained
    tasks and probes must stay within `max_forgetting`; `bootstrap_samples` resamples for the CI.
    An update waits (its examples stay pending) until the task's held-out pool holds at least
    `min_heldout` examples: a smaller pool cannot show a gain, so training would waste them.
    """

    min_gain: Annotated[FiniteFloat, Field(ge=0.0)] = 0.0
    max_forgetting: Annotated[FiniteFloat, Field(ge=0.0, le=1.0)] = 0.02
    bootstrap_samples: Annotated[int, Field(ge=1, le=1_000_000)] = 1000
    min_heldout: Annotated[int, Field(ge=1, le=1_000_000)] = 10


class TrainingSettings(Contract):
    """One incremental update: at most `max_steps` optimizer steps of `batch_size` examples
    (`epochs` passes over the new batch plus its replay share), AdamW at `learning_rate`.

    `holdout_percent` of the examples (chosen by a hash of their id) join the held-out pool
    and are never trained on. `preference_loss = "dpo"` adds a DPO term on correction pairs
    (generation only) with the champion as reference, weighted by `dpo_weight`, temperature
    `dpo_beta`. A fixed `seed` on CPU gives byte-identical adapters.
    """

    batch_size: Annotated[int, Field(ge=1, le=4096)] = 8
    learning_rate: Annotated[FiniteFloat, Field(gt=0.0, le=1.0)] = 2e-4
    max_steps: Annotated[int, Field(ge=1, le=1_000_000)] = 64
    epochs: Annotated[int, Field(ge=1, le=1000)] = 1
    seed: Annotated[int, Field(ge=0, le=2**31 - 1)] = 0
    gradient_checkpointing: bool = False
    holdout_percent: Annotated[int, Field(ge=1, le=90)] = 20
    preference_loss: Literal["dpo"] | None = None
    dpo_beta: Annotated[FiniteFloat, Field(gt=0.0, le=100.0)] = 0.1
    dpo_weight: Annotated[FiniteFloat, Field(ge=0.0, le=100.0)] = 1.0


class WatchSettings(Contract):
    """Online watch after a promotion: once `min_rated` answers of the new version are rated,
    roll back automatically if its negative-rating rate exceeds the parent's by > `margin`."""

    min_rated: Annotated[int, Field(ge=1, le=1_000_000)] = 20
    margin: Annotated[FiniteFloat, Field(ge=0.0, le=1.0)] = 0.15


class TaskConfig(Contract):
    """One task: its kind, base model, labels (classification only) and learning settings.

    `knowledge_sources` names record sources (or `key=value` metadata filters) whose cleaned
    records feed the task; `low_margin` flags scores whose top-two gap is below it;
    `label_horizon_days` is how long serving keeps score contexts for late labels.
    """

    name: TaskName
    kind: TaskKind
    base_model: Identifier
    labels: list[LabelName] | None = None
    lora: LoraSettings = Field(default_factory=LoraSettings)
    ewc: EwcSettings = Field(default_factory=EwcSettings)
    replay: ReplaySettings = Field(default_factory=ReplaySettings)
    trigger: TriggerSettings = Field(default_factory=TriggerSettings)
    gate: GateSettings = Field(default_factory=GateSettings)
    training: TrainingSettings = Field(default_factory=TrainingSettings)
    watch: WatchSettings = Field(default_factory=WatchSettings)
    max_seq_len: Annotated[int, Field(ge=8, le=131_072)] = 384
    knowledge_sources: list[Identifier] = Field(default_factory=list)
    low_margin: Annotated[FiniteFloat, Field(ge=0.0, le=1.0)] = 0.2
    label_horizon_days: Annotated[int, Field(ge=1, le=3650)] = 90

    @model_validator(mode="after")
    def _labels_fit_kind(self) -> Self:
        if self.training.preference_loss is not None and self.kind != "generation":
            raise ValueError(
                f"task {self.name!r}: preference_loss applies to generation tasks only"
            )
        if self.kind == "generation":
            if self.labels is not None:
                raise ValueError(
                    f"generation task {self.name!r} must not define labels, got {show(self.labels)}"
                )
            return self
        if self.labels is None:
            raise ValueError(f"classification task {self.name!r} needs labels (at least 2)")
        duplicated = sorted(label for label, count in Counter(self.labels).items() if count > 1)
        if duplicated:
            raise ValueError(f"classification task {self.name!r} repeats labels {show(duplicated)}")
        if len(self.labels) < 2:
            raise ValueError(
                f"classification task {self.name!r} needs at least 2 labels, "
                f"got {show(self.labels)}"
            )
        return self
