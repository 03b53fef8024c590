"""The demo's HTML report (pure): one self-contained page (inline CSS and SVG, no scripts, no
network) with the run's numbers, metrics per version, the forgetting matrix, gate decisions,
request latency and sample answers. `write_report` is the only function that touches disk."""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape
from pathlib import Path

from lorafeed.demo_results import (
    NOTES,
    DemoResults,
    EvalMatrix,
    gate_summary,
    percentile,
    retention_rows,
)
from lorafeed.report_svg import bar_chart, heat_map

_CSS = """body{font-family:sans-serif;max-width:980px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;
text-align:left;vertical-align:top}th{background:#f3f3f3}.num{text-align:right}
.ok{color:#2a7a2a;font-weight:bold}.no{color:#b36b00;font-weight:bold}svg{margin:1em 0}"""


def render_report(results: DemoResults, generated_at: datetime | None = None) -> str:
    """The whole page as a string."""
    when = (generated_at or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        "<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>lorafeed demo report ({escape(results.scenario)})</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>lorafeed demo report</h1>",
        f"<p>Scenario <b>{escape(results.scenario)}</b>, generated {when}; wall time "
        f"{results.wall_seconds / 60:.1f} min; nodes {escape(', '.join(results.nodes))}.</p>",
        "<h2>What happened</h2>", _overview(results),
        "<h2>Metrics per version</h2>", *(_matrix_section(m) for m in results.matrices),
        "<h2>Forgetting matrix</h2>", _forgetting(results),
        "<h2>Adapter versions and gate decisions</h2>", _versions(results),
        "<h2>Request latency</h2>", _latency(results),
        "<h2>Sample answers</h2>", _samples(results),
        "</body></html>",
    ]
    return "\n".join(parts)


