"""The invariant checker catches what it claims to: each pure check is fed a small snapshot that
holds, then one with a single defect planted (a lost record, a stale chunk, a good record
dead-lettered, feedback in two lineages, a 5xx outside any window, a version never active, an
event naming a missing version, a stream naming two versions), and must name it. No services:
runs in a second."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from datetime import UTC, datetime

from bench.loadgen import RequestRecord, _Worker
from schemas import DeadLettered, RecordIndexed
from schemas.dead_letters import DeadLetterReason
from schemas.feedback import FeedbackReceived
from schemas.manifest import AdapterManifest, manifest_sha256
from schemas.model_events import AdapterPromoted
from tests.faults.invariants import check_all
from tests.faults.invariants_adapters import check_adapters
from tests.faults.invariants_data import check_feedback, check_records
from tests.faults.invariants_http import check_http, check_versions
from tests.faults.load import MIX, SentRecord
from tests.faults.observe import Activation, LearnerRows, Observed, StoreView
from tests.faults.world import Window
from tests.support.expect import Expected

NOW = datetime(2026, 3, 1, tzinfo=UTC)
NODE = "http://127.0.0.1:9001"


def _manifest(version: str, request_ids: list[str], promoted: bool = True) -> AdapterManifest:
    return AdapterManifest.model_validate({
        "schema_version": 1, "task": "chat", "version": version, "kind": "generation",
        "base_model_id": "tiny-llama", "base_model_sha256": "0" * 64,
        "files": {"adapter_model.safetensors": "1" * 64}, "lora": {"r": 4, "alpha": 8},
        "gate": {"promoted": promoted, "reason": "test"},
        "lineage": {"request_ids": request_ids}, "created_at": NOW,
    })


def _request(endpoint: str, rid: str, at: float, status: int = 200,
             version: str | None = "1.0.0", error: str | None = None) -> RequestRecord:
    return RequestRecord(NODE, endpoint, status, at, at + 0.1, adapter_version=version,
                         request_id=rid, error=error)


def _observed() -> Observed:
    """A snapshot in which every invariant holds."""
    v1 = _manifest("1.0.0", ["r1"])
    store = StoreView({("chat", "1.0.0"): v1}, {"chat": ("1.0.0", manifest_sha256(v1))}, [])
    return Observed(
        sent=[SentRecord("a", b"{}", record={}, accepted=True),
              SentRecord("b", b"{}", record={}, accepted=True),
              SentRecord("bad-1", b"{", reason="not_json", accepted=True)],
        expected=Expected(prepared={"a": None, "b": None},  # type: ignore[dict-item]
                          chunks={"a": ["a0", "a1"], "b": ["b0"]}, rejected={}),
        outcomes=[RecordIndexed.model_construct(record_id="a", duplicate_of=None),
                  RecordIndexed.model_construct(record_id="b", duplicate_of="a")],
        dead=[DeadLettered.model_construct(key="bad-1", reason=DeadLetterReason("not_json"))],
        indexed={"a": ["a0", "a1"]},
        requests=[_request("chat", "r1", 10.0), _request("feedback", "r1", 10.2, status=202),
                  _request("chat", "r2", 11.0), _request("feedback", "r2", 11.2, status=202)],
        mix=MIX,
        feedback_events=[FeedbackReceived.model_construct(request_id=r, kind="rating")
                         for r in ("r1", "r2")],
        learner=LearnerRows({("chat", "fb:r1:sft:-"): ("consumed", "1.0.0", "r1"),
                             ("chat", "fb:r2:sft:-"): ("pending", None, "r2")},
                            frozenset(), frozenset({("chat", "r1"), ("chat", "r2")})),
        model_events=[AdapterPromoted(schema_version=1, event_id="e1", task="chat",
                                      occurred_at=NOW, version="1.0.0",
                                      manifest_sha256=manifest_sha256(v1))],
        store=store,
        windows=[],
        activations=[Activation("node-a", 1.0, "*", None), Activation("node-a", 5.0, "chat",
                                                                       "1.0.0")],
        nodes={NODE: "node-a"},
    )


def test_a_whole_snapshot_passes_with_its_counts() -> None:
    report = check_all(_observed(), "clean")
    assert report.ok, report.text()
    assert report.summary() == {"records": 3, "requests": 4, "feedback": 2, "duplicates": 0,
                                "losses": 0}
    assert report.count("records", "aliases") == 1
    assert report.count("feedback", "in_lineage") == 1
    assert report.count("feedback", "pending") == 1


def test_records_lost_stale_or_wrongly_dead_are_named() -> None:
    o = _observed()
    lost = check_records(replace(o, indexed={}))
    assert lost.counts["losses"] == 2 and "no chunk in Milvus" in lost.violations[0]
    stale = check_records(replace(o, indexed={"a": ["a0", "a1", "a2"]}))
    assert stale.counts["duplicates"] == 1 and "3 chunks" in stale.violations[0]
    wrong_dead = [*o.dead, DeadLettered.model_construct(key="a", reason=DeadLetterReason(
        "not_json"))]
    assert any("good record a was dead-lettered" in v
               for v in check_records(replace(o, dead=wrong_dead)).violations)
    undead = check_records(replace(o, dead=[]))
    assert undead.counts["losses"] == 1 and "bad-1" in undead.violations[0]
    stray = check_records(replace(o, indexed={"a": ["a0", "a1"], "zz": ["x"]}))
    assert stray.counts["duplicates"] == 1 and "zz" in stray.violations[0]


def test_feedback_lost_or_in_two_lineages_is_named() -> None:
    o = _observed()
    v2 = _manifest("1.0.1", ["r1"])
    twice = replace(o, store=replace(o.store, manifests={**o.store.manifests,
                                                          ("chat", "1.0.1"): v2}))
    assert check_feedback(twice).counts["duplicates"] == 1
    gone = replace(o, learner=LearnerRows({}, frozenset(), frozenset()))
    result = check_feedback(gone)
    assert result.counts["losses"] == 1 and "r2" in result.violations[0]
    off_topic = check_feedback(replace(o, feedback_events=[]))
    assert off_topic.counts["losses"] == 2


def test_a_5xx_passes_only_inside_its_nodes_window_or_a_dependency_outage() -> None:
    o = _observed()
    failed = [*o.requests, _request("score", "r9", 20.0, status=500, error="boom")]
    assert not check_http(replace(o, requests=failed)).ok
    crashed = [Window("node-a", 19.0, 25.0, "kill -9")]
    assert check_http(replace(o, requests=failed, windows=crashed)).ok
    other = [Window("node-b", 19.0, 25.0, "kill -9")]
    assert not check_http(replace(o, requests=failed, windows=other)).ok
    unavailable = [*o.requests, _request("score", "r9", 20.0, status=503, error="store_unavail")]
    outage = [Window("redis", 19.0, 21.0, "kill -9")]
    assert check_http(replace(o, requests=unavailable, windows=outage)).ok
    assert not check_http(replace(o, requests=failed, windows=outage)).ok


def test_an_answer_naming_a_version_not_active_then_is_named() -> None:
    o = _observed()
    early = [*o.requests, _request("chat", "r5", 2.0, version="1.0.0")]
    result = check_versions(replace(o, requests=early))
    assert result.counts["mismatches"] == 1 and "active then: {None}" in result.violations[0]
    restarted = [*o.activations, Activation("node-a", 30.0, "*", None)]
    late = [*o.requests, _request("chat", "r6", 31.0, version="1.0.0")]
    assert not check_versions(replace(o, requests=late, activations=restarted)).ok
    assert check_versions(replace(o, requests=[_request("chat", "r7", 4.95)])).ok  # the swap


def test_store_problems_and_dangling_events_are_named() -> None:
    o = _observed()
    assert not check_adapters(replace(o, store=replace(o.store, problems=["chat/2.0.0: x"]))).ok
    dangling = AdapterPromoted(schema_version=1, event_id="e2", task="chat", occurred_at=NOW,
                               version="9.0.0", manifest_sha256="2" * 64)
    result = check_adapters(replace(o, model_events=[*o.model_events, dangling]))
    assert result.violations == ("adapter_promoted names chat@9.0.0: no such version directory",)


def test_loadgen_flags_a_stream_whose_chunks_name_two_versions() -> None:
    def chunk(version: str | None) -> str:
        return "data: " + json.dumps({"choices": [{"delta": {"content": "x"}}],
                                      "lorafeed": {"request_id": "r", "adapter_version": version}})

    worker = _Worker(None, NODE, MIX, random.Random(0), [])  # type: ignore[arg-type]
    same, mixed = _request("chat", "", 1.0), _request("chat", "", 1.0)
    same.request_id = mixed.request_id = None
    for record, versions in ((same, [None, None]), (mixed, [None, "1.0.1"])):
        for version in versions:
            worker._on_sse(record, chunk(version), [])
    assert same.error is None and not same.failed
    assert mixed.failed and "named versions None and 1.0.1" in (mixed.error or "")
