"""The dashboard's view model from hand-built snapshots: rates and latency trends from the
history, nodes in or out of sync with the champion, feedback per task, dead letters, versions,
events."""

from __future__ import annotations

import pytest

from lorafeed.dashboard_metrics import parse_samples
from lorafeed.dashboard_model import (
    GroupLag,
    History,
    ModelEventRow,
    Scrape,
    Snapshot,
    TaskVersions,
    VersionRow,
)
from lorafeed.dashboard_view import build_view, iso

T0 = 1_780_000_000.0


def node_text(chat: str, score_le_01: int, score_total: int, probes: int = 0) -> str:
    return f"""\
# TYPE lorafeed_serving_active_adapter gauge
lorafeed_serving_active_adapter{{task="chat",version="{chat}"}} 1.0
lorafeed_serving_active_adapter{{task="intent",version="base"}} 1.0
# TYPE lorafeed_serving_request_seconds histogram
lorafeed_serving_request_seconds_bucket{{endpoint="/v1/score",le="0.1",status="200",task="x"}} \
{score_le_01}
lorafeed_serving_request_seconds_bucket{{endpoint="/v1/score",le="+Inf",status="200",task="x"}} \
{score_total}
lorafeed_serving_request_seconds_bucket{{endpoint="/metrics",le="0.1",status="200",task="-"}} \
{probes}
lorafeed_serving_request_seconds_bucket{{endpoint="/metrics",le="+Inf",status="200",task="-"}} \
{probes}
"""


LEARNER = """\
# TYPE lorafeed_learner_pending_examples gauge
lorafeed_learner_pending_examples{task="chat"} 7.0
# TYPE lorafeed_learner_oldest_pending_seconds gauge
lorafeed_learner_oldest_pending_seconds{task="chat"} 42.0
# TYPE lorafeed_learner_updates counter
lorafeed_learner_updates_total{decision="promoted",task="chat"} 2.0
lorafeed_learner_updates_total{decision="rejected",task="chat"} 1.0
"""

CHAT = TaskVersions(
    "chat",
    (
        VersionRow("1.0.0", None, T0 - 100, True, "first"),
        VersionRow("1.1.0", "1.0.0", T0 - 50, True, "better", gate_numbers={"gain": 0.1}),
        VersionRow("1.2.0", "1.1.0", T0 - 10, False, "forgot retained task"),
    ),
    champion="1.1.0",
)
INTENT = TaskVersions("intent", (), champion=None)


def snapshot(at: float, ends: dict[str, int], node_a: str, **fields: object) -> Snapshot:
    values: dict[str, object] = dict(
        taken_at=at,
        ends=ends,
        nodes=(
            Scrape("http://a", tuple(parse_samples(node_a)), node_id="node-a"),
            Scrape("http://b", error="http://b/healthz unreachable: refused"),
        ),
        learners=(Scrape("http://l/metrics", tuple(parse_samples(LEARNER))),),
        tasks=(CHAT, INTENT),
    )
    return Snapshot(**(values | fields))  # type: ignore[arg-type]


def test_history_rates_per_topic_with_gaps_and_a_bounded_size() -> None:
    history = History(size=3)
    for at, ends in ((0.0, {"records.raw": 0}), (2.0, {"records.raw": 10}), (4.0, {}),
                     (6.0, {"records.raw": 40})):
        history = history.push(Snapshot(taken_at=T0 + at, ends=ends))
    assert [p.at - T0 for p in history.points] == [2.0, 4.0, 6.0]  # the oldest fell off
    assert history.rates("records.raw") == [None, None]  # a refresh without the topic
    full = History(size=10)
    for at, end in ((0.0, 0), (2.0, 10), (4.0, 10), (5.0, 4)):
        full = full.push(Snapshot(taken_at=T0 + at, ends={"records.raw": end}))
    assert full.rates("records.raw") == [5.0, 0.0, 0.0]  # a shrinking end never goes negative
    with pytest.raises(ValueError, match="at least 2"):
        History(size=1)


