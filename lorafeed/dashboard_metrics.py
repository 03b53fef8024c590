"""Reading Prometheus text exposition for the dashboard: samples by name and labels, sums, and
quantiles of cumulative histograms (linear interpolation inside a bucket, like PromQL's
``histogram_quantile``). Pure functions over the scraped text."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families


class MetricsParseError(ValueError):
    """A /metrics body is not Prometheus text exposition."""


@dataclass(frozen=True)
class Sample:
    """One sample line: its full name (``_total``, ``_bucket`` suffixes kept), labels, value."""

    name: str
    labels: Mapping[str, str]
    value: float


LabelFilter = Callable[[Mapping[str, str]], bool]


def parse_samples(text: str) -> list[Sample]:
    """Every sample of a Prometheus text body; MetricsParseError naming the problem."""
    try:
        return [
            Sample(s.name, dict(s.labels), float(s.value))
            for family in text_string_to_metric_families(text)
            for s in family.samples
        ]
    except (ValueError, TypeError, IndexError) as exc:
        raise MetricsParseError(f"not Prometheus text exposition: {exc}") from exc


def _wanted(sample: Sample, name: str, where: LabelFilter | None) -> bool:
    return sample.name == name and (where is None or where(sample.labels))


def total(samples: Iterable[Sample], name: str, where: LabelFilter | None = None) -> float | None:
    """Sum of the samples called ``name`` (passing ``where``); None when there is none."""
    values = [s.value for s in samples if _wanted(s, name, where)]
    return math.fsum(values) if values else None


def by_label(
    samples: Iterable[Sample], name: str, label: str, where: LabelFilter | None = None
) -> dict[str, float]:
    """Samples called ``name`` summed per value of ``label`` (samples without it are skipped)."""
    sums: dict[str, float] = {}
    for s in samples:
        if _wanted(s, name, where) and label in s.labels:
            sums[s.labels[label]] = sums.get(s.labels[label], 0.0) + s.value
    return sums


def buckets(
    samples: Iterable[Sample], histogram: str, where: LabelFilter | None = None
) -> dict[float, float]:
    """Cumulative counts per upper bound of ``histogram`` (``le``), summed over label sets."""
    counts: dict[float, float] = {}
    for s in samples:
        if _wanted(s, f"{histogram}_bucket", where) and "le" in s.labels:
            bound = float(s.labels["le"])
            counts[bound] = counts.get(bound, 0.0) + s.value
    return counts


def bucket_delta(new: Mapping[float, float], old: Mapping[float, float]) -> dict[float, float]:
    """Observations between two scrapes of one histogram; a counter reset gives ``new``."""
    delta = {bound: count - old.get(bound, 0.0) for bound, count in new.items()}
    return dict(new) if any(v < 0 for v in delta.values()) else delta


def quantile(q: float, cumulative: Mapping[float, float]) -> float | None:
    """The ``q`` quantile (0..1) of a cumulative histogram; None without observations. A rank
    in the +Inf bucket answers the largest finite bound."""
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile {q!r} is outside 0..1")
    bounds = sorted(cumulative)
    if not bounds or cumulative[bounds[-1]] <= 0:
        return None
    rank = q * cumulative[bounds[-1]]
    lower_bound, lower_count = 0.0, 0.0
    for bound in bounds:
        count = cumulative[bound]
        if count >= rank and count > lower_count:
            if math.isinf(bound):
                return lower_bound
            share = (rank - lower_count) / (count - lower_count)
            return lower_bound + (bound - lower_bound) * share
        if not math.isinf(bound):
            lower_bound = bound
        lower_count = count
    return lower_bound