def write_report(results: DemoResults, path: Path) -> Path:
    """Write the page to `path` (its directory is created); returns the absolute path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_report(results), encoding="utf-8")
    return path.resolve()


def _table(header: list[str], rows: list[list[str]], numeric: set[int] | None = None) -> str:
    numeric = numeric or set()
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>"
                         for i, c in enumerate(row)) + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _overview(r: DemoResults) -> str:
    i, f = r.ingest, r.feedback
    pii = ", ".join(f"{escape(k)} {n}" for k, n in i.pii.items()) or "none"
    dead = ", ".join(f"{escape(k)} {n}" for k, n in i.dead_letters.items()) or "none"
    rows = [
        ["records published to records.raw", f"{i.published} (+{i.malformed} malformed)"],
        ["indexed / chunks / duplicates kept as aliases", f"{i.indexed} / {i.chunks} / "
                                                           f"{i.aliases}"],
        ["PII pseudonymized before indexing", pii], ["dead letters by reason", dead],
        ["questions answered (grounded in a relevant record)", f"{r.questions} ({r.grounded})"],
        ["transactions scored: HTTP + streamed",
         f"{r.scored_http} + {r.streamed_scored}"],
        ["feedback: corrections / up / down votes", f"{f.corrections} / {f.upvotes} / "
                                                    f"{f.downvotes}"],
        ["label votes (wrong labels, disputed items)", f"{f.labels} ({f.noisy_labels}, "
                                                       f"{f.disputed_items})"],
        ["feedback refused (4xx)", str(f.refused)],
    ]
    rows += [[f"step: {escape(step)}", f"{seconds:.0f} s"]
             for step, seconds in r.step_seconds.items()]
    return _table(["what", "value"], rows, {1})


def _matrix_section(m: EvalMatrix) -> str:
    """One chart for the columns in [0, 1] (accuracy, F1), one per column on another scale."""
    shares = [c for c in range(len(m.columns))
              if all(0.0 <= row[c] <= 1.0 for row in m.values)]
    groups = ([shares] if shares else []) + [[c] for c in range(len(m.columns)) if c not in shares]
    chart = "".join(
        bar_chart(f"{m.task}: {m.metric if len(group) > 1 else m.columns[group[0]]} per version",
                  list(m.rows), [m.columns[c] for c in group],
                  [[row[c] for c in group] for row in m.values], width=480)
        for group in groups)
    rows = [[escape(row), *(f"{v:.3f}" for v in values)]
            for row, values in zip(m.rows, m.values, strict=True)]
    note = f"<p><i>{escape(NOTES[m.task])}</i></p>" if m.task in NOTES else ""
    return (f"<h3>{escape(m.task)}</h3>{chart}{note}"
            + _table(["version", *m.columns], rows, set(range(1, len(m.columns) + 1))))


def _forgetting(r: DemoResults) -> str:
    """Rows: versions; columns: evaluation slices; each cell the metric after that version.
    A column that drops going down is forgetting."""
    out = ["<p>Each row is a version of the task, each column a slice it is evaluated on "
           "(higher is better). A value that falls from one row to the next is forgetting.</p>"]
    for m in r.matrices:
        out.append(heat_map(f"{m.task}: {m.metric}", list(m.rows), list(m.columns),
                            [list(v) for v in m.values]))
    retained = retention_rows(r.versions)
    if retained:
        out.append("<p>The gate's own guard: regression of each candidate against its champion "
                   "on retained data and the general probe (negative = better).</p>")
        out.append(_table(["version", "guarded metric", "regression"],
                          [[escape(v), escape(n), s] for v, n, s, _x in retained], {2}))
    return "\n".join(out)


def _versions(r: DemoResults) -> str:
    rows = []
    for v in r.versions:
        verdict = '<span class="ok">promoted</span>' if v.promoted else \
            '<span class="no">rejected</span>'
        gate = "<br>".join(f"{escape(n)}: {c:.4g} vs {p:.4g}" for n, c, p in gate_summary(v.gate))
        live = ", ".join(f"{escape(n)} +{s:.1f} s" for n, s in v.activations.items()) or "-"
        rows.append([f"{escape(v.task)}@{escape(v.version)}", escape(v.parent or "base"),
                     verdict, str(v.examples), f"{v.train_seconds:.0f}",
                     str(v.feedback_request_ids), gate or "-", live, escape(v.reason)])
    header = ["version", "parent", "verdict", "examples", "train s", "feedback requests in "
              "lineage", "gate (candidate vs champion)", "live on", "gate reason"]
    charts = []
    for task in sorted({v.task for v in r.versions}):
        mine = [v for v in r.versions if v.task == task and "target.candidate" in v.gate]
        if mine:
            charts.append(bar_chart(
                f"{task}: gate target metric", [v.version for v in mine],
                ["candidate", "champion"],
                [[v.gate["target.candidate"], v.gate["target.champion"]] for v in mine],
                width=480))
    return _table(header, rows, {3, 4, 5}) + "\n".join(charts)


def _latency(r: DemoResults) -> str:
    endpoints = sorted(r.latencies)
    if not endpoints:
        return "<p>No requests.</p>"
    ms = [[percentile(r.latencies[e], q) * 1000 for q in (0.5, 0.95)] for e in endpoints]
    chart = bar_chart("latency (ms)", endpoints, ["p50", "p95"], ms)
    rows = [[escape(e), str(len(r.latencies[e])), f"{p50:.0f}", f"{p95:.0f}",
             f"{max(r.latencies[e]) * 1000:.0f}"] for e, (p50, p95) in zip(endpoints, ms,
                                                                           strict=True)]
    return chart + _table(["endpoint", "requests", "p50 ms", "p95 ms", "max ms"], rows,
                          {1, 2, 3, 4})


def _samples(r: DemoResults) -> str:
    if not r.samples:
        return "<p>No samples.</p>"
    return _table(["question", "answer", "cited record"],
                  [[escape(q), escape(a), escape(c)] for q, a, c in r.samples])

