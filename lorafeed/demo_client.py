"""The demo's app: the HTTP calls any application makes to serving nodes (chat with retrieval,
scoring, feedback, model list), with the latency of every call recorded per endpoint."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

T = TypeVar("T")
R = TypeVar("R")


class AppError(RuntimeError):
    """A serving node answered a call the demo expected to succeed with an error."""


@dataclass(frozen=True)
class ChatAnswer:
    node: str
    request_id: str
    text: str
    version: str | None
    passage_ids: tuple[str, ...]
    seconds: float


@dataclass(frozen=True)
class Score:
    node: str
    request_id: str
    label: str
    probabilities: dict[str, float]
    version: str | None
    seconds: float


class AppClient:
    """Calls serving nodes with an app key; `latencies[endpoint]` lists seconds per call."""

    def __init__(self, node_urls: dict[str, str], app_key: str, timeout_s: float = 180.0) -> None:
        self.node_urls = dict(node_urls)
        self._client = httpx.Client(headers={"Authorization": f"Bearer {app_key}"},
                                    timeout=timeout_s)
        self.latencies: dict[str, list[float]] = defaultdict(list)
        self.status_counts: dict[int, int] = defaultdict(int)
        self._lock = threading.Lock()

    def close(self) -> None:
        self._client.close()

    def chat(self, node: str, question: str, *, model: str = "support", max_tokens: int = 32,
             retrieval: bool = True) -> ChatAnswer:
        body = {"model": model, "messages": [{"role": "user", "content": question}],
                "max_tokens": max_tokens, "temperature": 0,
                "lorafeed": {"retrieval": retrieval}}
        data, seconds = self._post(node, "/v1/chat/completions", body)
        ext = data["lorafeed"]
        return ChatAnswer(node, ext["request_id"], data["choices"][0]["message"]["content"],
                          ext["adapter_version"], tuple(ext["passage_ids"]), seconds)

    def score(self, node: str, task: str, fields: dict[str, Any]) -> Score:
        data, seconds = self._post(node, "/v1/score", {"task": task, "fields": fields})
        return Score(node, data["request_id"], data["label"], data["probabilities"],
                     data["adapter_version"], seconds)

    def feedback(self, node: str, body: dict[str, Any], *, expect_ok: bool = True) -> int:
        """POST /v1/feedback; the status code (AppError on an unexpected refusal)."""
        return int(self._post(node, "/v1/feedback", body, expect_ok=expect_ok)[0]["status_code"])

    def active_versions(self, node: str) -> dict[str, str | None]:
        """Task -> version this node serves now (GET /v1/models)."""
        response = self._client.get(f"{self.node_urls[node]}/v1/models")
        response.raise_for_status()
        found: dict[str, str | None] = {}
        for model in response.json()["data"]:
            meta = model.get("lorafeed") or {}
            if "@" not in model["id"]:
                found[model["id"]] = meta.get("active_version")
        return found

    def _post(self, node: str, path: str, body: dict[str, Any], *,
              expect_ok: bool = True) -> tuple[dict[str, Any], float]:
        began = time.perf_counter()
        response = self._client.post(f"{self.node_urls[node]}{path}", json=body)
        seconds = time.perf_counter() - began
        with self._lock:
            self.latencies[path].append(seconds)
            self.status_counts[response.status_code] += 1
        if expect_ok and response.status_code >= 300:
            raise AppError(f"{node} {path} answered {response.status_code}: {response.text[:300]}")
        data = response.json() if response.content else {}
        if not isinstance(data, dict):
            data = {"body": data}
        data.setdefault("status_code", response.status_code)
        return data, seconds


def fan_out(items: Sequence[T], work: Callable[[int, T], R], concurrency: int,
            advance: Callable[[], None] = lambda: None) -> list[R]:
    """`work(index, item)` for every item on `concurrency` threads, results in item order."""
    results: dict[int, R] = {}

    def run(pair: tuple[int, T]) -> None:
        results[pair[0]] = work(*pair)
        advance()

    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        list(pool.map(run, enumerate(items)))
    return [results[i] for i in range(len(items))]


def round_robin(nodes: Iterable[str], count: int) -> list[str]:
    names = list(nodes)
    return [names[i % len(names)] for i in range(count)]
