"""No raw PII at rest (invariant 7), proven on the running world: seeded PII values (from
lorafeed.corpus_pii's makers, plus an annotator named by e-mail) go in through every entry point
(records.raw, chat / score / feedback / search over HTTP, a query string, transactions.raw, a
valid raw event and invalid events on feedback.events, invalid ones on transactions.raw), the
learner trains on them, and then everything the system keeps is scanned: Milvus, records.clean,
records.indexed, feedback.events, scores.out, model.events, audit.events, the human-readable
fields of both DLQs, Redis, the learner's SQLite (pending, replay, votes, outbox), the adapter
store (manifests, pointers, weights), scratch dirs, every process log and every /metrics. Only
the raw-input topics and the DLQs' original bytes may hold a raw value."""

from __future__ import annotations

import base64
import json
import random
from typing import Any
from urllib.parse import quote, unquote

import pytest

from lorafeed.corpus_pii import fake_card, fake_email, fake_ipv4, fake_mobile, fake_resident_id
from lorafeed.knowledge import KnowledgeBase, KnowledgeConfig
from lorafeed.privacy import contains_raw_pii
from lorafeed.stores import make_milvus
from schemas import DeadLettered, RecordCleaned, RecordIndexed, Topic
from schemas.feedback import FeedbackReceived
from schemas.manifest import AdapterManifest
from schemas.transactions import TransactionScored
from tests.security.hostile import record
from tests.security.world import FAQ_SOURCE, SecureWorld, wait_until

pytestmark = pytest.mark.integration

TIMEOUT_S = 300


def _seeded(tag: str) -> dict[str, str]:
    rng = random.Random(f"pii-{tag}")
    return {
        "email": fake_email(rng), "email2": fake_email(rng), "annotator": f"rev.{tag}@example.org",
        "mobile": fake_mobile(rng), "id": fake_resident_id(rng), "card": fake_card(rng),
        "ip": fake_ipv4(rng), "intl": "+44 20 7946 0958",
    }


def _variants(values: dict[str, str]) -> list[bytes]:
    """Each value as written, and compact (a card or phone without its spaces or dashes)."""
    found = set()
    for value in values.values():
        found.add(value)
        compact = "".join(c for c in value if c not in " -")
        if sum(c.isdigit() for c in compact) >= 8:
            found.add(compact.lstrip("+"))
    return sorted(v.encode() for v in found)


def _json(event: Any) -> str:
    return event.model_dump_json() if hasattr(event, "model_dump_json") else json.dumps(event)


