"""Prometheus metrics of one serving app in its own CollectorRegistry: requests per endpoint, task
and status (ASGI middleware), swaps and load failures (as the registry's RegistryObserver), and
the active version per task, read from the registry at scrape time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

NO_TASK = "-"
BASE_VERSION = "base"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
ActiveVersions = Callable[[], Mapping[str, str | None]]


class _ActiveVersionCollector(Collector):
    def __init__(self, active: ActiveVersions) -> None:
        self.active = active

    def collect(self) -> Iterator[Metric]:
        gauge = GaugeMetricFamily(
            "lorafeed_serving_active_adapter",
            "1 for the adapter version each task answers with on this node ('base': none)",
            labels=["task", "version"],
        )
        for task, version in sorted(self.active().items()):
            gauge.add_metric([task, version or BASE_VERSION], 1.0)
        yield gauge


class ServingMetrics:
    """The app's metrics. Create one per app, before the registry, whose observer it is."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        labels = ["endpoint", "task", "status"]
        self.requests = Counter(
            "lorafeed_serving_requests", "HTTP requests answered", labels, registry=self.registry
        )
        self.latency = Histogram(
            "lorafeed_serving_request_seconds", "HTTP request duration (streams: until the end)",
            labels, buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.swaps = Counter(
            "lorafeed_serving_adapter_swaps", "Adapter versions activated (swaps, pins, rollbacks)",
            ["task"], registry=self.registry,
        )
        self.load_failures = Counter(
            "lorafeed_serving_adapter_load_failures", "Adapter versions refused on load",
            ["task"], registry=self.registry,
        )
        self.queue_full = Counter(
            "lorafeed_serving_queue_full", "Requests refused with 503 because a queue was full",
            ["queue"], registry=self.registry,
        )
        self.retrieval_failures = Counter(
            "lorafeed_serving_retrieval_failures",
            "Chat requests answered without passages because retrieval failed",
            registry=self.registry,
        )
        self._active: _ActiveVersionCollector | None = None

    def watch_active_versions(self, active: ActiveVersions) -> None:
        """Report ``active()`` (task -> version or None) as the active-version gauge."""
        if self._active is None:
            self._active = _ActiveVersionCollector(active)
            self.registry.register(self._active)
        else:
            self._active.active = active

    def adapter_activated(self, task: str, version: str | None) -> None:
        """RegistryObserver hook: ``task`` now serves ``version`` (a swap)."""
        self.swaps.labels(task=task).inc()

    def adapter_load_failed(self, task: str, version: str, reason: str) -> None:
        """RegistryObserver hook: loading ``version`` was refused."""
        self.load_failures.labels(task=task).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Counts and times every HTTP request; an exception escaping the app counts as 500.
    ``routes`` names requests refused before routing (401, 413, ...) by their route too."""

    def __init__(self, app: ASGIApp, *, metrics: ServingMetrics,
                 routes: Callable[[], Sequence[BaseRoute]] = tuple) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            endpoint = _endpoint(scope, self.routes())
            labels = {"endpoint": endpoint, "task": _task(scope), "status": str(status)}
            self.metrics.requests.labels(**labels).inc()
            self.metrics.latency.labels(**labels).observe(time.perf_counter() - started)


def _endpoint(scope: Scope, routes: Sequence[BaseRoute]) -> str:
    """The route template (bounded label values), or "unmatched"."""
    route: Any = scope.get("route")
    if route is None:
        route = next((r for r in routes if r.matches(scope)[0] == Match.FULL), None)
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


def _task(scope: Scope) -> str:
    task = scope.get("state", {}).get("task")
    return task if isinstance(task, str) else NO_TASK
