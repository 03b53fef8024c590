"""The dashboard's view model: one JSON-ready dict per refresh, built from the latest `Snapshot`
and the `History` of earlier ones. Pure; `dashboard_html` renders it, ``/state.json`` ships it."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from lorafeed.dashboard_metrics import Sample, buckets, by_label, quantile, total
from lorafeed.dashboard_model import (
    LATENCY_METRIC,
    History,
    Scrape,
    Snapshot,
    TaskVersions,
    is_app_request,
)

BASE = "base"
EVENTS_SHOWN = 30


def iso(epoch: float) -> str:
    """UTC ISO-8601 to the second, as shown on the page."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000.0, 1)


def _all(scrapes: Iterable[Scrape]) -> list[Sample]:
    return [s for scrape in scrapes if scrape.ok for s in scrape.samples]


def topics_view(snap: Snapshot, history: History) -> list[dict[str, Any]]:
    rows = []
    for topic in sorted(snap.ends):
        rates = history.rates(topic)
        latest = next((r for r in reversed(rates) if r is not None), None)
        rows.append({"topic": topic, "end": snap.ends[topic], "rate": latest, "rates": rates})
    return rows


def lags_view(snap: Snapshot) -> list[dict[str, Any]]:
    return [
        {"group": g.group, "topic": g.topic, "committed": g.committed, "end": g.end, "lag": g.lag}
        for g in sorted(snap.lags, key=lambda g: (g.group, g.topic))
    ]


def records_view(snap: Snapshot) -> dict[str, Any]:
    samples = _all(snap.streams)
    streams = None
    if samples:
        streams = {
            "indexed": total(samples, "lorafeed_streams_records_indexed_total"),
            "chunks": total(samples, "lorafeed_streams_chunks_indexed_total"),
            "deduped": total(samples, "lorafeed_streams_records_deduped_total"),
            "dead_lettered": total(samples, "lorafeed_streams_records_dlq_total"),
        }
    rejected = [
        {"topic": topic, "reason": reason, "count": count}
        for topic, reasons in sorted(snap.rejected.items())
        for reason, count in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))
    ]
    return {
        "indexed_events": snap.ends.get("records.indexed"),
        "raw_events": snap.ends.get("records.raw"),
        "streams": streams,
        "rejected": rejected,
        "rejected_total": sum(r["count"] for r in rejected),
    }


def feedback_view(snap: Snapshot) -> list[dict[str, Any]]:
    samples = _all(snap.learners)
    pending = by_label(samples, "lorafeed_learner_pending_examples", "task")
    oldest = by_label(samples, "lorafeed_learner_oldest_pending_seconds", "task")
    seconds = by_label(samples, "lorafeed_learner_last_update_seconds", "task")
    names = sorted(set(pending) | {t.task for t in snap.tasks})
    rows = []
    for task in names:
        def updates(decision: str, task: str = task) -> float | None:
            return total(
                samples,
                "lorafeed_learner_updates_total",
                lambda labels: labels.get("task") == task and labels.get("decision") == decision,
            )

        rows.append(
            {
                "task": task,
                "pending": pending.get(task),
                "oldest_s": oldest.get(task),
                "promoted": updates("promoted"),
                "rejected": updates("rejected"),
                "last_update_s": seconds.get(task),
            }
        )
    return rows


def task_view(task: TaskVersions) -> dict[str, Any]:
    versions = [
        {
            "version": v.version,
            "parent": v.parent,
            "created_at": iso(v.created_at),
            "created_epoch": v.created_at,
            "promoted": v.promoted,
            "reason": v.reason,
            "metrics": dict(v.metrics),
            "gate": dict(v.gate_numbers),
            "lineage_ids": v.lineage_ids,
            "champion": v.version == task.champion,
        }
        for v in task.versions
    ]
    return {
        "task": task.task,
        "champion": task.champion,
        "pinned": task.pinned,
        "pin_version": task.pin_version,
        "versions": versions,
        "error": task.error,
    }


