"""What the dashboard collects in one refresh (a `Snapshot`, filled by `dashboard_sources`) and
the bounded `History` of past refreshes that rates and sparklines are computed from.

Plain frozen data and one pure reducer (`History.push`); no I/O here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from lorafeed.dashboard_metrics import Sample, bucket_delta, buckets

LATENCY_METRIC = "lorafeed_serving_request_seconds"
# Probes and scrapes are not what apps experience: left out of request latency.
_NOT_APP_ENDPOINTS = frozenset({"/metrics", "/healthz", "/readyz", "unmatched"})


def is_app_request(labels: Mapping[str, str]) -> bool:
    """A serving request an app made (not a health probe or a metrics scrape)."""
    return labels.get("endpoint", "") not in _NOT_APP_ENDPOINTS


@dataclass(frozen=True)
class GroupLag:
    """A consumer group's position on one topic, summed over partitions. ``end`` is the true
    log end (read from the tail, not the broker's watermark: PLATFORM.md)."""

    group: str
    topic: str
    committed: int
    end: int

    @property
    def lag(self) -> int:
        return max(0, self.end - self.committed)


@dataclass(frozen=True)
class Scrape:
    """One ``/metrics`` (and for nodes ``/healthz``) read: samples, or the error."""

    url: str
    samples: tuple[Sample, ...] = ()
    error: str | None = None
    node_id: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class VersionRow:
    """One adapter version from its manifest: parent, gate verdict and numbers, metrics."""

    version: str
    parent: str | None
    created_at: float
    promoted: bool
    reason: str
    metrics: Mapping[str, float] = field(default_factory=dict)
    gate_numbers: Mapping[str, float] = field(default_factory=dict)
    lineage_ids: int = 0


@dataclass(frozen=True)
class TaskVersions:
    """A task's versions, oldest first, its champion and pin (None: base model / no pin)."""

    task: str
    versions: tuple[VersionRow, ...]
    champion: str | None
    pinned: bool = False
    pin_version: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class ModelEventRow:
    """A model event as the dashboard lists it."""

    at: float
    type: str
    task: str
    version: str | None
    node: str | None = None
    detail: str = ""


@dataclass(frozen=True)
class Snapshot:
    """Everything one refresh saw. ``ends``: topic -> true end offset summed over partitions;
    ``rejected``: dead-letter topic -> reason -> count; ``errors``: source -> message."""

    taken_at: float
    ends: Mapping[str, int] = field(default_factory=dict)
    lags: tuple[GroupLag, ...] = ()
    rejected: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    nodes: tuple[Scrape, ...] = ()
    streams: tuple[Scrape, ...] = ()
    learners: tuple[Scrape, ...] = ()
    tasks: tuple[TaskVersions, ...] = ()
    events: tuple[ModelEventRow, ...] = ()
    errors: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Point:
    """The numbers of one past refresh that trends need (small: kept for `History.size`)."""

    at: float
    ends: Mapping[str, int]
    latency: Mapping[str, Mapping[float, float]]  # node url -> cumulative buckets


@dataclass(frozen=True)
class History:
    """The last ``size`` refreshes, oldest first."""

    size: int = 120
    points: tuple[Point, ...] = ()

    def __post_init__(self) -> None:
        if self.size < 2:
            raise ValueError(f"history size must be at least 2 (for rates), got {self.size}")

    def push(self, snapshot: Snapshot) -> History:
        """This history with ``snapshot``'s numbers appended (the oldest dropped past ``size``)."""
        latency = {
            node.url: buckets(node.samples, LATENCY_METRIC, is_app_request)
            for node in snapshot.nodes
            if node.ok
        }
        point = Point(snapshot.taken_at, dict(snapshot.ends), latency)
        return replace(self, points=(*self.points, point)[-self.size :])

    def rates(self, topic: str) -> list[float | None]:
        """Messages per second on ``topic`` between consecutive refreshes (None: unknown)."""
        out: list[float | None] = []
        for old, new in zip(self.points, self.points[1:], strict=False):
            seconds = new.at - old.at
            if topic in old.ends and topic in new.ends and seconds > 0:
                out.append(max(0, new.ends[topic] - old.ends[topic]) / seconds)
            else:
                out.append(None)
        return out

    def latency_deltas(self, node: str) -> list[Mapping[float, float] | None]:
        """The node's latency histogram observations between consecutive refreshes."""
        out: list[Mapping[float, float] | None] = []
        for old, new in zip(self.points, self.points[1:], strict=False):
            if node in old.latency and node in new.latency:
                out.append(bucket_delta(new.latency[node], old.latency[node]))
            else:
                out.append(None)
        return out
