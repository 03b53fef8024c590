"""The adapter manifest: what makes a version directory complete, verifiable and explainable.

`manifest_sha256` hashes its canonical JSON; model events carry that digest, never a path.
"""

from __future__ import annotations

import hashlib
import re
from typing import Annotated, Final, Self

from pydantic import AfterValidator, Field, FiniteFloat, JsonValue, model_validator

from schemas.base import Contract, canonical_json
from schemas.fields import (
    Identifier,
    KafkaTopicName,
    NonNegativeInt,
    RecordId,
    RequestId,
    SchemaVersion1,
    Sha256Hex,
    TaskName,
    Text,
    UtcDatetime,
    show,
)
from schemas.tasks import LoraSettings, TaskKind
from schemas.version import SemVer, Version

_BAD_PATH_CHAR: Final = re.compile(r"[\x00-\x1f\x7f\\:]")


def _check_relative_path(value: str) -> str:
    problem = None
    if not value or len(value) > 512:
        problem = "must have 1 to 512 characters"
    elif value.startswith("/"):
        problem = "is absolute"
    elif (bad := _BAD_PATH_CHAR.search(value)) is not None:
        problem = (
            f"contains {bad.group()!r} (backslashes, colons and control characters are refused)"
        )
    elif any(part in ("", ".", "..") for part in value.split("/")):
        problem = "has an empty, '.' or '..' segment"
    if problem is not None:
        raise ValueError(f"file path {show(value)} {problem}; use a relative POSIX path")
    return value


RelativePath = Annotated[str, AfterValidator(_check_relative_path)]
"""A path inside a version directory: relative, '/'-separated, no '..' or '.' segment."""


class OffsetRange(Contract):
    """Offsets `first`..`last` (inclusive) of one topic partition consumed for training."""

    topic: KafkaTopicName
    partition: NonNegativeInt
    first: NonNegativeInt
    last: NonNegativeInt

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.last < self.first:
            raise ValueError(
                f"offset range {self.topic}[{self.partition}] ends ({self.last}) "
                f"before it starts ({self.first})"
            )
        return self


class Lineage(Contract):
    """Where the training data of a version came from."""

    offsets: list[OffsetRange] = Field(default_factory=list)
    request_ids: list[RequestId] = Field(default_factory=list)
    record_ids: list[RecordId] = Field(default_factory=list)
    knowledge_sources: list[Identifier] = Field(default_factory=list)


class GateDecision(Contract):
    """The promotion gate's verdict and the numbers it was based on (gain, forgetting, CIs)."""

    promoted: bool
    reason: Text
    numbers: dict[Identifier, FiniteFloat] = Field(default_factory=dict)


class AdapterManifest(Contract):
    """The manifest of one immutable adapter version directory.

    `files` maps every file of the directory (except the manifest) to its sha256. `configs`
    holds the settings used (task config, training settings), `metrics` the evaluation results.
    """

    schema_version: SchemaVersion1
    task: TaskName
    version: SemVer
    parent_version: SemVer | None = None
    kind: TaskKind
    base_model_id: Identifier
    base_model_sha256: Sha256Hex
    files: Annotated[dict[RelativePath, Sha256Hex], Field(min_length=1)]
    lora: LoraSettings
    configs: dict[Identifier, JsonValue] = Field(default_factory=dict)
    metrics: dict[Identifier, FiniteFloat] = Field(default_factory=dict)
    gate: GateDecision
    lineage: Lineage = Field(default_factory=Lineage)
    created_at: UtcDatetime

    @model_validator(mode="after")
    def _parent_is_older(self) -> Self:
        if self.parent_version is not None and not (
            Version.parse(self.parent_version) < Version.parse(self.version)
        ):
            raise ValueError(
                f"parent_version {self.parent_version} must be lower than version {self.version}"
            )
        return self


def manifest_sha256(manifest: AdapterManifest) -> str:
    """sha256 hex of the manifest's canonical JSON (sorted keys, no whitespace, UTF-8)."""
    return hashlib.sha256(canonical_json(manifest)).hexdigest()