def _activations(snap: Snapshot) -> dict[tuple[str, str], str]:
    """(node, task) -> when that node last activated a version of the task."""
    found: dict[tuple[str, str], float] = {}
    for event in snap.events:
        if event.type == "adapter_activated" and event.node:
            key = (event.node, event.task)
            found[key] = max(found.get(key, 0.0), event.at)
    return {key: iso(at) for key, at in found.items()}


def nodes_view(snap: Snapshot) -> list[dict[str, Any]]:
    champions = {t.task: t.champion or BASE for t in snap.tasks}
    activated = _activations(snap)
    rows = []
    for node in snap.nodes:
        serving = {
            s.labels["task"]: s.labels["version"]
            for s in node.samples
            if s.name == "lorafeed_serving_active_adapter" and s.value >= 1 and "task" in s.labels
        }
        name = node.node_id or node.url
        rows.append(
            {
                "url": node.url,
                "node_id": node.node_id,
                "ok": node.ok,
                "error": node.error,
                "serving": serving,
                "in_sync": {t: serving.get(t) == champions[t] for t in serving if t in champions},
                "activated": {t: activated[(name, t)] for t in serving if (name, t) in activated},
            }
        )
    return rows


def latency_view(snap: Snapshot, history: History) -> list[dict[str, Any]]:
    rows = []
    for node in snap.nodes:
        if not node.ok:
            continue
        cumulative = buckets(node.samples, LATENCY_METRIC, is_app_request)
        recent = [
            None if delta is None else _ms(quantile(0.95, delta))
            for delta in history.latency_deltas(node.url)
        ]
        rows.append(
            {
                "node": node.node_id or node.url,
                "requests": int(max(cumulative.values(), default=0.0)),
                "p50_ms": _ms(quantile(0.5, cumulative)),
                "p95_ms": _ms(quantile(0.95, cumulative)),
                "p99_ms": _ms(quantile(0.99, cumulative)),
                "recent_p95_ms": recent,
            }
        )
    return rows


def events_view(snap: Snapshot) -> list[dict[str, Any]]:
    newest = sorted(snap.events, key=lambda e: e.at, reverse=True)[:EVENTS_SHOWN]
    return [
        {"at": iso(e.at), "type": e.type, "task": e.task, "version": e.version,
         "node": e.node, "detail": e.detail}
        for e in newest
    ]


def build_view(snap: Snapshot, history: History) -> dict[str, Any]:
    """The whole page's data. ``history`` should already include ``snap`` (see History.push)."""
    nodes = nodes_view(snap)
    tasks = [task_view(t) for t in sorted(snap.tasks, key=lambda t: t.task)]
    records = records_view(snap)
    feedback = feedback_view(snap)
    pending = [row["pending"] for row in feedback if row["pending"] is not None]
    return {
        "generated_at": iso(snap.taken_at),
        "summary": {
            "nodes_up": sum(1 for n in nodes if n["ok"]),
            "nodes": len(nodes),
            "champions": {t["task"]: t["champion"] or BASE for t in tasks},
            "indexed_events": records["indexed_events"],
            "rejected": records["rejected_total"],
            "pending": sum(pending) if pending else None,
        },
        "topics": topics_view(snap, history),
        "lags": lags_view(snap),
        "records": records,
        "feedback": feedback,
        "tasks": tasks,
        "nodes": nodes,
        "latency": latency_view(snap, history),
        "events": events_view(snap),
        "errors": [{"source": k, "message": v} for k, v in sorted(snap.errors.items())],
    }


def scrape_errors(scrapes: Sequence[Scrape], kind: str) -> dict[str, str]:
    """``{"<kind> <url>": error}`` for the scrapes that failed."""
    return {f"{kind} {s.url}": s.error for s in scrapes if s.error is not None}
