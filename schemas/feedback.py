"""Feedback events: an app's verdict on one served answer, with the serving context it judged.

Topic `feedback.events`, keyed by request_id; serving nodes publish, the learner consumes.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal, Self

from pydantic import AfterValidator, Field, model_validator

from schemas.base import Contract, Event
from schemas.fields import (
    Identifier,
    LabelName,
    Rating,
    RequestId,
    TaskName,
    UtcDatetime,
)
from schemas.version import SemVer

CORRECTION_MAX_BYTES: Final = 32 * 1024

FeedbackKind = Literal["rating", "correction", "label"]
ChatRole = Literal["system", "developer", "user", "assistant", "tool"]


def _check_correction(value: str) -> str:
    if not value.strip():
        raise ValueError("correction must not be empty or blank")
    size = len(value.encode("utf-8", "surrogatepass"))
    if size > CORRECTION_MAX_BYTES:
        raise ValueError(
            f"correction is {size} bytes of UTF-8, the maximum is {CORRECTION_MAX_BYTES}"
        )
    return value


Correction = Annotated[str, AfterValidator(_check_correction), Field(min_length=1)]


class ChatMessage(Contract):
    """One message of a chat request, as the serving node stored it (PII pseudonymized)."""

    role: ChatRole
    content: str


class FeedbackReceived(Event):
    """Feedback on one answer (key: request_id).

    Exactly the field named by `kind` is set: `rating` (1 or -1), `correction` (the better
    answer) or `label` (the right class). `adapter_version` is None when the base model
    answered. `input` is the chat messages or the scored text.
    """

    request_id: RequestId
    task: TaskName
    kind: FeedbackKind
    rating: Rating | None = None
    correction: Correction | None = None
    label: LabelName | None = None
    annotator: Identifier | None = None
    adapter_version: SemVer | None
    input: Annotated[list[ChatMessage], Field(min_length=1)] | str
    output: str
    retrieved_passage_ids: list[Identifier] = Field(default_factory=list)
    served_at: UtcDatetime
    received_at: UtcDatetime

    @model_validator(mode="after")
    def _kind_matches_payload(self) -> Self:
        given = {
            "rating": self.rating is not None,
            "correction": self.correction is not None,
            "label": self.label is not None,
        }
        if not given[self.kind]:
            raise ValueError(f"kind {self.kind!r} requires the field {self.kind!r}")
        extra = sorted(name for name, present in given.items() if present and name != self.kind)
        if extra:
            raise ValueError(
                f"kind {self.kind!r} must not carry {', '.join(map(repr, extra))}; "
                f"each field belongs only to its own kind"
            )
        return self
