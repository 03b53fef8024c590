"""Base classes of every contract (frozen, no unknown fields) and their canonical JSON form.

Events carry `schema_version`; within a version only optional fields may be added.
"""

from __future__ import annotations

import json

from pydantic import BaseModel, ConfigDict

from schemas.fields import SchemaVersion1


class Contract(BaseModel):
    """An immutable model that rejects unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Event(Contract):
    """A message on a topic. Subclass names are past tense (`RecordIngested`)."""

    schema_version: SchemaVersion1


def canonical_json(model: BaseModel) -> bytes:
    """UTF-8 JSON with sorted keys and no whitespace: the wire form and the hashed form.

    Datetimes are ISO-8601 with their UTC offset (`Z`); NaN and infinities raise ValueError.
    """
    data = model.model_dump(mode="json", by_alias=True)
    text = json.dumps(
        data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return text.encode("utf-8")