@pytest.fixture(scope="module")
def traffic(world: SecureWorld) -> dict[str, Any]:
    """Push seeded PII through every entry point and wait until each path has settled."""
    tag = world.serving.tag
    pii = _seeded(tag)
    ids = {k: f"pii-{tag}-{k}" for k in ("faq", "html", "md", "bad", "short")}
    records = [
        record(ids["faq"], f"Q: How do I reach support?\nA: Write to {pii['email']} or call "
               f"{pii['mobile']}, we answer within one business day.", source=FAQ_SOURCE,
               metadata={"owner": pii["email2"], pii["email"]: "contact", "lang": "en"}),
        record(ids["html"], f"<p>Customer {pii['email2']} (IP {pii['ip']}) asked about the refund"
               f" of order 1187.</p><p>Call back on {pii['intl']}.</p>", "text/html",
               source="kb-pii"),
        record(ids["md"], f"# Card issue\nThe card **{pii['card']}** of resident {pii['id']} was"
               " declined twice at checkout; the bank confirmed it.", "text/markdown",
               source="kb-pii"),
        record(ids["bad"], "x", occurred_at=pii["email"]),
        record(ids["short"], f"call {pii['mobile']}"),
    ]
    world.produce(Topic.RECORDS_RAW, [(r["record_id"], json.dumps(r).encode()) for r in records])

    chats, scores = [], []
    with world.http() as client:
        for n in range(8):
            answer = client.post("/v1/chat/completions", json={
                "model": "chat", "max_tokens": 3, "messages": [{"role": "user", "content":
                    f"Question {n}: I am {pii['email']}, card {pii['card']}, phone "
                    f"{pii['mobile']}. Where is order {n}?"}]})
            assert answer.status_code == 200, answer.text
            chats.append(answer.json()["lorafeed"]["request_id"])
        for n in range(2):
            scored = client.post("/v1/score", json={"task": "intent", "text": f"refund {n} for "
                                 f"{pii['email2']}", "fields": {"contact": pii["intl"],
                                                                 "ip": pii["ip"]}})
            assert scored.status_code == 200, scored.text
            scores.append(scored.json()["request_id"])
        sent = [client.post("/v1/feedback", json={"request_id": rid, "kind": "rating",
                                                   "rating": 1, "annotator": pii["annotator"]})
                for rid in chats[:6]]
        sent += [client.post("/v1/feedback", json={
            "request_id": rid, "kind": "correction", "annotator": pii["annotator"],
            "correction": f"Order ships Monday; we mailed {pii['email']} and called "
                          f"{pii['mobile']}."}) for rid in chats[6:]]
        sent += [client.post("/v1/feedback", json={"request_id": rid, "kind": "label",
                                                    "label": "billing",
                                                    "annotator": pii["annotator"]})
                 for rid in scores]
        assert [r.status_code for r in sent] == [202] * len(sent), [r.text for r in sent]
        assert client.post("/v1/search", json={"query": f"refund for {pii['email']}"}) \
            .status_code == 200
        assert client.get(f"/v1/models?contact={quote(pii['email'])}&card="
                          f"{quote(pii['card'])}").status_code == 200

    tx = f"pii-{tag}-tx"
    world.produce(Topic.TRANSACTIONS_RAW, [
        (tx, json.dumps({"schema_version": 1, "event_id": tx, "task": "intent",
                         "fields": {"holder": pii["email"], "card": pii["card"]},
                         "text": f"payment from {pii['ip']}",
                         "occurred_at": "2026-03-01T09:00:00Z"}).encode()),
        (f"{tx}-bad", json.dumps({"schema_version": 1, "event_id": f"{tx}-bad", "task": "intent",
                                  "fields": f"holder {pii['email']} card {pii['card']}",
                                  "occurred_at": "2026-03-01T09:00:00Z"}).encode()),
    ])
    world.produce(Topic.FEEDBACK_EVENTS, [(f"pii-{tag}-fb-bad", json.dumps({
        "schema_version": 1, "request_id": f"pii-{tag}-fb-bad", "task": "chat", "kind": "rating",
        "rating": pii["email"], "adapter_version": None, "input": "x", "output": "y",
        "served_at": "2026-03-01T09:00:00Z", "received_at": pii["mobile"]}).encode()),
        # valid, but raw: a producer other than serving; the learner pseudonymizes on intake
        (f"pii-{tag}-fb-raw", json.dumps({
            "schema_version": 1, "request_id": f"pii-{tag}-fb-raw", "task": "chat",
            "kind": "correction", "correction": f"Write to {pii['email2']} or {pii['mobile']}",
            "annotator": pii["annotator"], "adapter_version": None,
            "input": [{"role": "user", "content": f"I am {pii['email']}, card {pii['card']}"}],
            "output": f"Noted, {pii['email']}", "served_at": "2026-03-01T09:00:00Z",
            "received_at": "2026-03-01T09:00:01Z"}).encode())])
    wait_until(lambda: f"pii-{tag}-fb-raw" in world.sqlite_everything(), TIMEOUT_S,
               "the learner storing the raw feedback event", world)

    requests = set(chats) | set(scores)
    wait_until(lambda: {ids["faq"], ids["html"], ids["md"]} <= {
        e.record_id for e in world.read(Topic.RECORDS_INDEXED) if isinstance(e, RecordIndexed)},
        TIMEOUT_S, "the PII records indexed", world)
    dead = {ids["bad"], ids["short"], f"{tx}-bad", f"pii-{tag}-fb-bad"}
    wait_until(lambda: dead <= {d.key for t in (Topic.RECORDS_DLQ, Topic.FEEDBACK_DLQ)
                                for d in world.read(t) if isinstance(d, DeadLettered)},
               TIMEOUT_S, "the invalid PII events dead-lettered", world)
    wait_until(lambda: any(e.event_id == tx for e in world.read(Topic.SCORES_OUT)
                           if isinstance(e, TransactionScored)), TIMEOUT_S, "the score", world)

    def trained() -> list[AdapterManifest]:
        store = world.serving.store
        manifests = [store.read_manifest("chat", v) for v in store.versions("chat")]
        return [m for m in manifests if set(m.lineage.request_ids) & requests
                or ids["faq"] in m.lineage.record_ids]

    trained_on = wait_until(trained, TIMEOUT_S, "a chat version trained on the PII traffic", world)
    return {"pii": pii, "ids": ids, "requests": requests, "tx": tx, "trained": trained_on}


def _scan(where: str, blob: bytes | str, values: list[bytes], *, detect: bool = False) -> list[str]:
    data = blob.encode("utf-8", "replace") if isinstance(blob, str) else blob
    found = [f"{where}: {v.decode()!r}" for v in values if v in data]
    if detect and contains_raw_pii(data.decode("utf-8", "replace")):
        found += [f"{where}: raw {kind} {raw!r}" for kind, raw in _detected(data)]
    return found


