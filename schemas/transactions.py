"""Scoring events: transactions to classify (`transactions.raw`) and their scores (`scores.out`).

Both are keyed by event_id; a score repeats the event_id of the transaction it scored.
"""

from __future__ import annotations

from typing import Annotated, Self

from pydantic import Field, model_validator

from schemas.base import Event
from schemas.fields import EventId, JsonObject, LabelName, Probability, TaskName, UtcDatetime, show
from schemas.version import SemVer


class TransactionReceived(Event):
    """A business transaction to score; `fields` are its structured attributes, `text` its prose."""

    event_id: EventId
    task: TaskName = "fraud"
    fields: JsonObject
    text: str | None = None
    occurred_at: UtcDatetime


class TransactionScored(Event):
    """The classification of one transaction by one adapter version (None: base model).

    `low_margin` flags a top-two probability gap under the serving threshold: a candidate for
    human labelling.
    """

    event_id: EventId
    task: TaskName
    adapter_version: SemVer | None
    label: LabelName
    probabilities: Annotated[dict[LabelName, Probability], Field(min_length=1)]
    low_margin: bool
    scored_at: UtcDatetime

    @model_validator(mode="after")
    def _label_is_scored(self) -> Self:
        if self.label not in self.probabilities:
            raise ValueError(
                f"label {show(self.label)} is not among the scored labels "
                f"{show(sorted(self.probabilities))}"
            )
        return self
