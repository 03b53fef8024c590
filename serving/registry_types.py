"""Values of the adapter registry: its knobs, the leases it hands out, swap outcomes, per-task
views, node-local pins, and the observer Protocol through which swap metrics can be counted."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final, Literal, Protocol

from serving.engine import ScoreResult, TaskEngine
from serving.generation import Generation

SwapStatus = Literal["activated", "unchanged", "ignored", "failed"]

BASE: Final = "base"
"""`lease(task, BASE)`: the base model without adapter, whatever the champion is."""


class Previous:
    """Type of `PREVIOUS`."""

    def __repr__(self) -> str:
        return "PREVIOUS"


PREVIOUS: Final = Previous()
"""`rollback(task)` default: the version served before the active one."""


@dataclass(frozen=True)
class RegistryConfig:
    """spare: explicitly requested versions (task@version) kept loaded after their last lease,
    most recent first (default 1); max_rank: refuse adapters of a higher LoRA rank (None: any)."""

    spare: int = 1
    max_rank: int | None = None

    def __post_init__(self) -> None:
        if self.spare < 0:
            raise ValueError(f"spare must be >= 0, got {self.spare!r}")


@dataclass(frozen=True)
class Lease:
    """One request's hold on a version (None: the base model) of a task's engine; the version
    stays loaded until the lease is left."""

    task: str
    version: str | None
    engine: TaskEngine

    async def score(self, texts: Sequence[str]) -> list[ScoreResult]:
        return await self.engine.score(texts, self.version)

    def generate(
        self,
        prompt_ids: Sequence[int],
        *,
        max_tokens: int,
        temperature: float = 0.0,
        stop: Sequence[str] = (),
        seed: int | None = None,
    ) -> Generation:
        return self.engine.generate(
            prompt_ids,
            max_tokens=max_tokens,
            temperature=temperature,
            stop=stop,
            version=self.version,
            seed=seed,
        )


@dataclass(frozen=True)
class SwapOutcome:
    """What handling an event, a sync or an operator action did for `task`: `activated`
    `version`, left it `unchanged`, `ignored` the input, or `failed` (old version still serves);
    `reason` says why (empty on activation)."""

    task: str
    status: SwapStatus
    version: str | None
    reason: str = ""


@dataclass(frozen=True)
class NodePin:
    """An operator's pin of a task to `version` (None: base) on this node only."""

    version: str | None
    actor: str
    at: datetime


@dataclass(frozen=True)
class TaskView:
    """A task's serving state on this node."""

    task: str
    active: str | None
    manifest_sha256: str | None
    previous: str | None
    loaded: tuple[str, ...]
    pin: NodePin | None
    leases: int


class RegistryObserver(Protocol):
    """Metric hooks, called on the event loop right after the change they report."""

    def adapter_activated(self, task: str, version: str | None) -> None:
        """`task` now serves `version` (None: base): count a swap, set the active-version gauge."""

    def adapter_load_failed(self, task: str, version: str, reason: str) -> None:
        """Loading `version` was refused; the previous version keeps serving."""


class NullObserver:
    """An observer that records nothing."""

    def adapter_activated(self, task: str, version: str | None) -> None:
        return None

    def adapter_load_failed(self, task: str, version: str, reason: str) -> None:
        return None


@dataclass
class TaskState:
    """The registry's mutable record of one task (only the registry changes it)."""

    active: str | None = None
    digest: str | None = None  # manifest sha256 of `active`
    previous: str | None = None
    loaded: dict[str, str] = field(default_factory=dict)  # version -> manifest sha256
    leases: Counter[str | None] = field(default_factory=Counter)
    spare: list[str] = field(default_factory=list)  # explicit versions, most recent last
    pin: NodePin | None = None
    refused: tuple[str, str | None, str] | None = None  # (version, digest, reason) of the pointer
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
