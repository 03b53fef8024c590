"""Serving nodes as real processes on the real stack: OpenAI and curl clients, feedback with
pseudonymized context on feedback.events, a live rollout across two nodes under load (and a
corrupt version refused by both), API keys and audited admin actions, the streaming scorer, bad
input on the wire, and a schemathesis fuzz of the whole API. Tiny models throughout."""

from __future__ import annotations

import json
import os
import random
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import hypothesis
import hypothesis.errors
import hypothesis.strategies as st
import openai
import pytest
import requests
import schemathesis

from lorafeed.privacy import Pseudonymizer
from schemas import DeadLettered, Topic, encode
from schemas.audit import AuditRecorded
from schemas.feedback import FeedbackReceived
from schemas.transactions import TransactionReceived, TransactionScored
from tests.support.adapters import classification_task, generation_task
from tests.support.serving_proc import (
    PII_KEY,
    Node,
    ServingWorld,
    openapi_document,
    stop_all,
)
from tests.support.stack import RunningStack
from tests.support.workers import wait_for

pytestmark = pytest.mark.integration

TIMEOUT_S = 90
EMAIL, PHONE = "jane.roe@example.com", "+44 20 7946 0958"
RAW_PII = [EMAIL.encode(), PHONE.encode(), b"7946 0958", b"jane.roe"]
PSEUDONYMS = Pseudonymizer(PII_KEY.encode())
EMAIL_TOKEN = PSEUDONYMS.pseudonymize(EMAIL).text
PHONE_TOKEN = PSEUDONYMS.pseudonymize(PHONE).text


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def world(
    stack: RunningStack, tmp_path_factory: pytest.TempPathFactory, models_dir: Path
) -> ServingWorld:
    """A generation task `chat` and a classification task `intent`, both on 1.0.0."""
    tasks = [generation_task("chat"), classification_task("intent")]
    built = ServingWorld.create(stack, tmp_path_factory.mktemp("serving"), models_dir, tasks)
    for task in tasks:
        built.add_version(task.name, "1.0.0", seed=1)
    return built


@pytest.fixture(scope="module")
def node(world: ServingWorld) -> Iterator[Node]:
    started = world.spawn_node("node-main", SERVING_MAX_BODY_BYTES="65536")
    try:
        started.wait_ready()
        yield started
    finally:
        stop_all(started.handle)


def _client(node: Node, key: str) -> httpx.Client:
    return httpx.Client(base_url=node.url, headers={"Authorization": f"Bearer {key}"}, timeout=30)


def _post(node: Node, key: str, path: str, body: dict[str, Any]) -> httpx.Response:
    with _client(node, key) as client:
        return client.post(path, json=body)


# -- 1. clients --------------------------------------------------------------------------------


def test_a_node_serves_openai_and_curl_clients_naming_request_and_version(
    world: ServingWorld, node: Node
) -> None:
    health = httpx.get(f"{node.url}/healthz", timeout=10)
    assert health.status_code == 200 and health.json() == {"status": "ok", "node_id": "node-main"}
    assert httpx.get(f"{node.url}/readyz", timeout=10).json() == {"ready": True, "problems": []}

    client = openai.OpenAI(base_url=f"{node.url}/v1", api_key=world.keys.app, max_retries=0)
    models = {m.id: m.model_extra["lorafeed"] for m in client.models.list()}
    assert models == {
        "chat": {"kind": "generation", "active_version": "1.0.0"},
        "intent": {"kind": "classification", "active_version": "1.0.0"},
    }

    messages = [{"role": "user", "content": "When does my parcel ship?"}]
    answer = client.chat.completions.create(
        model="chat", messages=messages, max_tokens=8, temperature=0  # type: ignore[arg-type]
    )
    extension = answer.model_extra["lorafeed"]
    assert extension["adapter_version"] == "1.0.0"
    assert answer.id == f"chatcmpl-{extension['request_id']}"
    assert answer.choices[0].finish_reason in ("stop", "length")
    assert answer.usage is not None and 1 <= answer.usage.completion_tokens <= 8

    chunks = list(
        client.chat.completions.create(
            model="chat", messages=messages, max_tokens=8, temperature=0, stream=True  # type: ignore[arg-type]
        )
    )
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == answer.choices[0].message.content  # greedy: the same answer either way
    assert {c.model_extra["lorafeed"]["adapter_version"] for c in chunks} == {"1.0.0"}
    assert len({c.model_extra["lorafeed"]["request_id"] for c in chunks}) == 1
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")

    base = client.chat.completions.create(model="chat@base", messages=messages, max_tokens=2)  # type: ignore[arg-type]
    assert base.model_extra["lorafeed"]["adapter_version"] is None

    done = subprocess.run(
        ["curl", "-sS", "--fail-with-body", "-X", "POST", f"{node.url}/v1/score",
         "-H", f"Authorization: Bearer {world.keys.app}", "-H", "Content-Type: application/json",
         "-d", json.dumps({"task": "intent", "text": "I was charged twice for my order"})],
        capture_output=True, text=True, timeout=60, check=True,
    )
    scored = json.loads(done.stdout)
    assert scored["adapter_version"] == "1.0.0" and scored["task"] == "intent"
    assert set(scored["probabilities"]) == {"billing", "shipping", "other"}
    assert scored["label"] == max(scored["probabilities"], key=scored["probabilities"].get)
    assert abs(sum(scored["probabilities"].values()) - 1) < 1e-4
    assert len(scored["request_id"]) == 32


