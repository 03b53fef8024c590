"""Record events: raw records from producers, their cleaned form, and their indexing outcome.

Topics `records.raw` (any producer, plain JSON), `records.clean` and `records.indexed` (streams).
"""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, model_validator

from schemas.base import Event
from schemas.fields import (
    Identifier,
    JsonObject,
    NonNegativeInt,
    RecordId,
    Sha256Hex,
    UtcDatetime,
    show,
)

RecordOp = Literal["upsert", "delete"]
ContentType = Literal["text/plain", "text/html", "text/markdown"]


class RecordIngested(Event):
    """A raw business record as any producer sends it (key: record_id).

    `content` may be empty only for `op == "delete"`.
    """

    record_id: RecordId
    op: RecordOp
    source: Identifier
    content_type: ContentType
    content: str
    metadata: JsonObject = Field(default_factory=dict)
    occurred_at: UtcDatetime

    @model_validator(mode="after")
    def _upsert_has_content(self) -> Self:
        if self.op == "upsert" and not self.content:
            raise ValueError(f"record {show(self.record_id)}: op 'upsert' needs non-empty content")
        return self


class RecordCleaned(Event):
    """A record after cleaning and PII pseudonymization; safe for every downstream consumer.

    `content_sha256` is the exact-dedup key: sha256 of the normalized cleaned text (the
    normalization is the cleaner's). `pii_replaced` counts replacements by kind ("email": 2).
    """

    record_id: RecordId
    op: RecordOp
    source: Identifier
    content_type: ContentType
    text: str
    metadata: JsonObject = Field(default_factory=dict)
    occurred_at: UtcDatetime
    content_sha256: Sha256Hex
    pii_replaced: dict[Identifier, NonNegativeInt] = Field(default_factory=dict)
    cleaned_at: UtcDatetime


class RecordIndexed(Event):
    """The outcome of indexing one cleaned record into a vector collection.

    `duplicate_of` names an already indexed record with the same content: this record is an
    alias of it and got no chunks of its own.
    """

    record_id: RecordId
    collection: Identifier
    chunk_count: NonNegativeInt
    chunk_ids: list[Identifier] = Field(default_factory=list)
    deleted_chunk_ids: list[Identifier] = Field(default_factory=list)
    duplicate_of: RecordId | None = None
    indexed_at: UtcDatetime

    @model_validator(mode="after")
    def _counts_agree(self) -> Self:
        if self.chunk_count != len(self.chunk_ids):
            raise ValueError(
                f"chunk_count is {self.chunk_count} but {len(self.chunk_ids)} chunk_ids are listed"
            )
        if self.duplicate_of is None:
            return self
        if self.duplicate_of == self.record_id:
            raise ValueError(f"record {show(self.record_id)} cannot be a duplicate of itself")
        if self.chunk_count:
            raise ValueError(
                f"record {show(self.record_id)} is a duplicate of {show(self.duplicate_of)} "
                f"and must have no chunks of its own, got chunk_count {self.chunk_count}"
            )
        return self
