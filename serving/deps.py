"""What `create_app` needs, built by the composition root, and the small protocols the API codes
against (registry, engine, lease, context store, retriever); unit tests pass in-memory fakes.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from lorafeed.privacy import Pseudonymizer
from lorafeed.retrieval import FilterSpec, Hit, Mode
from schemas.tasks import TaskConfig
from serving.contexts import Claim, ServedContext
from serving.metrics import ServingMetrics
from serving.publisher import EventPublisher
from serving.ratelimit import RateLimiter
from serving.settings import ServingSettings


class ScoreResultLike(Protocol):
    @property
    def label(self) -> str: ...
    @property
    def probabilities(self) -> dict[str, float]: ...
    @property
    def low_margin(self) -> bool: ...


class GenerationLike(Protocol):
    """serving.generation.Generation: text pieces, then finish_reason and token counts."""

    @property
    def prompt_tokens(self) -> int: ...
    @property
    def completion_tokens(self) -> int: ...
    @property
    def finish_reason(self) -> str | None: ...

    def __aiter__(self) -> AsyncIterator[str]: ...

    async def aclose(self) -> None: ...


class EngineLike(Protocol):
    """serving.engine.TaskEngine as the API uses it."""

    tokenizer: Any

    async def score(self, texts: Sequence[str], version: str | None) -> Sequence[ScoreResultLike]:
        ...

    def generate(
        self, prompt_ids: Sequence[int], *, max_tokens: int, temperature: float = 0.0,
        stop: Sequence[str] = (), version: str | None, seed: int | None = None,
    ) -> GenerationLike: ...


class LeaseLike(Protocol):
    """A version pinned for one request: it stays loaded until the lease is left."""

    @property
    def task(self) -> str: ...
    @property
    def version(self) -> str | None: ...
    @property
    def engine(self) -> EngineLike: ...


class SwapOutcomeLike(Protocol):
    """serving.registry_types.SwapOutcome: what an operator action did."""

    @property
    def status(self) -> str: ...
    @property
    def version(self) -> str | None: ...
    @property
    def reason(self) -> str: ...


class TaskViewLike(Protocol):
    """serving.registry_types.TaskView: what a task serves on this node."""

    @property
    def active(self) -> str | None: ...
    @property
    def previous(self) -> str | None: ...


class RegistryLike(Protocol):
    """serving.registry.AdapterRegistry as the API uses it. Versions: None or "base" is the
    base model; pin/unpin/rollback act on this node only."""

    @property
    def tasks(self) -> Mapping[str, TaskConfig]: ...

    def lease(
        self, task: str, version: str | None = None
    ) -> AbstractAsyncContextManager[LeaseLike]: ...

    def active_versions(self) -> Mapping[str, str | None]: ...

    def view(self, task: str) -> TaskViewLike: ...

    async def pin(self, task: str, version: str | None, actor: str) -> SwapOutcomeLike: ...

    async def unpin(self, task: str, actor: str) -> SwapOutcomeLike: ...

    async def rollback(self, task: str, to_version: str | None, actor: str) -> SwapOutcomeLike:
        ...


class ContextStoreLike(Protocol):
    """serving.contexts.ContextStore."""

    async def put(self, request_id: str, context: ServedContext, ttl_s: int) -> ServedContext:
        ...

    async def get(self, request_id: str) -> ServedContext | None: ...

    async def claim(
        self, request_id: str, kind: str, annotator: str | None, payload_sha256: str
    ) -> Claim: ...

    async def complete(
        self, request_id: str, kind: str, annotator: str | None, payload_sha256: str,
        response: dict[str, Any], ttl_s: int,
    ) -> None: ...

    async def release(
        self, request_id: str, kind: str, annotator: str | None, payload_sha256: str
    ) -> None: ...

    async def ping(self) -> str: ...


class SearcherLike(Protocol):
    """lorafeed.retrieval.Retriever (blocking: the API calls it in a worker thread)."""

    def search(
        self, query: str, *, top_k: int | None = None, filter: FilterSpec | None = None,
        mode: Mode | None = None,
    ) -> list[Hit]: ...


def utc_now() -> datetime:
    return datetime.now(UTC)


def new_request_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True)
class ServingDeps:
    """Everything `create_app` wires. ``retriever`` None: chat answers ungrounded and /v1/search
    answers 503; ``rate_limiter`` None: no per-key limit; ``ready_checks`` each return "" when
    healthy, else what is wrong (for /readyz; the context store's ping is always checked)."""

    settings: ServingSettings
    registry: RegistryLike
    contexts: ContextStoreLike
    feedback_publisher: EventPublisher
    audit_publisher: EventPublisher
    pseudonymizer: Pseudonymizer
    retriever: SearcherLike | None = None
    rate_limiter: RateLimiter | None = None
    metrics: ServingMetrics = field(default_factory=ServingMetrics)
    topic_prefix: str = ""
    clock: Callable[[], datetime] = utc_now
    new_id: Callable[[], str] = new_request_id
    ready_checks: Sequence[Callable[[], Awaitable[str]]] = ()