# -- 2. feedback --------------------------------------------------------------------------------


def test_feedback_publishes_pseudonymized_context_once_and_pii_stays_out_of_redis_and_logs(
    world: ServingWorld, node: Node
) -> None:
    key = world.keys.app
    chat = _post(node, key, "/v1/chat/completions", {
        "model": "chat", "max_tokens": 6,
        "messages": [{"role": "user", "content": f"I am {EMAIL}, call me on {PHONE}."}],
    })
    assert chat.status_code == 200, chat.text
    chat_id = chat.json()["lorafeed"]["request_id"]
    scored = _post(node, key, "/v1/score", {"task": "intent", "text": f"Refund {EMAIL} please"})
    score_id = scored.json()["request_id"]

    rating = {"request_id": chat_id, "kind": "rating", "rating": 1}
    first = _post(node, key, "/v1/feedback", rating)
    assert first.status_code == 202, first.text
    again = _post(node, key, "/v1/feedback", rating)
    assert (again.status_code, again.json()) == (202, first.json())
    conflict = _post(node, key, "/v1/feedback", rating | {"rating": -1})
    assert conflict.status_code == 409 and conflict.json()["error"]["code"] == "feedback_conflict"
    correction = {"request_id": chat_id, "kind": "correction", "correction": f"Write to {EMAIL}."}
    assert _post(node, key, "/v1/feedback", correction).status_code == 202
    label = {"request_id": score_id, "kind": "label", "label": "billing"}
    assert _post(node, key, "/v1/feedback", label).status_code == 202
    unknown = _post(node, key, "/v1/feedback", rating | {"request_id": "never-served"})
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "unknown_request"

    def published() -> dict[tuple[str, str], list[FeedbackReceived]] | None:
        found: dict[tuple[str, str], list[FeedbackReceived]] = {}
        for event in world.read(Topic.FEEDBACK_EVENTS):
            if isinstance(event, FeedbackReceived) and event.request_id in (chat_id, score_id):
                found.setdefault((event.request_id, event.kind), []).append(event)
        return found if len(found) == 3 else None

    events = wait_for(published, TIMEOUT_S, "three feedback events")
    assert len(events[chat_id, "rating"]) == 1, "an identical retry published again"
    [rated], [corrected], [labelled] = (
        events[chat_id, "rating"], events[chat_id, "correction"], events[score_id, "label"]
    )
    served_input = [m.model_dump() for m in rated.input]  # type: ignore[union-attr]
    assert served_input == [
        {"role": "user", "content": f"I am {EMAIL_TOKEN}, call me on {PHONE_TOKEN}."}
    ]
    assert (rated.task, rated.rating, rated.adapter_version) == ("chat", 1, "1.0.0")
    assert corrected.correction == f"Write to {EMAIL_TOKEN}."
    assert corrected.input == rated.input and corrected.output == rated.output
    assert (labelled.task, labelled.label, labelled.adapter_version) == (
        "intent", "billing", "1.0.0"
    )
    assert labelled.input == f"Refund {EMAIL_TOKEN} please"
    assert labelled.output == scored.json()["label"]

    wire = b"".join(encode(e) for e in (rated, corrected, labelled))
    stored = world.redis_dump()
    logged = node.log().encode()
    for where, blob in (("feedback.events", wire), ("Redis", b"\n".join(stored)), ("log", logged)):
        leaked = [raw for raw in RAW_PII if raw in blob]
        assert not leaked, f"raw PII {leaked} in {where}"
    assert EMAIL_TOKEN.encode() in b"\n".join(stored) and PHONE_TOKEN.encode() in b"\n".join(stored)