def _detected(data: bytes) -> list[tuple[str, str]]:
    """(kind, raw text) of every value the pseudonymizer would replace, to name it."""
    from lorafeed.privacy import _default_scanner  # the detector contains_raw_pii uses

    hits: list[tuple[str, str]] = []

    def record(kind: str, _value: str, raw: str) -> str:
        hits.append((kind, raw))
        return raw

    _default_scanner().run(data.decode("utf-8", "replace"), record)
    return hits


def test_the_traffic_really_carried_pii(world: SecureWorld, traffic: dict[str, Any]) -> None:
    """The scan below can fail: raw values reached the inputs, and came out as tokens."""
    raw = b"".join(m.value for m in world.messages(Topic.RECORDS_RAW))
    assert traffic["pii"]["email"].encode() in raw
    letters = [d for d in world.read(Topic.RECORDS_DLQ) if isinstance(d, DeadLettered)
               and d.key == traffic["ids"]["bad"]]
    assert traffic["pii"]["email"].encode() in base64.b64decode(letters[0].original_b64)
    clean = [e for e in world.read(Topic.RECORDS_CLEAN) if isinstance(e, RecordCleaned)
             and e.record_id in traffic["ids"].values()]
    assert sum(sum(e.pii_replaced.values()) for e in clean) >= 7  # 2 + 3 + 2 in the texts
    feedback = [e for e in world.read(Topic.FEEDBACK_EVENTS) if isinstance(e, FeedbackReceived)
                and e.request_id in traffic["requests"]]
    assert len(feedback) == 10 and all("[EMAIL:" in (e.annotator or "") for e in feedback)


def test_no_raw_pii_anywhere_at_rest(world: SecureWorld, traffic: dict[str, Any]) -> None:
    values = _variants(traffic["pii"])
    found: list[str] = []
    kb = KnowledgeBase(make_milvus(world.serving.scenario.stack.milvus_uri),
                       KnowledgeConfig(collection=world.collection))
    rows = kb.all_chunks()
    assert any(r.record_id in traffic["ids"].values() for r in rows)
    for row in rows:
        text = json.dumps([row.record_id, row.text, row.source, dict(row.metadata)],
                          ensure_ascii=False)
        found += _scan(f"milvus {row.record_id}", text, values, detect=True)

    # the detector runs on human text only: ids and digests are hex, and digit runs in hex can
    # look like a phone or pass Luhn
    for topic in (Topic.RECORDS_CLEAN, Topic.RECORDS_INDEXED, Topic.SCORES_OUT,
                  Topic.MODEL_EVENTS, Topic.AUDIT_EVENTS):
        for message in world.messages(topic):
            found += _scan(f"{topic}@{message.offset}", message.value + message.key.encode(),
                           values)
    for event in world.read(Topic.RECORDS_CLEAN):
        if isinstance(event, RecordCleaned):
            human = json.dumps([event.text, event.metadata], ensure_ascii=False)
            found += _scan(f"records.clean {event.record_id}", human, values, detect=True)
    for event in world.read(Topic.FEEDBACK_EVENTS):  # serving's events (tests also write raw)
        if isinstance(event, FeedbackReceived) and event.request_id in traffic["requests"]:
            human = json.dumps([event.model_dump(mode="json")["input"], event.output,
                                event.correction, event.annotator], ensure_ascii=False)
            found += _scan(f"feedback.events {event.request_id}", _json(event), values)
            found += _scan(f"feedback.events {event.request_id}", human, values, detect=True)
    for topic in (Topic.RECORDS_DLQ, Topic.FEEDBACK_DLQ):
        for letter in world.read(topic):
            if isinstance(letter, DeadLettered):
                human = f"{letter.key or ''}\n{letter.detail}\n{letter.source_topic}"
                found += _scan(f"{topic} {letter.key} ({letter.reason})", human, values,
                               detect=True)

    found += _scan("redis", world.redis_everything(), values)
    found += _scan("learner sqlite", world.sqlite_everything(), values)
    for path, data in world.files_under(world.root / "adapters", world.root / "state",
                                        world.root / "tmp"):
        found += _scan(str(path.relative_to(world.root)), data, values)
    for name, log in world.logs().items():  # percent-decoded too: access logs hold queries
        found += _scan(f"{name} log", unquote(log.decode("utf-8", "replace")), values)
    for name, text in world.metrics().items():  # seeded values only: floats look like cards
        found += _scan(f"{name} /metrics", text, values)
    assert found == [], "\n".join(found[:30])


def test_the_trained_versions_lineage_holds_tokens_only(traffic: dict[str, Any]) -> None:
    for manifest in traffic["trained"]:
        dumped = manifest.model_dump_json()
        assert not [v for v in _variants(traffic["pii"]) if v in dumped.encode()]
