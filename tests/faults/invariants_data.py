"""Invariants 1-3 on data (pure functions of an `Observed` snapshot).

Records: every raw record the broker accepted is in Milvus exactly as recomputed (or is an
alias of an indexed twin), or on records.dlq with its reason; records.dlq holds exactly the bad
input injected (an outage never turns a good record into a dead letter).
Feedback: every feedback event a node answered 202 is on feedback.events and in exactly one
published version's lineage, or still kept by the learner (pending, held out, in review, a -1
rating, a rating signal).
"""

from __future__ import annotations

from collections import Counter, defaultdict

from bench.loadgen import RequestRecord
from tests.faults.observe import Observed
from tests.faults.results import CheckResult, Violations
from tests.support.expect import latest_outcomes

# Example states that keep feedback for later (learner/pending_schema.py): waiting to train or
# held out, disputed, a -1 rated answer, a disputed label replaced by a review decision.
KEPT = {"pending", "review", "negative", "superseded"}


def check_records(o: Observed) -> CheckResult:
    v = Violations()
    accepted = [s for s in o.sent if s.accepted]
    sent_keys = {s.key for s in o.sent}
    latest = latest_outcomes(o.outcomes)
    dead: dict[str, list[str]] = defaultdict(list)
    for letter in o.dead:
        dead[letter.key or ""].append(letter.reason.value)
    must_die = {s.key: s.reason for s in accepted if s.reason is not None}
    must_die |= {s.key: o.expected.rejected[s.key] for s in accepted
                 if s.reason is None and s.key in o.expected.rejected}
    good = [s.key for s in accepted if s.reason is None and s.key in o.expected.prepared]
    indexed = aliases = losses = duplicates = 0
    for rid in good:
        if rid in dead:
            v.add(f"good record {rid} was dead-lettered: {dead[rid]}")
        outcome = latest.get(rid)
        if outcome is None:
            losses += 1
            v.add(f"{rid}: accepted by the broker, no outcome on records.indexed")
            continue
        if outcome.duplicate_of:
            aliases += 1
            if rid in o.indexed:
                duplicates += 1
                v.add(f"{rid} is an alias of {outcome.duplicate_of} and is indexed too")
            if outcome.duplicate_of not in o.indexed:
                losses += 1
                v.add(f"{rid} is an alias of {outcome.duplicate_of}, which is not in Milvus")
            continue
        chunks, want = o.indexed.get(rid), o.expected.chunks[rid]
        if chunks is None:
            losses += 1
            v.add(f"{rid}: indexed per records.indexed, no chunk in Milvus")
        elif chunks != want:
            duplicates += len(chunks) > len(want)
            losses += len(chunks) < len(want)
            v.add(f"{rid}: Milvus holds {len(chunks)} chunks, the recomputation {len(want)}"
                  + (" (texts differ)" if len(chunks) == len(want) else ""))
        else:
            indexed += 1
    strays = sorted(set(o.indexed) - set(good) - (sent_keys - {s.key for s in accepted}))
    duplicates += len(strays)
    for rid in strays:
        v.add(f"Milvus holds {rid}, which no accepted record should have indexed")
    for key, reason in must_die.items():
        if key not in dead:
            losses += 1
            v.add(f"bad record {key} ({reason}) is not on records.dlq")
        elif reason not in dead[key]:
            v.add(f"{key} dead-lettered as {sorted(set(dead[key]))}, expected {reason}")
    for key in sorted(set(dead) - set(must_die)):
        v.add(f"records.dlq holds {key!r} ({sorted(set(dead[key]))}): not injected bad input")
    outcome_counts = Counter(e.record_id for e in o.outcomes)
    redelivered = sum(outcome_counts.values()) - len(outcome_counts)
    redelivered += sum(len(reasons) - 1 for reasons in dead.values())
    return v.result("records", {
        "accepted": len(accepted), "unacknowledged": len(o.sent) - len(accepted),
        "indexed": indexed, "aliases": aliases, "dead_lettered": len(set(dead) & set(must_die)),
        "redelivered": redelivered, "duplicates": duplicates, "losses": losses,
    })


def check_feedback(o: Observed) -> CheckResult:
    v = Violations()
    served = {r.request_id: (mix, r) for mix, r in o.loads()
              if r.endpoint in ("score", "chat") and r.request_id and not r.failed}
    accepted = [r for _, r in o.loads() if r.endpoint == "feedback" and r.status == 202]
    on_topic = Counter[tuple[str, str]]((e.request_id, e.kind) for e in o.feedback_events)
    lineage: dict[tuple[str, str], list[str]] = defaultdict(list)
    for (task, version), manifest in o.store.manifests.items():
        for request_id in manifest.lineage.request_ids:
            lineage[(task, request_id)].append(version)
    rows: dict[tuple[str, str], list[tuple[str, str | None]]] = defaultdict(list)
    for (task, _eid), (state, consumer, source_id) in o.learner.examples.items():
        if source_id:
            rows[(task, source_id)].append((state, consumer))
    counts = Counter[str]()
    for record in accepted:
        rid = record.request_id or ""
        if rid not in served:
            v.add(f"feedback on {rid}: 202 for a request the load never saw answered")
            continue
        mix, source = served[rid]
        task = mix.score_task if source.endpoint == "score" else mix.chat_task
        kind = _kind(record, source)
        copies = on_topic[(rid, kind)]
        counts["redelivered"] += max(0, copies - 1)
        if copies == 0:
            counts["losses"] += 1
            v.add(f"{kind} on {rid}: answered 202, not on feedback.events")
            continue
        versions = lineage.get((task, rid), [])
        consumed = {ver for state, ver in rows.get((task, rid), []) if state == "consumed"}
        if len(versions) > 1:
            counts["duplicates"] += 1
            v.add(f"{kind} on {rid}: in the lineage of {task}@{versions}")
        elif versions:
            counts["in_lineage"] += 1
            if consumed - set(versions):
                v.add(f"{kind} on {rid}: in {task}@{versions[0]}'s lineage, the learner's "
                      f"store says consumed by {sorted(consumed, key=str)}")
        elif consumed:
            counts["losses"] += 1
            v.add(f"{kind} on {rid}: consumed by {task}@{sorted(consumed, key=str)}, which does "
                  "not list it (or does not exist)")
        elif any(state in KEPT for state, _ in rows.get((task, rid), [])) \
                or (task, rid) in o.learner.votes or (task, rid) in o.learner.ratings:
            counts["pending"] += 1
        else:
            counts["losses"] += 1
            v.add(f"{kind} on {rid}: answered 202, in no version's lineage, not in the learner")
    return v.result("feedback", {
        "accepted": len(accepted), "in_lineage": counts["in_lineage"],
        "pending": counts["pending"], "redelivered": counts["redelivered"],
        "duplicates": counts["duplicates"], "losses": counts["losses"],
    })


def _kind(feedback: RequestRecord, served: RequestRecord) -> str:
    """The feedback kind: a record may say it ({"kind": ...} as its output, the correction
    load); loadgen labels scored answers and rates chat answers."""
    if isinstance(feedback.output, dict) and isinstance(feedback.output.get("kind"), str):
        return str(feedback.output["kind"])
    return "label" if served.endpoint == "score" else "rating"
