"""Small inline-SVG charts for the demo report (pure, no dependencies, works offline): grouped
bars (negative values hang below a zero line) and a heat map with the value in every cell."""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1")
_FONT = 'font-family="sans-serif" font-size="12"'


def _fmt(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.3g}"


def bar_chart(title: str, groups: Sequence[str], series: Sequence[str],
              values: Sequence[Sequence[float]], *, width: int = 640, height: int = 260) -> str:
    """`values[g][s]`: one bar per series in each group; NaN bars are left out."""
    if any(len(row) != len(series) for row in values) or len(values) != len(groups):
        raise ValueError(f"bar chart {title!r}: values must be {len(groups)} x {len(series)}")
    finite = [v for row in values for v in row if not math.isnan(v)] or [0.0]
    top, bottom = max(max(finite), 0.0), min(min(finite), 0.0)
    span = (top - bottom) or 1.0
    left, right, head, foot = 48, 12, 28, 44
    plot_w, plot_h = width - left - right, height - head - foot
    zero = head + plot_h * top / span
    out = [_open(width, height, title),
           f'<line x1="{left}" x2="{width - right}" y1="{zero:.1f}" y2="{zero:.1f}" '
           'stroke="#333"/>',
           f'<text x="{left - 4}" y="{head + 4}" text-anchor="end" {_FONT}>{_fmt(top)}</text>',
           f'<text x="{left - 4}" y="{head + plot_h}" text-anchor="end" {_FONT}>'
           f'{_fmt(bottom)}</text>']
    slot = plot_w / max(len(groups), 1)
    bar = slot * 0.8 / max(len(series), 1)
    for g, group in enumerate(groups):
        x0 = left + g * slot + slot * 0.1
        for s, value in enumerate(values[g]):
            if math.isnan(value):
                continue
            y_value = head + plot_h * (top - value) / span
            y, h = min(zero, y_value), abs(zero - y_value)
            out.append(f'<rect x="{x0 + s * bar:.1f}" y="{y:.1f}" width="{bar * 0.9:.1f}" '
                       f'height="{max(h, 0.5):.1f}" fill="{PALETTE[s % len(PALETTE)]}">'
                       f"<title>{escape(group)} / {escape(series[s])}: {_fmt(value)}</title>"
                       "</rect>")
        out.append(f'<text x="{x0 + slot * 0.4:.1f}" y="{height - foot + 16}" '
                   f'text-anchor="middle" {_FONT}>{escape(group)}</text>')
    out += _legend(series, left, height - 12)
    out.append("</svg>")
    return "\n".join(out)


def heat_map(title: str, rows: Sequence[str], columns: Sequence[str],
             values: Sequence[Sequence[float]]) -> str:
    """A cell per (row, column), the value written inside, coloured per column from red (its
    lowest value, or 0 for metrics in [0, 1]) to green (its highest, or 1)."""
    if any(len(row) != len(columns) for row in values) or len(values) != len(rows):
        raise ValueError(f"heat map {title!r}: values must be {len(rows)} x {len(columns)}")
    cell_w = max([150, *(7 * len(column) + 12 for column in columns)])
    cell_h, left, head = 30, 8 + 7 * max([10, *(len(row) for row in rows)]), 48
    width, height = left + cell_w * len(columns) + 8, head + cell_h * len(rows) + 8
    out = [_open(width, height, title)]
    for c, column in enumerate(columns):
        out.append(f'<text x="{left + c * cell_w + cell_w / 2:.0f}" y="{head - 8}" '
                   f'text-anchor="middle" {_FONT}>{escape(column)}</text>')
    for r, row in enumerate(rows):
        y = head + r * cell_h
        out.append(f'<text x="{left - 6}" y="{y + cell_h / 2 + 4:.0f}" text-anchor="end" '
                   f"{_FONT}>{escape(row)}</text>")
        for c, value in enumerate(values[r]):
            x = left + c * cell_w
            low, high = _column_range([row[c] for row in values])
            out.append(f'<rect x="{x}" y="{y}" width="{cell_w - 2}" height="{cell_h - 2}" '
                       f'fill="{_colour(value, low, high)}"/>')
            out.append(f'<text x="{x + cell_w / 2:.0f}" y="{y + cell_h / 2 + 4:.0f}" '
                       f'text-anchor="middle" {_FONT}>{_fmt(value)}</text>')
    out.append("</svg>")
    return "\n".join(out)


def _column_range(column: Sequence[float]) -> tuple[float, float]:
    finite = [v for v in column if not math.isnan(v)] or [0.0]
    if all(0.0 <= v <= 1.0 for v in finite):
        return 0.0, 1.0
    return min(finite), max(finite)


def _colour(value: float, low: float, high: float) -> str:
    if math.isnan(value):
        return "#dddddd"
    share = 0.0 if high == low else min(1.0, max(0.0, (value - low) / (high - low)))
    red, green = int(230 - 120 * share), int(110 + 110 * share)
    return f"rgb({red},{green},120)"


def _open(width: int, height: int, title: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">'
            f'<text x="8" y="16" font-family="sans-serif" font-size="14" font-weight="bold">'
            f"{escape(title)}</text>")


def _legend(series: Sequence[str], x: int, y: int) -> list[str]:
    out = []
    for s, name in enumerate(series):
        out.append(f'<rect x="{x}" y="{y - 9}" width="10" height="10" '
                   f'fill="{PALETTE[s % len(PALETTE)]}"/>')
        out.append(f'<text x="{x + 14}" y="{y}" {_FONT}>{escape(name)}</text>')
        x += 24 + 7 * len(name)
    return out
