"""Small inline SVG charts rendered on the server (the page needs no chart library and no
network): a sparkline for a series with gaps, and a per-task version timeline."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

PROMOTED, REJECTED, AXIS = "#2e7d32", "#c62828", "#9e9e9e"


def _fmt(x: float) -> str:
    return f"{x:.1f}".rstrip("0").rstrip(".")


def sparkline(
    values: Sequence[float | None], *, width: int = 160, height: int = 32, label: str = ""
) -> str:
    """A polyline of ``values`` (None breaks the line) scaled to 0..max; empty series give an
    empty frame. ``label`` becomes the accessible title."""
    if width < 10 or height < 10:
        raise ValueError(f"sparkline size {width}x{height} is too small (at least 10x10)")
    known = [v for v in values if v is not None and math.isfinite(v)]
    top = max(known, default=0.0) or 1.0
    step = (width - 2) / max(1, len(values) - 1)
    runs: list[list[str]] = [[]]
    for i, value in enumerate(values):
        if value is None or not math.isfinite(value):
            runs.append([])
            continue
        x = 1 + i * step
        y = height - 1 - (height - 2) * max(0.0, value) / top
        runs[-1].append(f"{_fmt(x)},{_fmt(y)}")
    lines = "".join(
        f'<polyline points="{" ".join(run)}" fill="none" stroke="#1565c0" stroke-width="1.5"/>'
        if len(run) > 1
        else f'<circle cx="{run[0].split(",")[0]}" cy="{run[0].split(",")[1]}" r="1.5" '
        'fill="#1565c0"/>'
        for run in runs
        if run
    )
    return (
        f'<svg class="spark" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img"><title>{escape(label)}</title>'
        f'<line x1="0" y1="{height - 0.5}" x2="{width}" y2="{height - 0.5}" stroke="{AXIS}"/>'
        f"{lines}</svg>"
    )


def _tooltip(v: Mapping[str, Any]) -> str:
    numbers = ", ".join(f"{k}={float(x):.4g}" for k, x in sorted(v.get("gate", {}).items()))
    verdict = "promoted" if v["promoted"] else "rejected"
    return f"{v['version']} ({verdict}, {v['created_at']}): {v['reason']}" + (
        f" [{numbers}]" if numbers else ""
    )


def timeline(task: str, versions: Sequence[Mapping[str, Any]], *, width: int = 720) -> str:
    """Versions of ``task`` along their creation time: green promoted, red rejected, the
    champion ringed; labels alternate above and below the axis. ``versions`` are
    `dashboard_view.task_view` rows (``version``, ``created_epoch``, ``promoted``,
    ``champion``, ``reason``, ``gate``)."""
    height, axis_y, pad = 78, 39, 36
    if not versions:
        return (
            f'<svg class="timeline" width="{width}" height="24" role="img">'
            f"<title>{escape(task)}: no versions</title>"
            f'<text x="4" y="16" fill="{AXIS}">no versions yet (serving the base model)</text>'
            "</svg>"
        )
    times = [float(v["created_epoch"]) for v in versions]
    lo, hi = min(times), max(times)
    span = hi - lo
    parts = [
        f'<line x1="{pad}" y1="{axis_y}" x2="{width - pad}" y2="{axis_y}" stroke="{AXIS}"/>'
    ]
    ordered = sorted(zip(times, versions, strict=True), key=lambda p: (p[0], p[1]["version"]))
    for i, (at, v) in enumerate(ordered):
        if span > 0:
            x = pad + (width - 2 * pad) * (at - lo) / span
        else:  # all at once (or one version): spread evenly
            x = pad + (width - 2 * pad) * (i + 0.5) / len(ordered)
        colour = PROMOTED if v["promoted"] else REJECTED
        y_label = axis_y - 14 if i % 2 == 0 else axis_y + 24
        ring = (
            f'<circle cx="{_fmt(x)}" cy="{axis_y}" r="10" fill="none" stroke="{colour}" '
            'stroke-width="2"/>'
            if v.get("champion")
            else ""
        )
        parts.append(
            f'<g class="version" data-version="{escape(v["version"])}" '
            f'data-promoted="{str(bool(v["promoted"])).lower()}" '
            f'data-champion="{str(bool(v.get("champion"))).lower()}">'
            f"<title>{escape(_tooltip(v))}</title>{ring}"
            f'<circle cx="{_fmt(x)}" cy="{axis_y}" r="6" fill="{colour}"/>'
            f'<text x="{_fmt(x)}" y="{y_label}" text-anchor="middle" font-size="11">'
            f"{escape(v['version'])}</text></g>"
        )
    return (
        f'<svg class="timeline" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" data-task="{escape(task)}">'
        f"<title>{escape(task)} versions over time</title>{''.join(parts)}</svg>"
    )
