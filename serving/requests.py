"""Request bodies of lorafeed's own endpoints (score, feedback, search, admin) and the stable
text rendering of structured fields that scoring (and training on them) uses. Pure."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, JsonValue, model_validator

from schemas.feedback import Correction, FeedbackKind
from schemas.fields import Identifier, JsonObject, LabelName, Rating, RequestId
from schemas.version import SemVer
from serving.openai_compat import FilterValue

_LINE_BREAKS = re.compile(r"[\r\n\u2028\u2029]+")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def render_value(value: JsonValue) -> str:
    """Strings as written (line breaks become spaces); anything else as compact sorted JSON."""
    if isinstance(value, str):
        return _LINE_BREAKS.sub(" ", value)
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def render_fields(fields: JsonObject) -> str:
    """One ``key: value`` line per field, keys sorted: the same fields give the same text."""
    return "\n".join(f"{render_value(key)}: {render_value(fields[key])}" for key in sorted(fields))


def has_input(text: str | None, fields: JsonObject | None) -> bool:
    """Whether there is something to score: a non-blank text, non-empty fields, or both."""
    return bool(text and text.strip()) or bool(fields)


def score_text(text: str | None, fields: JsonObject | None) -> str:
    """What the classifier reads: rendered fields, then the free text after a blank line."""
    parts = [render_fields(fields)] if fields else []
    if text:
        parts.append(text)
    return "\n\n".join(parts)


class ScoreRequest(_Strict):
    """Classify ``text`` and/or structured ``fields`` with ``task`` (or ``task@version``)."""

    task: Annotated[str, Field(min_length=1, max_length=300)]
    text: str | None = None
    fields: JsonObject | None = None

    @model_validator(mode="after")
    def _has_input(self) -> Self:
        if not has_input(self.text, self.fields):
            raise ValueError("send a non-blank text, non-empty fields, or both")
        return self


class FeedbackRequest(_Strict):
    """An app's verdict on a served answer; exactly the field named by ``kind`` is set."""

    request_id: RequestId
    kind: FeedbackKind
    rating: Rating | None = None
    correction: Correction | None = None
    label: LabelName | None = None
    annotator: Identifier | None = None

    @model_validator(mode="after")
    def _kind_matches_payload(self) -> Self:
        given = {name: getattr(self, name) is not None for name in ("rating", "correction",
                                                                     "label")}
        if not given[self.kind]:
            raise ValueError(f"kind {self.kind!r} requires the field {self.kind!r}")
        extra = sorted(name for name, present in given.items() if present and name != self.kind)
        if extra:
            raise ValueError(f"kind {self.kind!r} must not carry {extra}")
        return self

    def payload_sha256(self) -> str:
        """Digest of the whole payload: equal digests mean an identical retry."""
        text = json.dumps(self.model_dump(mode="json"), sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


class SearchRequest(_Strict):
    """Search the knowledge base directly (what a chat request would be grounded on)."""

    query: Annotated[str, Field(min_length=1, max_length=8000)]
    top_k: Annotated[int, Field(ge=1, le=50)] = 5
    filter: dict[str, FilterValue] | None = None
    mode: Literal["hybrid", "dense", "bm25"] | None = None


VersionOrBase = SemVer | Literal["base"]


class PinRequest(_Strict):
    """Serve ``version`` ("base": no adapter) of a task on this node until unpinned."""

    version: VersionOrBase
    reason: Annotated[str, Field(max_length=1000)] | None = None


class RollbackRequest(_Strict):
    """Pin this node to ``to_version`` ("base": no adapter), which must be older than the
    active version; omitted: the version served before the active one."""

    to_version: VersionOrBase | None = None
    reason: Annotated[str, Field(max_length=1000)] | None = None


class UnpinRequest(_Strict):
    """An optional reason recorded in the audit event."""

    reason: Annotated[str, Field(max_length=1000)] | None = None
