"""Adapter lifecycle events on `model.events`, a union discriminated by the field `type`.

They name (task, version, manifest sha256), never a path: the adapter store is the truth and
these events only notify. A version of None means the base model without adapter.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal, Self

from pydantic import ConfigDict, Field, TypeAdapter, model_validator

from schemas.base import Event
from schemas.fields import EventId, Identifier, Sha256Hex, TaskName, Text, UtcDatetime
from schemas.version import SemVer, Version


def _require_type(schema: dict[str, Any]) -> None:
    # `type` has a default for Python callers, yet the union needs it on the wire.
    required = schema.setdefault("required", [])
    if "type" not in required:
        required.insert(0, "type")


class ModelEventBase(Event):
    """Fields every model event carries (key: task)."""

    model_config = ConfigDict(json_schema_extra=_require_type)

    event_id: EventId
    task: TaskName
    occurred_at: UtcDatetime


class AdapterPublished(ModelEventBase):
    """A candidate adapter version was written, with its manifest, into the adapter store."""

    type: Literal["adapter_published"] = "adapter_published"
    version: SemVer
    manifest_sha256: Sha256Hex
    parent_version: SemVer | None = None


class AdapterPromoted(ModelEventBase):
    """The gate accepted a candidate: it is the task's champion now."""

    type: Literal["adapter_promoted"] = "adapter_promoted"
    version: SemVer
    manifest_sha256: Sha256Hex
    previous_version: SemVer | None = None


class AdapterRejected(ModelEventBase):
    """The gate refused a candidate; the champion is unchanged."""

    type: Literal["adapter_rejected"] = "adapter_rejected"
    version: SemVer
    manifest_sha256: Sha256Hex
    reason: Text


class AdapterRolledBack(ModelEventBase):
    """The champion went back from `from_version` to `to_version` (None: the base model)."""

    type: Literal["adapter_rolled_back"] = "adapter_rolled_back"
    from_version: SemVer
    to_version: SemVer | None
    manifest_sha256: Sha256Hex | None
    reason: Text
    automatic: bool

    @property
    def version(self) -> str | None:
        """The version now in charge, like `version` on the other events."""
        return self.to_version

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if (self.to_version is None) != (self.manifest_sha256 is None):
            raise ValueError(
                "manifest_sha256 must be given exactly when to_version is (None means base model)"
            )
        if self.to_version is not None and not (
            Version.parse(self.to_version) < Version.parse(self.from_version)
        ):
            raise ValueError(
                f"to_version {self.to_version} must be lower than from_version {self.from_version}"
            )
        return self


class AdapterActivated(ModelEventBase):
    """A serving node now answers this task with `version` (None: the base model)."""

    type: Literal["adapter_activated"] = "adapter_activated"
    node: Identifier
    version: SemVer | None
    manifest_sha256: Sha256Hex | None = None


class AdapterLoadFailed(ModelEventBase):
    """A serving node could not load `version` and kept its previous one."""

    type: Literal["adapter_load_failed"] = "adapter_load_failed"
    node: Identifier
    version: SemVer
    manifest_sha256: Sha256Hex | None = None
    reason: Text


ModelEvent = Annotated[
    AdapterPublished
    | AdapterPromoted
    | AdapterRejected
    | AdapterRolledBack
    | AdapterActivated
    | AdapterLoadFailed,
    Field(discriminator="type"),
]
"""Any value of `model.events`."""

MODEL_EVENT_ADAPTER: Final[TypeAdapter[ModelEvent]] = TypeAdapter(ModelEvent)

MODEL_EVENT_CLASSES: Final[dict[str, type[ModelEventBase]]] = {
    cls.model_fields["type"].default: cls
    for cls in (
        AdapterPublished,
        AdapterPromoted,
        AdapterRejected,
        AdapterRolledBack,
        AdapterActivated,
        AdapterLoadFailed,
    )
}
"""Discriminator value -> class, e.g. "adapter_promoted" -> AdapterPromoted."""
