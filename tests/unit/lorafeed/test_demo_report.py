"""The demo's results, summary tables and HTML report, rendered from hand-built numbers."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from pathlib import Path
from xml.etree import ElementTree

import pytest
from rich.console import Console

from lorafeed.demo_eval import answer_f1, gate_likelihood
from lorafeed.demo_results import (
    DemoResults,
    EvalMatrix,
    FeedbackResult,
    IngestResult,
    VersionResult,
    gate_summary,
    percentile,
    retention_rows,
)
from lorafeed.demo_summary import summary_tables
from lorafeed.report import render_report, write_report
from lorafeed.report_svg import bar_chart, heat_map

GATE = {"target.candidate": 0.95, "target.champion": 0.35, "target.lower_bound": 0.4,
        "probe.probe_accuracy.candidate": 0.9, "probe.probe_accuracy.champion": 0.5,
        "probe.probe_accuracy.regression": -0.4}


def results() -> DemoResults:
    versions = (
        VersionResult("fraud", "1.0.0", None, True, "promoted: accuracy 0.95 vs 0.35", GATE, 41,
                      99.0, 41, {"node-1": 0.3, "node-2": 0.4}),
        VersionResult("fraud", "1.0.1", "1.0.0", False, "rejected: <script>", {}, 30, 50.0, 30),
    )
    matrix = EvalMatrix("fraud", "accuracy", ("gift-card runs", "takeovers"),
                        ("base", "1.0.0", "1.0.1 (rejected)"),
                        ((0.5, 0.5), (0.95, 0.6), (0.9, 0.97)))
    return DemoResults(
        scenario="full", wall_seconds=600.0,
        ingest=IngestResult(100, 3, 90, 8, 180, {"not_json": 1}, {"email": 14}, 14.0),
        questions=26, grounded=25, scored_http=64, streamed_scored=56,
        feedback=FeedbackResult(13, 3, 2, 120, 6, 6, 6), versions=versions, matrices=(matrix,),
        latencies={"/v1/score": (0.1, 0.2, 0.3), "/v1/chat/completions": (4.0, 6.0)},
        samples=(("How <b>?", "Qilin Support: & more", "kb-1"),), nodes=("node-1", "node-2"),
        step_seconds={"knowledge": 20.0},
    )


def test_percentile_interpolates_and_handles_no_values() -> None:
    assert percentile([3.0, 1.0, 2.0], 0.5) == 2.0
    assert percentile([0.0, 10.0], 0.95) == pytest.approx(9.5)
    assert math.isnan(percentile([], 0.5))


def test_matrix_before_after_and_forgetting_over_versions_only() -> None:
    matrix = results().matrices[0]
    assert matrix.before_after() == [("gift-card runs", 0.5, 0.9), ("takeovers", 0.5, 0.97)]
    forgot = dict(matrix.forgetting())
    assert forgot["gift-card runs"] == pytest.approx(0.05)  # 1.0.0 knew more than 1.0.1
    assert forgot["takeovers"] == pytest.approx(-0.37)
    one_version = EvalMatrix("t", "m", ("a",), ("base", "1.0.0"), ((0.1,), (0.9,)))
    assert one_version.forgetting() == []
    with pytest.raises(ValueError, match="is not 2 x 1"):
        EvalMatrix("t", "m", ("a",), ("base", "1.0.0"), ((0.1,),))


def test_gate_summary_and_retention_rows_read_the_gate_numbers() -> None:
    assert gate_summary(GATE) == [("target", 0.95, 0.35), ("probe.probe_accuracy", 0.9, 0.5)]
    assert retention_rows(results().versions) == [
        ("fraud@1.0.0", "probe.probe_accuracy", "-0.4000", -0.4)]


def test_answer_f1() -> None:
    assert answer_f1("Refunds take 7 days", "refunds take 7 days") == 1.0
    assert answer_f1("nothing alike", "refunds take 7 days") == 0.0
    assert answer_f1("refunds take", "refunds take 7 days") == pytest.approx(2 / 3)


def test_summary_tables_show_every_number() -> None:
    console = Console(width=200, record=True)
    for table in summary_tables(results()):
        console.print(table)
    text = console.export_text()
    for expected in ("100 (+3)", "90 / 180", "64 + 56", "13 / 3 / 2", "120 (6, 6)",
                     "fraud@1.0.0", "promoted", "rejected", "0.50 -> 0.90", "0.50 -> 0.97",
                     "-0.4000", "10.0 min", "node-1 0.3"):
        assert expected in text, expected


def test_report_is_one_offline_page_with_charts_and_escaped_text(tmp_path: Path) -> None:
    page = render_report(results(), generated_at=datetime(2026, 1, 2, 3, 4, tzinfo=UTC))
    assert page.startswith("<!doctype html>") and "2026-01-02 03:04 UTC" in page
    assert "<script" not in page and "http://" not in page.replace(
        'xmlns="http://www.w3.org/2000/svg"', "")
    assert "&lt;script&gt;" in page and "How &lt;b&gt;?" in page
    svgs = re.findall(r"<svg .*?</svg>", page, flags=re.S)
    assert len(svgs) >= 4  # metrics per version, forgetting matrix, gate, latency
    for svg in svgs:
        ElementTree.fromstring(svg)  # well-formed
    assert "Forgetting matrix" in page and "1.0.1 (rejected)" in page
    path = write_report(results(), tmp_path / "out" / "report.html")
    assert path.read_text(encoding="utf-8").count("<svg") == len(svgs)


def test_charts_refuse_ragged_values_and_draw_negative_bars_below_zero() -> None:
    svg = bar_chart("t", ["a", "b"], ["x"], [[1.0], [-1.0]])
    bars = re.findall(r'<rect x="[\d.]+" y="([\d.]+)" width="[\d.]+" height="([\d.]+)" '
                      r'fill="[^"]+"><title>', svg)
    assert len(bars) == 2 and float(bars[1][0]) > float(bars[0][0])
    assert "<title>b / x: -1</title>" in svg
    with pytest.raises(ValueError, match="2 x 1"):
        bar_chart("t", ["a", "b"], ["x"], [[1.0]])
    with pytest.raises(ValueError, match="1 x 2"):
        heat_map("h", ["r"], ["c1", "c2"], [[0.5]])
    cells = heat_map("h", ["r"], ["c"], [[float("nan")]])
    assert "n/a" in cells and "#dddddd" in cells
    # columns are coloured on their own scale: [0, 1] for shares, min..max otherwise
    mixed = heat_map("h", ["a", "b"], ["share", "log-likelihood"], [[1.0, -3.0], [0.0, -2.0]])
    fills = re.findall(r'fill="(rgb\([^)]*\))"', mixed)
    assert fills == ["rgb(110,220,120)", "rgb(230,110,120)", "rgb(230,110,120)",
                     "rgb(110,220,120)"]


def test_gate_likelihood_reads_base_and_versions_from_the_gates() -> None:
    first = VersionResult("support", "1.0.0", None, True, "", {"target.champion": -3.0,
                                                              "target.candidate": -2.0}, 1, 1, 1)
    second = VersionResult("support", "1.0.1", "1.0.0", False, "", {}, 1, 1, 1)
    values = gate_likelihood([first, second])
    assert values[:2] == [-3.0, -2.0] and math.isnan(values[2])
    assert math.isnan(gate_likelihood([])[0])
