"""Invariants 3 and 5 on the wire (pure, over an `Observed` snapshot).

HTTP: no answer outside a node's own crash window was a 5xx, a transport error or an in-band
stream error; a Redis or Milvus outage may answer 503 (retryable, `Retry-After`) while it lasts;
the load sends only valid requests, so any 4xx is a violation too.
Versions: every answer names one version that its node had active at some moment between the
request's start and end (node logs: "now serving"; a new incarnation starts on the base model).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict

from bench.loadgen import RequestRecord
from tests.faults.observe import Activation, Observed
from tests.faults.results import CheckResult, Violations

CRASH_SLACK_S = 2.0  # a request in flight when the node was stopped fails just after
OUTAGE_SLACK_S = 5.0  # clients reconnect to a restarted Redis on their next command
UNAVAILABLE = {"store_unavailable", "broker_unavailable", "retrieval_unavailable"}
VERSION_SLACK_S = 0.25  # log timestamps have millisecond resolution; one clock on one machine


def _overlaps(record: RequestRecord, start: float, end: float | None, slack: float) -> bool:
    end = math.inf if end is None else end
    return record.started_at <= end + slack and record.ended_at >= start - slack


def _unavailable(record: RequestRecord) -> bool:
    """A retryable "dependency unavailable" answer: a 503, or a stream that started (200) and
    then ended with such an error event."""
    in_band = record.status == 200 and (record.error or "").split(":")[0] in UNAVAILABLE
    return record.status == 503 or in_band


def check_http(o: Observed) -> CheckResult:
    v = Violations()
    counts = Counter[str]()
    for _mix, record in o.loads():
        counts["requests"] += 1
        node = o.nodes.get(record.node, record.node)
        failed = record.status == 0 or record.status >= 500 or record.error is not None
        if not failed:
            counts["ok"] += 1
            continue
        if any(w.scope == node and _overlaps(record, w.start, w.end, CRASH_SLACK_S)
               for w in o.windows):
            counts["in_crash_window"] += 1
            continue
        if _unavailable(record) and any(
            w.scope in ("redis", "milvus") and _overlaps(record, w.start, w.end, OUTAGE_SLACK_S)
            for w in o.windows
        ):
            counts["503_in_outage"] += 1
            continue
        counts["violations"] += 1
        v.add(f"{node} {record.endpoint} at {record.started_at:.2f}: status {record.status} "
              f"{record.error or ''}"[:300])
    return v.result("http", {k: counts[k] for k in
                             ("requests", "ok", "in_crash_window", "503_in_outage", "violations")})


Timeline = list[tuple[float, str | None]]  # [(from, version)] of one (node, task)


def timelines(activations: list[Activation], tasks: set[str]) -> dict[tuple[str, str], Timeline]:
    """(node, task) -> [(from, version)] in time order; an incarnation start ("*") resets every
    one of `tasks` on that node to the base model."""
    lines: dict[tuple[str, str], Timeline] = defaultdict(list)
    for a in sorted(activations, key=lambda a: a.at):
        for task in tasks if a.task == "*" else {a.task}:
            lines[(a.node, task)].append((a.at, a.version))
    return lines


def active_during(line: Timeline, start: float, end: float,
                  slack: float = VERSION_SLACK_S) -> set[str | None]:
    """Versions active at some moment of [start, end] on one (node, task) timeline."""
    found: set[str | None] = set()
    for i, (since, version) in enumerate(line):
        until = line[i + 1][0] if i + 1 < len(line) else math.inf
        if since <= end + slack and until >= start - slack:
            found.add(version)
    return found


def check_versions(o: Observed) -> CheckResult:
    v = Violations()
    lines = timelines(o.activations, o.tasks())
    answers, named = 0, Counter[str]()
    for mix, record in o.loads():
        if record.endpoint not in ("score", "chat") or record.failed:
            continue
        answers += 1
        node = o.nodes.get(record.node, record.node)
        task = mix.score_task if record.endpoint == "score" else mix.chat_task
        named[f"{task}@{record.adapter_version or 'base'}"] += 1
        if record.adapter_version is not None and \
                o.store.digest(task, record.adapter_version) is None:
            v.add(f"{node} answered {task} with {record.adapter_version}: not in the store")
        active = active_during(lines.get((node, task), []), record.started_at, record.ended_at)
        if record.adapter_version not in active:
            v.add(f"{node} answered {task} with {record.adapter_version} at "
                  f"{record.started_at:.2f}-{record.ended_at:.2f}; active then: {active}")
    swaps = sum(1 for a in o.activations if a.task != "*")
    return v.result("versions", {"answers": answers, "versions_named": len(named),
                                 "activations": swaps, "mismatches": len(v.items)})
