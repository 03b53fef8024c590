"""What the fault suite sent so far (records with their delivery reports, requests and their
answers) and the index recomputed for it, plus one scenario's run: steady load on, the fault,
recovery, load off, then the invariant check repeated until it passes or time runs out."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from bench.loadgen import Mix, RequestRecord
from lorafeed.embedder import Embedder
from schemas import Topic, topic_name
from tests.faults.invariants import check_all
from tests.faults.load import (
    MIX,
    CorrectionLoad,
    RecordFeed,
    SentRecord,
    corpus_records,
    hostile,
    interleave,
    request_load,
)
from tests.faults.observe import observe
from tests.faults.results import Report
from tests.faults.world import FaultWorld, assert_running
from tests.support.expect import Expected, expected_outcomes
from tests.support.workers import wait_for

RECORDS_PER_S = 1.0
MIN_RECORDS = 18  # per scenario: every injected bad record is among the first 18
SETTLE_TIMEOUT_S = 300.0
DRAINING = {"records", "feedback"}  # checks that pass once the pipelines caught up


@dataclass
class History:
    embedder: Embedder
    sent: list[SentRecord] = field(default_factory=list)
    requests: list[RequestRecord] = field(default_factory=list)
    expected: Expected = field(default_factory=lambda: Expected({}, {}, {}))
    scenarios: int = 0

    def add(self, sent: list[SentRecord], requests: list[RequestRecord]) -> None:
        produced = [s for s in sent if s.accepted or s.error is not None]
        self.sent += produced
        self.requests += requests
        good = [s.record for s in produced if s.record is not None and s.accepted]
        fresh = expected_outcomes([r for r in good if r is not None], self.embedder)
        self.expected.prepared.update(fresh.prepared)
        self.expected.chunks.update(fresh.chunks)
        self.expected.rejected.update(fresh.rejected)


def _answers_since(records: list[RequestRecord], since: float, url: str) -> int:
    return sum(1 for r in list(records)
               if r.node == url and r.started_at >= since and not r.failed)


def run_scenario(world: FaultWorld, history: History, name: str,
                 fault: Callable[[FaultWorld], object]) -> Report:
    """Load on, `fault(world)` (which recovers what it broke), load on until every node answered
    again, load off, then the invariants over everything sent so far."""
    history.scenarios += 1
    seed = history.scenarios
    items = interleave(corpus_records(400, seed, f"f{world.tag}"), hostile(f"s{seed}"))
    feed = RecordFeed(world.stack.bootstrap, topic_name(Topic.RECORDS_RAW, world.prefix),
                      RECORDS_PER_S).start(items)
    load = request_load(world.node_urls, world.keys.app, seed=seed).start()
    teacher = CorrectionLoad(world.node_urls, world.keys.app).start()
    try:
        began = time.time()
        wait_for(lambda: all(_answers_since(load.records, began, u) >= 3 for u in world.node_urls)
                 and feed.produced >= 3, 120, "load flowing before the fault")
        world.note(f"{name}: load flowing")
        fault(world)
        world.note(f"{name}: recovered")
        recovered = time.time()
        wait_for(lambda: all(_answers_since(load.records, recovered, u) >= 5
                             for u in world.node_urls) and feed.produced >= MIN_RECORDS,
                 180, "every node answering after recovery")
    finally:
        feed.stop()
        requests = load.stop() + teacher.stop()
        history.add(feed.join(90), requests)
    world.note(f"{name}: load stopped")
    assert_running(world)
    report = settle(world, history, name)
    world.note(f"{name}: checked")
    return report


def settle(world: FaultWorld, history: History, name: str,
           timeout_s: float = SETTLE_TIMEOUT_S,
           extra: Sequence[tuple[Mix, list[RequestRecord]]] = ()) -> Report:
    """Check until the draining invariants (records, feedback) hold, as the pipelines catch up,
    or `timeout_s` passes; then the report of every check. `extra`: other loads and their mix."""
    deadline = time.monotonic() + timeout_s
    while True:
        observed = observe(world, history.sent, history.expected, history.requests, MIX, extra)
        report = check_all(observed, name)
        draining = [r for r in report.results if r.name in DRAINING and not r.ok]
        if not draining or time.monotonic() > deadline:
            return report  # observing again takes seconds: no pause needed between checks