# -- 3. live rollout ----------------------------------------------------------------------------


@dataclass
class ScoreLoop:
    """Clients sending /v1/score to each node in turn, one thread per node, until stopped."""

    key: str
    # (node, status, version, time) of every answer, in order per node
    results: list[tuple[str, int, str | None, float]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    threads: list[threading.Thread] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)

    def start(self, nodes: list[Node]) -> None:
        for node in nodes:
            self.threads.append(threading.Thread(target=self._run, args=(node,), daemon=True))
            self.threads[-1].start()

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(60)

    def _run(self, node: Node) -> None:
        deadline = time.monotonic() + 300  # bounded even if the test forgets to stop it
        with _client(node, self.key) as client:
            n = 0
            while not self.stopping.is_set() and time.monotonic() < deadline:
                n += 1
                try:
                    response = client.post("/v1/score", json={"task": "intent", "text": f"t{n}"})
                    version = response.json().get("adapter_version")
                    self.results.append((node.node_id, response.status_code, version, time.time()))
                    if response.status_code != 200:
                        self.failures.append(f"{node.node_id}: {response.status_code} "
                                             f"{response.text}")
                except Exception as exc:  # a transport error is a failed request too
                    self.failures.append(f"{node.node_id}: {type(exc).__name__}: {exc}")
                time.sleep(0.01)

    def versions(self, node_id: str, since: float = 0.0) -> list[str | None]:
        return [v for n, _s, v, t in list(self.results) if n == node_id and t >= since]


def _node_events(world: ServingWorld, type_: str, version: str) -> dict[str, Any]:
    """node -> its model event of `type_` naming `version`."""
    return {e.node: e for e in world.model_events(type_) if e.version == version}  # type: ignore[attr-defined]


def test_two_nodes_switch_live_under_load_and_both_refuse_a_corrupt_version(
    stack: RunningStack, tmp_path: Path, models_dir: Path
) -> None:
    world = ServingWorld.create(stack, tmp_path, models_dir, [classification_task("intent")])
    world.add_version("intent", "1.0.0", seed=1)
    names = {"node-a", "node-b"}
    nodes: list[Node] = []
    loop = ScoreLoop(world.keys.app)
    try:
        nodes += [world.spawn_node(name) for name in sorted(names)]
        for node in nodes:
            node.wait_ready()
        loop.start(nodes)
        wait_for(lambda: all(loop.versions(n.node_id) for n in nodes), 30, "first answers")

        world.promote(world.add_version("intent", "1.1.0", seed=2))
        wait_for(lambda: names <= _node_events(world, "adapter_activated", "1.1.0").keys(),
                 TIMEOUT_S, "AdapterActivated 1.1.0 from both nodes")
        wait_for(lambda: all("1.1.0" in loop.versions(n.node_id) for n in nodes), 30,
                 "answers from 1.1.0 on both nodes")

        corrupt = world.add_version("intent", "1.2.0", seed=3)
        world.corrupt("intent", "1.2.0")
        world.promote(corrupt)
        failed = wait_for(
            lambda: names <= (found := _node_events(world, "adapter_load_failed", "1.2.0")).keys()
            and found,
            TIMEOUT_S, "AdapterLoadFailed 1.2.0 from both nodes",
        )
        assert all("sha256" in e.reason for e in failed.values()), failed
        refused_at = time.time()
        wait_for(lambda: all(len(loop.versions(n.node_id, refused_at)) >= 20 for n in nodes), 30,
                 "answers after the refusal")
    finally:
        loop.stop()
        stop_all(*(n.handle for n in nodes))

    assert loop.failures == [], loop.failures[:5]
    for node in nodes:
        versions = loop.versions(node.node_id)
        assert set(versions) == {"1.0.0", "1.1.0"}, set(versions)
        switched = versions.index("1.1.0")
        assert versions[switched:] == ["1.1.0"] * (len(versions) - switched), "went back"
        after = loop.versions(node.node_id, refused_at)
        assert after == ["1.1.0"] * len(after)
    assert len(loop.results) >= 100


# -- 4. access control --------------------------------------------------------------------------


