"""The demo's closing summary as rich tables, rendered from :class:`DemoResults` (pure: no I/O
beyond building tables, so unit tests render them to text)."""

from __future__ import annotations

from rich.table import Table

from lorafeed.demo_results import (
    NOTES,
    DemoResults,
    EvalMatrix,
    gate_summary,
    percentile,
    retention_rows,
)


def summary_tables(results: DemoResults) -> list[Table]:
    """Overview, versions with gate metrics, before/after, retention and latency."""
    tables = [_overview(results), _versions(results)]
    tables += [_before_after(m) for m in results.matrices]
    tables += [_retention(results), _latency(results)]
    return tables


def _overview(results: DemoResults) -> Table:
    table = Table(title=f"lorafeed demo ({results.scenario}): summary")
    table.add_column("what")
    table.add_column("count", justify="right")
    ingest, fb = results.ingest, results.feedback
    rows = [
        ("records published (+ malformed)", f"{ingest.published} (+{ingest.malformed})"),
        ("records indexed / chunks", f"{ingest.indexed} / {ingest.chunks}"),
        ("duplicates kept as aliases", str(ingest.aliases)),
        ("PII values pseudonymized", str(sum(ingest.pii.values()))),
        ("dead letters", str(sum(ingest.dead_letters.values()))),
        ("questions answered (grounded in a relevant record)",
         f"{results.questions} ({results.grounded})"),
        ("transactions scored over HTTP + streamed", _requests(results)),
        ("feedback: corrections / up / down votes", f"{fb.corrections} / {fb.upvotes} / "
                                                    f"{fb.downvotes}"),
        ("feedback: label votes (wrong, disputed items)",
         f"{fb.labels} ({fb.noisy_labels}, {fb.disputed_items})"),
        ("feedback refused with a 4xx", str(fb.refused)),
        ("adapter versions (promoted)", f"{len(results.versions)} "
                                        f"({sum(v.promoted for v in results.versions)})"),
        ("wall time", f"{results.wall_seconds / 60:.1f} min"),
    ]
    for what, count in rows:
        table.add_row(what, count)
    return table


def _requests(results: DemoResults) -> str:
    return f"{results.scored_http} + {results.streamed_scored}"


def _versions(results: DemoResults) -> Table:
    table = Table(title="adapter versions and their gate")
    for column in ("version", "parent", "verdict", "examples", "train s", "gate metric",
                   "candidate", "champion", "live on (s after promotion)"):
        table.add_column(column, justify="right" if column in ("examples", "train s",
                                                                "candidate", "champion")
                         else "left")
    for v in results.versions:
        verdict = "[green]promoted[/]" if v.promoted else "[yellow]rejected[/]"
        live = ", ".join(f"{n} {s:.1f}" for n, s in v.activations.items()) or "-"
        metrics = gate_summary(v.gate) or [("-", float("nan"), float("nan"))]
        for n, (name, candidate, champion) in enumerate(metrics):
            first = n == 0
            table.add_row(f"{v.task}@{v.version}" if first else "",
                          (v.parent or "base") if first else "", verdict if first else "",
                          str(v.examples) if first else "",
                          f"{v.train_seconds:.0f}" if first else "", name,
                          f"{candidate:.4g}", f"{champion:.4g}", live if first else "")
    return table


def _before_after(matrix: EvalMatrix) -> Table:
    note = NOTES.get(matrix.task)
    table = Table(title=f"{matrix.task}: {matrix.metric} per version (rows) and evaluation "
                        "slice (columns)", caption=note)
    table.add_column("version")
    for column in matrix.columns:
        table.add_column(column, justify="right")
    for row, values in zip(matrix.rows, matrix.values, strict=True):
        table.add_row(row, *(f"{value:.2f}" for value in values))
    if len(matrix.rows) > 1:
        table.add_row("[bold]before -> after[/]", *(
            f"[bold]{before:.2f} -> {after:.2f}[/]" for _c, before, after in matrix.before_after()
        ))
    return table


def _retention(results: DemoResults) -> Table:
    table = Table(title="forgetting: regression of each candidate on retained data and probes "
                        "(gate budget max_forgetting; negative = better)")
    for column in ("version", "guarded metric", "regression"):
        table.add_column(column, justify="right" if column == "regression" else "left")
    for version, name, shown, _value in retention_rows(results.versions):
        table.add_row(version, name, shown)
    for matrix in results.matrices:
        for column, lost in matrix.forgetting():
            table.add_row(f"{matrix.task} (HTTP eval)", f"{column}: best earlier - final",
                          f"{lost:+.4f}")
    return table


def _latency(results: DemoResults) -> Table:
    table = Table(title="request latency (ms)")
    for column in ("endpoint", "requests", "p50", "p95", "max"):
        table.add_column(column, justify="left" if column == "endpoint" else "right")
    for endpoint, values in sorted(results.latencies.items()):
        table.add_row(endpoint, str(len(values)), f"{percentile(values, 0.5) * 1000:.0f}",
                      f"{percentile(values, 0.95) * 1000:.0f}", f"{max(values) * 1000:.0f}")
    return table