def test_nodes_show_what_they_serve_and_whether_it_is_the_champion() -> None:
    snap = snapshot(T0, {}, node_text("1.0.0", 1, 1), events=(
        ModelEventRow(T0 - 5, "adapter_activated", "chat", "1.0.0", node="node-a"),
        ModelEventRow(T0 - 9, "adapter_activated", "chat", "0.9.0", node="node-a"),
    ))
    view = build_view(snap, History().push(snap))
    node_a, node_b = view["nodes"]
    assert node_a["serving"] == {"chat": "1.0.0", "intent": "base"}
    assert node_a["in_sync"] == {"chat": False, "intent": True}  # champion of chat is 1.1.0
    assert node_a["activated"] == {"chat": iso(T0 - 5)}  # the latest activation
    assert not node_b["ok"] and "unreachable" in node_b["error"]
    assert view["summary"]["nodes_up"] == 1 and view["summary"]["nodes"] == 2
    assert view["summary"]["champions"] == {"chat": "1.1.0", "intent": "base"}


def test_latency_leaves_probes_out_and_trends_per_refresh() -> None:
    first = snapshot(T0, {}, node_text("1.1.0", 10, 10, probes=50))
    second = snapshot(T0 + 2, {}, node_text("1.1.0", 10, 20, probes=90))
    history = History().push(first).push(second)
    [row] = build_view(second, history)["latency"]
    assert row["node"] == "node-a" and row["requests"] == 20  # the 90 /metrics scrapes excluded
    assert row["p50_ms"] == pytest.approx(100.0)
    # between the refreshes all 10 new requests were slower than 0.1 s (the +Inf bucket)
    assert row["recent_p95_ms"] == [pytest.approx(100.0)]


def test_feedback_versions_records_lag_and_events() -> None:
    events = tuple(ModelEventRow(T0 + i, "adapter_published", "chat", f"1.{i}.0")
                   for i in range(40))
    snap = snapshot(
        T0, {"records.indexed": 12, "records.raw": 15}, node_text("1.1.0", 0, 0),
        rejected={"records.dlq": {"quality_too_short": 2, "not_json": 5}, "feedback.dlq": {}},
        lags=(GroupLag("g", "records.raw", committed=9, end=15),),
        events=events, errors={"learner http://l": "down"},
    )
    view = build_view(snap, History().push(snap))
    chat = next(r for r in view["feedback"] if r["task"] == "chat")
    assert (chat["pending"], chat["oldest_s"], chat["promoted"], chat["rejected"]) == (
        7.0, 42.0, 2.0, 1.0)
    intent = next(r for r in view["feedback"] if r["task"] == "intent")
    assert intent["pending"] is None  # the learner reported nothing for it
    assert view["records"]["indexed_events"] == 12
    assert [(r["reason"], r["count"]) for r in view["records"]["rejected"]] == [
        ("not_json", 5), ("quality_too_short", 2)]  # most frequent first
    assert view["records"]["rejected_total"] == 7 and view["records"]["streams"] is None
    assert view["lags"] == [{"group": "g", "topic": "records.raw", "committed": 9, "end": 15,
                             "lag": 6}]
    [chat_task, intent_task] = view["tasks"]
    assert [(v["version"], v["champion"]) for v in chat_task["versions"]] == [
        ("1.0.0", False), ("1.1.0", True), ("1.2.0", False)]
    assert chat_task["versions"][1]["gate"] == {"gain": 0.1}
    assert intent_task["champion"] is None and intent_task["versions"] == []
    shown = view["events"]
    assert len(shown) == 30 and shown[0]["version"] == "1.39.0"  # newest first, capped
    assert view["errors"] == [{"source": "learner http://l", "message": "down"}]


def test_streams_metrics_fill_the_records_section() -> None:
    text = """\
# TYPE lorafeed_streams_records_indexed_total counter
lorafeed_streams_records_indexed_total 30.0
# TYPE lorafeed_streams_chunks_indexed_total counter
lorafeed_streams_chunks_indexed_total 75.0
"""
    snap = snapshot(T0, {}, node_text("1.1.0", 0, 0),
                    streams=(Scrape("http://s/metrics", tuple(parse_samples(text))),
                             Scrape("http://s2/metrics", tuple(parse_samples(text)))))
    streams = build_view(snap, History().push(snap))["records"]["streams"]
    assert streams["indexed"] == 60.0 and streams["chunks"] == 150.0  # two workers summed
    assert streams["deduped"] is None