def test_keys_and_roles_are_enforced_and_admin_actions_are_audited(
    world: ServingWorld, node: Node
) -> None:
    anonymous = httpx.get(f"{node.url}/v1/models", timeout=10)
    assert anonymous.status_code == 401 and "www-authenticate" in anonymous.headers
    wrong = httpx.get(f"{node.url}/v1/models", headers={"Authorization": "Bearer nope"}, timeout=10)
    assert wrong.status_code == 401
    with _client(node, world.keys.app) as app:
        assert app.get("/metrics").status_code == 403
        assert app.post("/admin/tasks/intent/pin", json={"version": "base"}).status_code == 403
        assert app.get("/v1/models").status_code == 200
    admin = httpx.Client(base_url=node.url, headers={"X-API-Key": world.keys.admin}, timeout=30)
    try:
        metrics = admin.get("/metrics")
        assert metrics.status_code == 200 and "lorafeed" in metrics.text
        pinned = admin.post("/admin/tasks/intent/pin", json={"version": "base", "reason": "probe"})
        assert pinned.status_code == 200 and pinned.json()["version"] is None, pinned.text
        served = _post(node, world.keys.app, "/v1/score", {"task": "intent", "text": "x"})
        assert served.json()["adapter_version"] is None
        unpinned = admin.post("/admin/tasks/intent/unpin")
        assert unpinned.json()["version"] == "1.0.0", unpinned.text
        rolled = admin.post("/admin/tasks/intent/rollback", json={"to_version": "base"})
        assert rolled.status_code == 200 and rolled.json()["version"] is None, rolled.text
    finally:
        restored = admin.post("/admin/tasks/intent/unpin", json={"reason": "restore"})
        admin.close()
    assert restored.json()["version"] == "1.0.0"

    ids = {r.json()["audit_id"]: r.json()["action"] for r in (pinned, unpinned, rolled, restored)}

    def audited() -> list[AuditRecorded] | None:
        found = [e for e in world.read(Topic.AUDIT_EVENTS)
                 if isinstance(e, AuditRecorded) and e.audit_id in ids]
        return found if len(found) == len(ids) else None

    events = {e.audit_id: e for e in wait_for(audited, TIMEOUT_S, "four audit events")}
    for audit_id, action in ids.items():
        event = events[audit_id]
        assert (event.actor, event.action, event.task) == ("ops", f"adapter.{action}", "intent")
        assert event.detail["node_id"] == "node-main"
    assert events[pinned.json()["audit_id"]].detail["reason"] == "probe"


# -- 5. streaming scorer ------------------------------------------------------------------------


def test_scorer_scores_each_event_once_dead_letters_bad_ones_and_late_labels_are_accepted(
    world: ServingWorld, node: Node
) -> None:
    ids = [f"tx-{world.tag}-{n}" for n in range(3)]
    events = [
        TransactionReceived(
            schema_version=1, event_id=event_id, task="intent",
            fields={"amount": 12.5 + n, "contact": EMAIL}, text="card used abroad",
            occurred_at=datetime(2026, 3, 1, 9, tzinfo=UTC),
        )
        for n, event_id in enumerate(ids)
    ]
    bad_id = f"bad-{world.tag}"
    world.produce(Topic.TRANSACTIONS_RAW, [(e.event_id, encode(e)) for e in events])
    world.produce(Topic.TRANSACTIONS_RAW, [(bad_id, b'{"schema_version": 1, "event_id": "x"}')])
    handle, _ = world.spawn_scorer("s1")
    try:
        def scores() -> dict[str, list[TransactionScored]]:
            found: dict[str, list[TransactionScored]] = {}
            for event in world.read(Topic.SCORES_OUT):
                if isinstance(event, TransactionScored):
                    found.setdefault(event.event_id, []).append(event)
            return found

        first = wait_for(lambda: (s := scores()) and set(ids) <= set(s) and s, TIMEOUT_S,
                         "a score for every transaction")
        assert all(len(first[i]) == 1 and first[i][0].adapter_version == "1.0.0" for i in ids)
        [letter] = wait_for(lambda: [
            e for e in world.read(Topic.FEEDBACK_DLQ)
            if isinstance(e, DeadLettered) and e.key == bad_id
        ], TIMEOUT_S, "the invalid transaction on feedback.dlq")
        assert letter.reason == "invalid_field" and "fields" in letter.detail
        assert letter.source_topic == f"{world.prefix}transactions.raw"

        world.produce(Topic.TRANSACTIONS_RAW, [(ids[0], encode(events[0]))])  # redelivery
        again = wait_for(lambda: len(s := scores().get(ids[0], [])) == 2 and s, TIMEOUT_S,
                         "the redelivered event's score")
        assert again[0] == again[1]  # the first score, scored_at included, not a new one

        label = {"request_id": ids[0], "kind": "label", "label": "other"}
        accepted = _post(node, world.keys.app, "/v1/feedback", label)
        assert accepted.status_code == 202, accepted.text
        [feedback] = wait_for(lambda: [
            e for e in world.read(Topic.FEEDBACK_EVENTS)
            if isinstance(e, FeedbackReceived) and e.request_id == ids[0]
        ], TIMEOUT_S, "the late label on feedback.events")
        assert (feedback.kind, feedback.adapter_version, feedback.output) == (
            "label", "1.0.0", first[ids[0]][0].label
        )
        assert feedback.input == f"amount: 12.5\ncontact: {EMAIL_TOKEN}\n\ncard used abroad"
    finally:
        stop_all(handle)
    scorer_log = Path(handle.log_path).read_bytes()
    assert not [raw for raw in RAW_PII if raw in scorer_log]
    assert b"stopped: 3 scored, 1 replayed, 1 dead-lettered" in scorer_log


