"""HTML of the dashboard: each section rendered on the server from the view model
(`dashboard_view.build_view`), the page around them, and a small script that polls
``state.json`` and swaps in the sections it returns. Everything is inline: the page works
offline. Every value is escaped."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from html import escape
from typing import Any

from lorafeed.dashboard_svg import sparkline, timeline

SECTIONS = ("summary", "nodes", "versions", "feedback", "records", "topics", "latency", "events",
            "errors")


def _num(value: Any, unit: str = "") -> str:
    if value is None:
        return '<span class="na">n/a</span>'
    if isinstance(value, float):
        text = f"{value:,.0f}" if value >= 100 or value.is_integer() else f"{value:,.2f}"
    else:
        text = f"{value:,}" if isinstance(value, int) else str(value)
    return escape(text + unit)


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], empty: str, cls: str) -> str:
    if not rows:
        return f'<p class="empty">{escape(empty)}</p>'
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def summary_html(view: Mapping[str, Any]) -> str:
    s = view["summary"]
    champions = ", ".join(
        f'<span class="champion" data-task="{escape(t)}">{escape(t)}@{escape(v)}</span>'
        for t, v in sorted(s["champions"].items())
    ) or '<span class="na">no tasks</span>'
    cards = [
        ("nodes up", f'{s["nodes_up"]} / {s["nodes"]}'),
        ("records indexed (events)", _num(s["indexed_events"])),
        ("rejected", _num(s["rejected"])),
        ("feedback pending", _num(s["pending"])),
    ]
    tiles = "".join(f'<div class="card"><div class="k">{escape(k)}</div><div class="v">{v}</div>'
                    "</div>" for k, v in cards)
    return f'<div class="cards">{tiles}</div><p>champions: {champions}</p>'


def nodes_html(view: Mapping[str, Any]) -> str:
    tasks = sorted(view["summary"]["champions"])
    rows = []
    for node in view["nodes"]:
        name = escape(node["node_id"] or "?")
        status = "up" if node["ok"] else f'down: {escape(node["error"] or "")}'
        cells = [name, escape(node["url"]), f'<span class="{"ok" if node["ok"] else "bad"}">'
                 f"{status}</span>"]
        for task in tasks:
            version = node["serving"].get(task)
            sync = node["in_sync"].get(task)
            when = node["activated"].get(task, "")
            cells.append(
                f'<span class="serving {"sync" if sync else "behind"}" '
                f'data-node="{name}" data-task="{escape(task)}" '
                f'title="activated {escape(when)}">{escape(version or "?")}</span>'
            )
        rows.append(cells)
    return _table(["node", "url", "status", *tasks], rows,
                  "no serving nodes configured (--node URL)", "nodes")


def versions_html(view: Mapping[str, Any]) -> str:
    parts = []
    for task in view["tasks"]:
        pin = f' <span class="pin">pinned at {escape(task["pin_version"] or "base")}</span>' \
            if task["pinned"] else ""
        error = f' <span class="bad">{escape(task["error"])}</span>' if task["error"] else ""
        rows = [
            [
                f'<span class="{"champ" if v["champion"] else ""}">{escape(v["version"])}</span>',
                escape(v["parent"] or "base"),
                escape(v["created_at"]),
                f'<span class="{"ok" if v["promoted"] else "bad"}">'
                f'{"promoted" if v["promoted"] else "rejected"}</span>',
                escape(v["reason"]),
                escape(", ".join(f"{k}={x:.4g}" for k, x in sorted(v["gate"].items()))),
                escape(", ".join(f"{k}={x:.4g}" for k, x in sorted(v["metrics"].items()))),
            ]
            for v in reversed(task["versions"])
        ]
        parts.append(
            f'<div class="task" data-task="{escape(task["task"])}">'
            f'<h3>{escape(task["task"])} <small>champion '
            f'<b class="current" data-task="{escape(task["task"])}">'
            f'{escape(task["champion"] or "base")}</b></small>{pin}{error}</h3>'
            f'{timeline(task["task"], task["versions"])}'
            + _table(["version", "parent", "created", "gate", "reason", "gate numbers",
                      "metrics"], rows, "no versions", "versions")
            + "</div>"
        )
    return "".join(parts) or '<p class="empty">no tasks in the adapter store yet</p>'


def feedback_html(view: Mapping[str, Any]) -> str:
    rows = [[f'<span data-task="{escape(r["task"])}">{escape(r["task"])}</span>',
             f'<span class="pending" data-task="{escape(r["task"])}">{_num(r["pending"])}</span>',
             _num(r["oldest_s"], " s"), _num(r["promoted"]), _num(r["rejected"]),
             _num(r["last_update_s"], " s")] for r in view["feedback"]]
    return _table(["task", "pending", "oldest waiting", "promoted", "rejected", "last update"],
                  rows, "no learner metrics (--learner-metrics URL)", "feedback")


def records_html(view: Mapping[str, Any]) -> str:
    rec = view["records"]
    stats = [("raw events", rec["raw_events"]), ("indexed events", rec["indexed_events"])]
    if rec["streams"]:
        stats += [(f"streams: {k.replace('_', ' ')}", v) for k, v in rec["streams"].items()]
    head = "".join(f'<div class="card"><div class="k">{escape(k)}</div>'
                   f'<div class="v">{_num(v)}</div></div>' for k, v in stats)
    rows = [[escape(r["topic"]), f'<span class="reason">{escape(r["reason"])}</span>',
             _num(r["count"])] for r in rec["rejected"]]
    return (f'<div class="cards">{head}</div>'
            + _table(["dead-letter topic", "reason", "count"], rows, "nothing rejected", "dlq"))


def topics_html(view: Mapping[str, Any]) -> str:
    rows = [[escape(t["topic"]), _num(t["end"]), _num(t["rate"], "/s"),
             sparkline(t["rates"], label=f'{t["topic"]} messages/s')] for t in view["topics"]]
    lags = [[escape(g["group"]), escape(g["topic"]), _num(g["committed"]), _num(g["end"]),
             f'<span class="{"bad" if g["lag"] else "ok"}">{_num(g["lag"])}</span>']
            for g in view["lags"]]
    return (_table(["topic", "messages", "rate", "trend"], rows, "no topics", "topics")
            + "<h3>consumer groups</h3>"
            + _table(["group", "topic", "committed", "end", "lag"], lags,
                     "no consumer group has committed yet", "lags"))


def latency_html(view: Mapping[str, Any]) -> str:
    rows = [[escape(r["node"]), _num(r["requests"]), _num(r["p50_ms"], " ms"),
             _num(r["p95_ms"], " ms"), _num(r["p99_ms"], " ms"),
             sparkline(r["recent_p95_ms"], label=f'{r["node"]} p95 per refresh (ms)')]
            for r in view["latency"]]
    return _table(["node", "requests", "p50", "p95", "p99", "recent p95"], rows,
                  "no node metrics", "latency")


def events_html(view: Mapping[str, Any]) -> str:
    rows = [[escape(e["at"]), escape(e["type"].removeprefix("adapter_")), escape(e["task"]),
             escape(e["version"] or "base"), escape(e["node"] or ""), escape(e["detail"])]
            for e in view["events"]]
    return _table(["at", "event", "task", "version", "node", "detail"], rows,
                  "no model events yet", "events")


def errors_html(view: Mapping[str, Any]) -> str:
    items = "".join(f"<li><b>{escape(e['source'])}</b>: {escape(e['message'])}</li>"
                    for e in view["errors"])
    return f'<ul class="bad">{items}</ul>' if items else ""


_RENDERERS: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "summary": summary_html, "nodes": nodes_html, "versions": versions_html,
    "feedback": feedback_html, "records": records_html, "topics": topics_html,
    "latency": latency_html, "events": events_html, "errors": errors_html,
}
TITLES = {"summary": "", "nodes": "Serving nodes", "versions": "Adapter versions",
          "feedback": "Feedback pending", "records": "Records", "topics": "Topics and lag",
          "latency": "Request latency", "events": "Model events", "errors": ""}


def render_sections(view: Mapping[str, Any]) -> dict[str, str]:
    """Section id -> inner HTML, for the page and for ``state.json``."""
    return {name: _RENDERERS[name](view) for name in SECTIONS}
