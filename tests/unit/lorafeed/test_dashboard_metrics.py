"""Reading Prometheus text for the dashboard: samples, sums, histogram quantiles with known
answers, counter resets."""

from __future__ import annotations

import math

import pytest

from lorafeed.dashboard_metrics import (
    MetricsParseError,
    bucket_delta,
    buckets,
    by_label,
    parse_samples,
    quantile,
    total,
)

TEXT = """\
# HELP lorafeed_streams_records_dlq_total Records sent to records.dlq
# TYPE lorafeed_streams_records_dlq_total counter
lorafeed_streams_records_dlq_total{reason="not_json"} 3.0
lorafeed_streams_records_dlq_total{reason="quality_too_short"} 2.0
# HELP lat Request duration
# TYPE lat histogram
lat_bucket{endpoint="/v1/score",le="0.1"} 50.0
lat_bucket{endpoint="/v1/score",le="0.5"} 100.0
lat_bucket{endpoint="/v1/score",le="+Inf"} 100.0
lat_bucket{endpoint="/metrics",le="0.1"} 7.0
lat_bucket{endpoint="/metrics",le="0.5"} 7.0
lat_bucket{endpoint="/metrics",le="+Inf"} 7.0
lat_count{endpoint="/v1/score"} 100.0
lat_sum{endpoint="/v1/score"} 12.0
"""


def test_samples_sum_and_group_by_label() -> None:
    samples = parse_samples(TEXT)
    assert total(samples, "lorafeed_streams_records_dlq_total") == 5.0
    assert by_label(samples, "lorafeed_streams_records_dlq_total", "reason") == {
        "not_json": 3.0, "quality_too_short": 2.0}
    assert total(samples, "absent_total") is None


def test_buckets_filter_labels_and_sum_label_sets() -> None:
    samples = parse_samples(TEXT)
    score_only = buckets(samples, "lat", lambda labels: labels["endpoint"] == "/v1/score")
    assert score_only == {0.1: 50.0, 0.5: 100.0, math.inf: 100.0}
    assert buckets(samples, "lat")[0.1] == 57.0


def test_quantile_interpolates_inside_the_bucket() -> None:
    cumulative = {0.1: 50.0, 0.5: 100.0, math.inf: 100.0}
    assert quantile(0.5, cumulative) == pytest.approx(0.1)
    assert quantile(0.75, cumulative) == pytest.approx(0.3)  # halfway through 0.1..0.5
    assert quantile(0.25, cumulative) == pytest.approx(0.05)  # the first bucket starts at 0


def test_quantile_in_the_inf_bucket_answers_the_largest_finite_bound() -> None:
    assert quantile(0.99, {0.1: 10.0, 1.0: 50.0, math.inf: 100.0}) == 1.0


def test_quantile_without_observations_is_none_and_bad_q_is_refused() -> None:
    assert quantile(0.5, {}) is None
    assert quantile(0.5, {0.1: 0.0, math.inf: 0.0}) is None
    with pytest.raises(ValueError, match="1.5"):
        quantile(1.5, {0.1: 1.0})


def test_bucket_delta_and_counter_reset() -> None:
    old = {0.1: 10.0, math.inf: 20.0}
    assert bucket_delta({0.1: 15.0, math.inf: 30.0}, old) == {0.1: 5.0, math.inf: 10.0}
    restarted = {0.1: 1.0, math.inf: 2.0}  # the process restarted: counters began again
    assert bucket_delta(restarted, old) == restarted


def test_not_prometheus_text_is_a_clear_error() -> None:
    with pytest.raises(MetricsParseError, match="not Prometheus text"):
        parse_samples('metric{label="unterminated} 1\n')
