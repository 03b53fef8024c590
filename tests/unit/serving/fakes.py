"""In-memory stand-ins for the serving API's collaborators (registry, engine, context store,
publisher, rate limiter, retriever), for unit tests of the API's own logic only."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from lorafeed.privacy import Pseudonymizer
from lorafeed.retrieval import Hit
from lorafeed.tiny_models import tiny_tokenizer
from schemas.tasks import TaskConfig
from serving.contexts import (
    Claim,
    ServedContext,
    classify_claim,
    feedback_key,
    pseudonymize_context,
)
from serving.errors import UnknownTask, UnknownVersion
from serving.ratelimit import RateDecision, decide
from serving.settings import ApiKeyEntry, ServingSettings, hash_key

APP_KEY = "app-key-0123456789"
ADMIN_KEY = "admin-key-0123456789"
PII_KEY = b"0123456789abcdef0123456789abcdef"
NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)

CHAT = TaskConfig(name="support", kind="generation", base_model="tiny-llama")
FRAUD = TaskConfig(name="fraud", kind="classification", base_model="all-minilm-l6-v2",
                   labels=["fraud", "ok"], label_horizon_days=30)


def settings(**overrides: Any) -> ServingSettings:
    keys = [
        ApiKeyEntry(sha256=hash_key(APP_KEY), role="app", name="shop-app"),
        ApiKeyEntry(sha256=hash_key(ADMIN_KEY), role="admin", name="ops"),
    ]
    values: dict[str, Any] = {
        "node_id": "node-1",
        "api_keys": "[" + ",".join(k.model_dump_json() for k in keys) + "]",
        "request_timeout_s": 5.0,
    }
    values.update(overrides)
    return ServingSettings(**values)


@functools.cache
def tokenizer() -> Any:
    return tiny_tokenizer()


@dataclass(frozen=True)
class FakeScore:
    label: str
    probabilities: dict[str, float]
    low_margin: bool


class FakeGeneration:
    """Yields ``pieces``; finish_reason "length" if it ran out of max_tokens."""

    def __init__(self, pieces: Sequence[str], max_tokens: int, prompt_tokens: int,
                 fail: BaseException | None = None) -> None:
        self._pieces = list(pieces)[:max_tokens]
        self.length = len(pieces) > max_tokens
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = 0
        self.finish_reason: str | None = None
        self.closed = False
        self.fail = fail

    def __aiter__(self) -> AsyncIterator[str]:
        return self._run()

    async def _run(self) -> AsyncIterator[str]:
        for piece in self._pieces:
            if self.fail is not None:
                raise self.fail
            await asyncio.sleep(0)
            self.completion_tokens += 1
            yield piece
        self.finish_reason = "length" if self.length else "stop"

    async def aclose(self) -> None:
        self.closed = True


class FakeEngine:
    def __init__(self, task: TaskConfig) -> None:
        self.task = task
        self.tokenizer = tokenizer() if task.kind == "generation" else None
        self.pieces: list[str] = ["Refunds ", "take ", "five ", "days."]
        self.fail: BaseException | None = None
        self.delay_s = 0.0
        self.generations: list[FakeGeneration] = []
        self.calls: list[dict[str, Any]] = []

    async def score(self, texts: Sequence[str], version: str | None) -> list[FakeScore]:
        self.calls.append({"texts": list(texts), "version": version})
        await asyncio.sleep(self.delay_s)
        if self.fail is not None:
            raise self.fail
        return [FakeScore("fraud", {"fraud": 0.55, "ok": 0.45}, True) for _ in texts]

    def generate(self, prompt_ids: Sequence[int], *, max_tokens: int, temperature: float = 0.0,
                 stop: Sequence[str] = (), version: str | None,
                 seed: int | None = None) -> FakeGeneration:
        self.calls.append({"prompt_ids": list(prompt_ids), "max_tokens": max_tokens,
                           "temperature": temperature, "stop": list(stop), "version": version})
        generation = FakeGeneration(self.pieces, max_tokens, len(prompt_ids), self.fail)
        self.generations.append(generation)
        return generation


@dataclass(frozen=True)
class FakeLease:
    task: str
    version: str | None
    engine: FakeEngine


@dataclass(frozen=True)
class FakeOutcome:
    task: str
    status: str
    version: str | None
    reason: str = ""


@dataclass
class FakeView:
    active: str | None
    previous: str | None


class FakeRegistry:
    def __init__(self, tasks: Sequence[TaskConfig] = (CHAT, FRAUD)) -> None:
        self._tasks = {task.name: task for task in tasks}
        self.engines = {task.name: FakeEngine(task) for task in tasks}
        self.active: dict[str, str | None] = {task.name: "1.0.0" for task in tasks}
        self.previous: dict[str, str | None] = {task.name: None for task in tasks}
        self.versions = {"1.0.0", "0.9.0"}
        self.leased: list[tuple[str, str | None]] = []
        self.open_leases = 0
        self.ops: list[tuple[Any, ...]] = []

    @property
    def tasks(self) -> Mapping[str, TaskConfig]:
        return self._tasks

    def active_versions(self) -> dict[str, str | None]:
        return dict(self.active)

    def view(self, task: str) -> FakeView:
        return FakeView(self.active[task], self.previous[task])

    @asynccontextmanager
    async def lease(self, task: str, version: str | None = None) -> AsyncIterator[FakeLease]:
        if task not in self._tasks:
            raise UnknownTask(task, sorted(self._tasks))
        if version is not None and version != "base" and version not in self.versions:
            raise UnknownVersion(task, version, "not in the store")
        chosen = self.active[task] if version is None else (None if version == "base"
                                                            else version)
        self.leased.append((task, chosen))
        self.open_leases += 1
        try:
            yield FakeLease(task, chosen, self.engines[task])
        finally:
            self.open_leases -= 1

    async def pin(self, task: str, version: str | None, actor: str) -> FakeOutcome:
        self.ops.append(("pin", task, version, actor))
        self.previous[task], self.active[task] = self.active[task], version
        return FakeOutcome(task, "activated", version, f"pinned by {actor}")

    async def unpin(self, task: str, actor: str) -> FakeOutcome:
        self.ops.append(("unpin", task, actor))
        return FakeOutcome(task, "unchanged", self.active[task], "already active")

    async def rollback(self, task: str, to_version: str | None, actor: str) -> FakeOutcome:
        self.ops.append(("rollback", task, to_version, actor))
        self.previous[task], self.active[task] = self.active[task], to_version
        return FakeOutcome(task, "activated", to_version, f"pinned by {actor}")


class MemoryContexts:
    """ContextStore semantics in a dict (the Redis scripts are covered by integration tests)."""

    def __init__(self) -> None:
        self.pseudonymizer = Pseudonymizer(PII_KEY)
        self.contexts: dict[str, tuple[ServedContext, int]] = {}
        self.claims: dict[str, list[bytes | None]] = {}
        self.ttls: dict[str, int] = {}
        self.healthy = True

    async def put(self, request_id: str, context: ServedContext, ttl_s: int) -> ServedContext:
        stored = pseudonymize_context(context, self.pseudonymizer)
        self.contexts[request_id] = (stored, ttl_s)
        return stored

    async def get(self, request_id: str) -> ServedContext | None:
        found = self.contexts.get(request_id)
        return None if found is None else found[0]

    async def claim(self, request_id: str, kind: str, annotator: str | None,
                    payload_sha256: str) -> Claim:
        key = feedback_key(request_id, kind, annotator)
        existing = self.claims.get(key)
        if existing is None:
            self.claims[key] = [payload_sha256.encode(), b"pending", None]
        return classify_claim(existing, payload_sha256)

    async def complete(self, request_id: str, kind: str, annotator: str | None,
                       payload_sha256: str, response: dict[str, Any], ttl_s: int) -> None:
        import json

        key = feedback_key(request_id, kind, annotator)
        self.claims[key] = [payload_sha256.encode(), b"done", json.dumps(response).encode()]
        self.ttls[key] = ttl_s

    async def release(self, request_id: str, kind: str, annotator: str | None,
                      payload_sha256: str) -> None:
        key = feedback_key(request_id, kind, annotator)
        if self.claims.get(key, [None, None])[:2] == [payload_sha256.encode(), b"pending"]:
            del self.claims[key]

    async def ping(self) -> str:
        return "" if self.healthy else "redis: connection refused"


@dataclass
class FakePublisher:
    sent: list[tuple[str, str, bytes]] = field(default_factory=list)
    fail: BaseException | None = None

    async def publish(self, topic: str, key: str, value: bytes) -> None:
        if self.fail is not None:
            raise self.fail
        self.sent.append((topic, key, value))


@dataclass
class FakeLimiter:
    limit: int
    counts: dict[str, int] = field(default_factory=dict)

    async def hit(self, name: str) -> RateDecision:
        self.counts[name] = self.counts.get(name, 0) + 1
        return decide(self.counts[name], 30_000, self.limit, 60_000)


@dataclass
class FakeRetriever:
    hits: list[Hit] = field(default_factory=list)
    queries: list[tuple[str, Any]] = field(default_factory=list)
    fail: BaseException | None = None

    def search(self, query: str, *, top_k: int | None = None, filter: Any = None,
               mode: Any = None) -> list[Hit]:
        self.queries.append((query, filter))
        if self.fail is not None:
            raise self.fail
        return self.hits[: top_k or len(self.hits)]


def hit(pk: str, text: str) -> Hit:
    return Hit(pk=pk, record_id=pk.split("#")[0], chunk_index=0, text=text, source="kb",
               score=1.0, metadata={}, start_char=0, end_char=len(text))