# -- bad input on the wire ----------------------------------------------------------------------

BAD_INPUT = [
    ("malformed-json", "/v1/score", b'{"task": "intent", "text": ', 422, "invalid_request"),
    ("lone-surrogate", "/v1/score", b'{"task": "intent", "text": "a\\ud800"}', 422,
     "invalid_request"),
    ("oversized", "/v1/score", json.dumps({"task": "intent", "text": "a" * 70_000}).encode(), 413,
     "body_too_large"),
    ("unknown-task", "/v1/score", b'{"task": "nope", "text": "x"}', 404, "unknown_task"),
    ("unknown-version", "/v1/score", b'{"task": "intent@9.9.9", "text": "x"}', 404,
     "unknown_version"),
    ("wrong-kind", "/v1/score", b'{"task": "chat", "text": "x"}', 422, "wrong_task_kind"),
    ("chat-unknown-version", "/v1/chat/completions",
     b'{"model": "chat@9.9.9", "messages": [{"role": "user", "content": "x"}]}', 404,
     "unknown_version"),
    ("tiny-temperature", "/v1/chat/completions",
     b'{"model": "chat", "max_tokens": 2, "temperature": 1e-300, '
     b'"messages": [{"role": "user", "content": "x"}]}', 200, None),
]


@pytest.mark.parametrize(
    ("path", "body", "status", "code"),
    [pytest.param(*case[1:], id=case[0]) for case in BAD_INPUT],
)
def test_bad_input_gets_a_clear_4xx(
    world: ServingWorld, node: Node, path: str, body: bytes, status: int, code: str | None
) -> None:
    with _client(node, world.keys.app) as client:
        response = client.post(path, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == status, response.text
    if code is not None:
        error = response.json()["error"]
        assert error["code"] == code and error["message"]
        assert "/tmp" not in error["message"] and str(world.root) not in error["message"]


# -- 6. fuzzing ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fuzz_node(world: ServingWorld) -> Iterator[Node]:
    """A node of its own (the fuzzer pins and rolls back tasks), searching an empty collection."""
    started = world.spawn_node(
        "node-fuzz", SERVING_MAX_TOKENS_CAP="8", SERVING_RETRIEVAL="true",
        SERVING_COLLECTION=world.create_collection(),
    )
    try:
        started.wait_ready()
        yield started
    finally:
        stop_all(started.handle)


# per operation and mode: 25 is ~550 requests, well under a minute; raise it to hunt locally
FUZZ_EXAMPLES = int(os.environ.get("LORAFEED_FUZZ_EXAMPLES", "25"))


def test_fuzzing_the_api_never_gets_a_5xx(world: ServingWorld, fuzz_node: Node) -> None:
    """schemathesis cases (valid and invalid) for every operation of create_app's OpenAPI
    schema, sent with a valid key (admin for /admin and /metrics): no answer is a 5xx. Valid
    cases are steered to real task names, versions and served request ids, so they reach the
    models, the registry and the feedback path instead of stopping at 404 unknown_task.
    Hypothesis is driven directly (schemathesis' lazy pytest fixtures fail on pytest 9)."""
    served = [
        _post(fuzz_node, world.keys.app, "/v1/score", {"task": "intent", "text": "x"}),
        _post(fuzz_node, world.keys.app, "/v1/chat/completions",
              {"model": "chat", "max_tokens": 2, "messages": [{"role": "user", "content": "x"}]}),
    ]
    served_ids = [served[0].json()["request_id"], served[1].json()["lorafeed"]["request_id"]]
    schema = schemathesis.openapi.from_dict(openapi_document(world.root / "schema", world.keys))
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 11
    failures: list[str] = []
    with requests.Session() as session:
        for operation in operations:
            admin = operation.path.startswith("/admin") or operation.path == "/metrics"
            headers = {"Authorization": f"Bearer {world.keys.admin if admin else world.keys.app}"}
            for mode in schemathesis.GenerationMode:
                strategy = operation.as_strategy(generation_mode=mode)
                if mode == schemathesis.GenerationMode.POSITIVE:
                    strategy = st.tuples(strategy, st.randoms(use_true_random=False)).map(
                        lambda drawn: _steer(drawn[0], drawn[1], served_ids)
                    )
                statuses = _fuzz(strategy, mode, fuzz_node.url, session, headers, failures)
                assert statuses, f"no case sent for {operation.method} {operation.path} ({mode})"
    log = fuzz_node.log()
    assert failures == [], "\n".join(failures[:10]) + "\n" + log[-3000:]
    assert "Traceback" not in log, log[log.index("Traceback") - 500:][:4000]


def _steer(case: Any, rnd: random.Random, served_ids: list[str]) -> Any:
    """Point a valid case at what exists on the node most of the time (names, versions, ids),
    and give feedback the one payload field its kind needs."""
    if "task" in (case.path_parameters or {}):
        case.path_parameters["task"] = rnd.choice(["chat", "intent", "intent", "nope"])
    body = case.body
    if not isinstance(body, dict):
        return case
    path = case.operation.path
    if path == "/v1/chat/completions":
        body["model"] = rnd.choice(["chat", "chat", "chat@1.0.0", "chat@base", "chat@9.9.9"])
        if rnd.random() < 0.7:
            body["max_tokens"] = rnd.randint(1, 8)
    elif path == "/v1/score":
        body["task"] = rnd.choice(["intent", "intent", "intent@1.0.0", "intent@base", "chat"])
        if not body.get("fields") and not (body.get("text") or "").strip() and rnd.random() < 0.8:
            body["text"] = "Where is my parcel?"
    elif path == "/v1/feedback":
        body["request_id"] = rnd.choice([*served_ids, "never-served"])
        kind = body.get("kind", "rating")
        for field in {"rating", "correction", "label"} - {kind}:
            body.pop(field, None)
        payload = {"rating": rnd.choice([1, -1]), "correction": "A better answer.",
                   "label": rnd.choice(["billing", "other", "nope"])}
        body.setdefault(kind, payload[kind])
    elif path.endswith("/pin") and rnd.random() < 0.5:
        body["version"] = rnd.choice(["1.0.0", "base"])
    elif path.endswith("/rollback") and rnd.random() < 0.5:
        body["to_version"] = rnd.choice(["1.0.0", "base", None])
    return case


def _fuzz(strategy: Any, mode: Any, url: str, session: requests.Session,
          headers: dict[str, str], failures: list[str]) -> list[int]:
    """Send FUZZ_EXAMPLES cases drawn from `strategy`; 5xx answers go to `failures`."""
    statuses: list[int] = []

    @hypothesis.given(case=strategy)
    @hypothesis.settings(
        max_examples=FUZZ_EXAMPLES, deadline=None, derandomize=True, database=None,
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
        suppress_health_check=list(hypothesis.HealthCheck),
    )
    def send(case: Any) -> None:
        response = case.call(base_url=url, session=session, headers=headers, timeout=30)
        statuses.append(response.status_code)
        if response.status_code >= 500:
            failures.append(f"{case.method} {case.formatted_path} ({mode}) -> "
                            f"{response.status_code}: {case.as_curl_command()}")

    try:
        send()
    except hypothesis.errors.Unsatisfiable:
        if mode == schemathesis.GenerationMode.POSITIVE:
            raise
        statuses.append(0)  # nothing in this operation can be made invalid (no parameters)
    return statuses
