"""The learner's unit of training data: one `Example` per feedback event or record chunk.

Examples are frozen, JSON-round-trippable and validated on construction; `is_heldout` decides
the train/heldout split from the example id alone so every process agrees on it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any, Literal, get_args

from learner.errors import InvalidExample

ExampleKind = Literal["sft", "text", "label", "preference", "negative"]
EXAMPLE_KINDS: tuple[str, ...] = get_args(ExampleKind)

Turn = tuple[str, str]


@dataclass(frozen=True)
class Example:
    """One training (or monitoring) example.

    `text` holds the kind's main string: the assistant answer (sft), the document (text), the
    input to classify (label), the chosen answer (preference) or the served bad answer (negative).
    `passages` are the ids (knowledge chunk pks, best first) of the passages the answer was served
    with: only ids are kept, the texts are fetched when the example is encoded, so a record
    deleted upstream leaves no copy here.
    """

    example_id: str
    task: str
    kind: ExampleKind
    prompt: tuple[Turn, ...] = ()
    text: str = ""
    label: str | None = None
    rejected: str | None = None
    domain: str = "feedback"
    request_id: str | None = None
    record_id: str | None = None
    agreement: float | None = None
    passages: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.example_id:
            raise InvalidExample("example_id is empty")
        if not self.task:
            raise InvalidExample(f"example {self.example_id!r}: task is empty")
        if self.kind not in EXAMPLE_KINDS:
            raise InvalidExample(
                f"example {self.example_id!r}: kind {self.kind!r} not one of {EXAMPLE_KINDS}"
            )
        for turn in self.prompt:
            if not (
                isinstance(turn, tuple) and len(turn) == 2 and all(isinstance(p, str) for p in turn)
            ):
                raise InvalidExample(
                    f"example {self.example_id!r}: prompt turn {turn!r} is not (role, content)"
                )
        if not self.text:
            raise InvalidExample(f"example {self.example_id!r} ({self.kind}): text is empty")
        if not all(isinstance(p, str) and p for p in self.passages):
            raise InvalidExample(
                f"example {self.example_id!r}: passage ids must be non-empty strings, "
                f"got {self.passages!r}"[:300]
            )
        self._check_kind_fields()
        if self.agreement is not None and not 0.0 <= self.agreement <= 1.0:
            raise InvalidExample(
                f"example {self.example_id!r}: agreement {self.agreement!r} not in [0, 1]"
            )

    def _check_kind_fields(self) -> None:
        where = f"example {self.example_id!r} ({self.kind})"
        if self.kind == "label" and not self.label:
            raise InvalidExample(f"{where}: label is required, got {self.label!r}")
        if self.kind != "label" and self.label is not None:
            raise InvalidExample(f"{where}: label {self.label!r} only allowed on label examples")
        if self.kind == "preference":
            if not self.rejected:
                raise InvalidExample(f"{where}: rejected is required, got {self.rejected!r}")
            if self.rejected == self.text:
                raise InvalidExample(f"{where}: chosen equals rejected ({self.text[:40]!r})")
        elif self.rejected is not None:
            raise InvalidExample(
                f"{where}: rejected {self.rejected[:40]!r} only allowed on preference examples"
            )
        if self.kind in ("sft", "preference", "negative") and not self.prompt:
            raise InvalidExample(f"{where}: prompt turns are required, got none")

    def to_json(self) -> str:
        """Compact, key-sorted JSON (stable bytes for the same example; no `passages` key when
        there are none, the form stored before examples had passages)."""
        fields = asdict(self)
        if not self.passages:
            del fields["passages"]
        return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str | bytes) -> Example:
        """Inverse of `to_json`; raises `InvalidExample` on malformed input."""
        try:
            raw: Any = json.loads(text)
        except ValueError as exc:
            raise InvalidExample(f"example JSON is malformed: {exc}") from exc
        if not isinstance(raw, dict):
            raise InvalidExample(f"example JSON is a {type(raw).__name__}, expected an object")
        try:
            prompt = tuple((str(role), str(content)) for role, content in raw.pop("prompt", []))
            passages = raw.pop("passages", [])
            if not isinstance(passages, list):
                raise InvalidExample(f"example JSON passages is a {type(passages).__name__}")
            return cls(prompt=prompt, passages=tuple(passages), **raw)
        except (TypeError, ValueError) as exc:
            raise InvalidExample(f"example JSON has bad fields: {exc}") from exc


def is_heldout(example_id: str, percent: int) -> bool:
    """Whether `example_id` belongs to the heldout split at `percent` (0-100), by its sha256."""
    if not 0 <= percent <= 100:
        raise InvalidExample(f"holdout percent {percent!r} not in [0, 100]")
    digest = hashlib.sha256(example_id.encode("utf-8")).hexdigest()
    return int(digest[:8], 16) % 100 < percent
