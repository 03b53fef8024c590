"""Prometheus metrics of the learner, in its own registry: versions written per gate decision and
the last update's size and duration (fed by the coordinator's ``on_result``), the scheduler tick
duration, and, read at scrape time, pending examples per task and each task's champion.

Labels carry task names, versions and decisions only (no example content, no PII). The
dashboard (``lorafeed dashboard``) and Prometheus read ``/metrics`` at ``LEARNER_METRICS_PORT``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import start_http_server
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from learner.cycle import CycleResult
    from lorafeed.adapter_store import AdapterStore

log = logging.getLogger(__name__)
T = TypeVar("T")
PendingStats = Callable[[str], tuple[int, float | None]]
"""task -> (pending trainable examples, epoch seconds of the oldest or None)."""
BASE_VERSION = "base"
TICK_BUCKETS = (0.01, 0.05, 0.25, 1, 5, 15, 60, 180, 600, 1800, 3600)


class _StateCollector(Collector):
    """Reads the pending store and the adapter store when Prometheus scrapes."""

    def __init__(
        self,
        tasks: Sequence[str],
        pending_stats: PendingStats,
        store: AdapterStore,
        clock: Callable[[], float],
    ) -> None:
        self.tasks, self.pending_stats, self.store, self.clock = tasks, pending_stats, store, clock
        self.errors = 0

    def describe(self) -> list[Metric]:
        return []  # registering must not read the stores (auto_describe would collect)

    def collect(self) -> Iterator[Metric]:
        pending = GaugeMetricFamily(
            "lorafeed_learner_pending_examples",
            "Trainable examples waiting for the task's next update",
            labels=["task"],
        )
        oldest = GaugeMetricFamily(
            "lorafeed_learner_oldest_pending_seconds",
            "Age of the task's oldest pending example (0 when none is pending)",
            labels=["task"],
        )
        champion = GaugeMetricFamily(
            "lorafeed_learner_champion",
            "1 for each task's champion version in the adapter store ('base': none)",
            labels=["task", "version"],
        )
        stored = GaugeMetricFamily(
            "lorafeed_learner_stored_versions",
            "Versions in the adapter store by gate decision",
            labels=["task", "decision"],
        )
        for task in self.tasks:
            try:
                count, since = self.pending_stats(task)
                current = self.store.champion(task)
                promoted = rejected = 0
                for version in self.store.versions(task):
                    decision = self.store.read_manifest(task, version).gate.promoted
                    promoted, rejected = promoted + decision, rejected + (not decision)
            except Exception as exc:  # a scrape must never fail because one store hiccups
                self.errors += 1
                log.warning("learner metrics: cannot read the state of %s: %s", task, exc)
                continue
            pending.add_metric([task], count)
            oldest.add_metric([task], 0.0 if since is None else max(0.0, self.clock() - since))
            champion.add_metric([task, BASE_VERSION if current is None else current.version], 1)
            stored.add_metric([task, "promoted"], promoted)
            stored.add_metric([task, "rejected"], rejected)
        errors = CounterMetricFamily(
            "lorafeed_learner_state_read_errors",
            "Scrapes that could not read a task's pending count or adapter store",
        )
        errors.add_metric([], self.errors)
        yield from (pending, oldest, champion, stored, errors)


class LearnerMetrics:
    """The learner's metrics; ``on_result`` and ``timed`` plug into the coordinator and the
    scheduler, ``serve`` exposes them."""

    def __init__(
        self,
        tasks: Sequence[str],
        pending_stats: PendingStats,
        store: AdapterStore,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.updates = Counter(
            "lorafeed_learner_updates",
            "Versions this learner wrote, by gate decision (promoted or rejected)",
            ["task", "decision"],
            registry=self.registry,
        )
        self.last_seconds = Gauge(
            "lorafeed_learner_last_update_seconds",
            "Training time of the task's last update",
            ["task"],
            registry=self.registry,
        )
        self.last_examples = Gauge(
            "lorafeed_learner_last_update_examples",
            "Examples trained in the task's last update",
            ["task"],
            registry=self.registry,
        )
        self.last_at = Gauge(
            "lorafeed_learner_last_update_timestamp_seconds",
            "When the task's last update finished (epoch seconds)",
            ["task"],
            registry=self.registry,
        )
        self.tick_seconds = Histogram(
            "lorafeed_learner_tick_seconds",
            "Duration of one scheduler tick (includes any update it ran)",
            buckets=TICK_BUCKETS,
            registry=self.registry,
        )
        self._clock = clock
        self.registry.register(_StateCollector(sorted(tasks), pending_stats, store, clock))

    def on_result(self, result: CycleResult) -> None:
        """Coordinator hook: one update wrote ``result.version``."""
        decision = "promoted" if result.promoted else "rejected"
        self.updates.labels(task=result.task, decision=decision).inc()
        self.last_seconds.labels(task=result.task).set(result.seconds)
        self.last_examples.labels(task=result.task).set(result.examples)
        self.last_at.labels(task=result.task).set(self._clock())

    def timed(self, tick: Callable[[], T]) -> Callable[[], T]:
        """``tick`` wrapped to observe its duration (also when it raises)."""

        def run() -> T:
            with self.tick_seconds.time():
                return tick()

        return run

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def serve(self, host: str, port: int) -> int:
        """Start ``/metrics`` on a daemon thread; returns the bound port (``port`` 0 picks one)."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        return int(server.server_port)
