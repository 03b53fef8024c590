"""Snapshot of everything the invariants look at, read from the live system in an order that
cannot invent a violation: outcome topics before Milvus (an outcome is published after its
upsert), feedback.events and the learner's SQLite before model.events, and model.events before
the adapter store (a version is renamed into place before the store consumes its examples and
before its events are sent)."""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from bench.loadgen import Mix, RequestRecord
from lorafeed.adapter_store import AdapterStore
from lorafeed.adapter_store_errors import AdapterStoreError
from lorafeed.knowledge import KnowledgeBase, KnowledgeConfig
from lorafeed.stores import make_milvus
from schemas import DeadLettered, RecordIndexed, Topic
from schemas.feedback import FeedbackReceived
from schemas.manifest import AdapterManifest, manifest_sha256
from schemas.model_events import ModelEventBase
from tests.faults.load import SentRecord
from tests.faults.world import FaultWorld, Window
from tests.support.expect import Expected, indexed_texts

# A serving node's log line when a version starts taking new requests (serving.registry).
_ACTIVATED = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) INFO serving\.registry task (\S+): "
    r"now serving (\S+) \(previous"
)


@dataclass(frozen=True)
class Activation:
    """From `at` (epoch seconds) on, `node` answers `task` with `version` (None: base). A new
    incarnation of a node starts with task "*" on the base model."""

    node: str
    at: float
    task: str
    version: str | None


@dataclass(frozen=True)
class LearnerRows:
    """The learner's SQLite: examples (task, example_id) -> (state, version, request_id),
    label votes (task, item) and ratings (task, request_id)."""

    examples: dict[tuple[str, str], tuple[str, str | None, str | None]]
    votes: frozenset[tuple[str, str]]
    ratings: frozenset[tuple[str, str]]


@dataclass(frozen=True)
class StoreView:
    """Verified versions (task, version) -> manifest, champion pointers, and whatever in the
    store is not a complete version (directories without a valid manifest, failed checks)."""

    manifests: dict[tuple[str, str], AdapterManifest]
    champions: dict[str, tuple[str, str] | None]
    problems: list[str]

    def digest(self, task: str, version: str) -> str | None:
        manifest = self.manifests.get((task, version))
        return None if manifest is None else manifest_sha256(manifest)


@dataclass(frozen=True)
class Observed:
    sent: list[SentRecord]
    expected: Expected
    outcomes: list[RecordIndexed]
    dead: list[DeadLettered]
    indexed: dict[str, list[str]]
    requests: list[RequestRecord]
    mix: Mix
    feedback_events: list[FeedbackReceived]
    learner: LearnerRows
    model_events: list[ModelEventBase]
    store: StoreView
    windows: list[Window]
    activations: list[Activation] = field(default_factory=list)
    nodes: dict[str, str] = field(default_factory=dict)  # node URL -> service name
    extra: tuple[tuple[Mix, list[RequestRecord]], ...] = ()  # other loads, with their mix

    def loads(self) -> Iterator[tuple[Mix, RequestRecord]]:
        """Every request of every load, with the mix (tasks) it was sent under."""
        for mix, records in ((self.mix, self.requests), *self.extra):
            for record in records:
                yield mix, record

    def tasks(self) -> set[str]:
        return {t for mix, _ in ((self.mix, ()), *self.extra)
                for t in (mix.score_task, mix.chat_task)}


def observe(
    world: FaultWorld,
    sent: Sequence[SentRecord],
    expected: Expected,
    requests: Sequence[RequestRecord],
    mix: Mix,
    extra: Sequence[tuple[Mix, list[RequestRecord]]] = (),
) -> Observed:
    read = world.scenario.read_all
    with ThreadPoolExecutor(3) as pool:  # each topic read waits 1.5 s for silence: overlap
        topics = [Topic.RECORDS_INDEXED, Topic.RECORDS_DLQ, Topic.FEEDBACK_EVENTS]
        outcome_events, dead_events, feedback_events = pool.map(read, topics)
        indexed_f = pool.submit(milvus_texts, world.stack.milvus_uri, world.collection)
        learner_f = pool.submit(learner_rows, world.pending_path)
        indexed, learner = indexed_f.result(), learner_f.result()
    outcomes = [e for e in outcome_events if isinstance(e, RecordIndexed)]
    dead = [e for e in dead_events if isinstance(e, DeadLettered)]
    feedback = [e for e in feedback_events if isinstance(e, FeedbackReceived)]
    events = [e for e in read(Topic.MODEL_EVENTS) if isinstance(e, ModelEventBase)]
    store = store_view(world.store)
    activations = [
        activation
        for service in world.services.values()
        if service.kind == "serving"
        for incarnation in service.incarnations
        for activation in node_activations(service.name, incarnation.log_path,
                                           incarnation.started_at)
    ]
    nodes = {s.url: s.name for s in world.services.values() if s.kind == "serving"}
    return Observed(list(sent), expected, outcomes, dead, indexed, list(requests), mix,
                    feedback, learner, events, store, list(world.windows), activations, nodes,
                    tuple(extra))


def milvus_texts(uri: str, collection: str) -> dict[str, list[str]]:
    client = make_milvus(uri)
    try:
        kb = KnowledgeBase(client, KnowledgeConfig(collection=collection, dim=384))
        return indexed_texts(kb) if kb.exists() else {}
    finally:
        client.close()


def learner_rows(path: Path) -> LearnerRows:
    if not path.exists():
        return LearnerRows({}, frozenset(), frozenset())
    connection = sqlite3.connect(path, timeout=30)
    try:
        examples = {
            (str(task), str(eid)): (str(state), version, request_id)
            for task, eid, state, version, request_id in connection.execute(
                "SELECT task, example_id, state, version, request_id FROM examples"
            )
        }
        votes = frozenset(
            (str(t), str(i)) for t, i in connection.execute("SELECT task, item FROM votes")
        )
        ratings = frozenset(
            (str(t), str(r)) for t, r in connection.execute("SELECT task, request_id FROM ratings")
        )
    finally:
        connection.close()
    return LearnerRows(examples, votes, ratings)


def store_view(store: AdapterStore) -> StoreView:
    manifests: dict[tuple[str, str], AdapterManifest] = {}
    champions: dict[str, tuple[str, str] | None] = {}
    problems: list[str] = []
    root = store.root
    tasks = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.exists() else []
    for task in tasks:
        # Each visible directory on its own: a version renamed into place while this runs is
        # complete the moment it appears (its manifest went in first).
        for path in sorted((root / task).iterdir()):
            if not path.is_dir() or path.name.startswith("."):
                continue
            try:
                manifests[(task, path.name)] = store.verify(task, path.name)
            except AdapterStoreError as exc:
                problems.append(f"{task}/{path.name}: not a complete version: {exc}")
        try:
            champion = store.champion(task)
            champions[task] = (
                None if champion is None else (champion.version, champion.manifest_sha256)
            )
        except AdapterStoreError as exc:
            problems.append(f"{task}: unreadable champion pointer: {exc}")
    return StoreView(manifests, champions, problems)


def node_activations(node: str, log_path: Path, started_at: float) -> list[Activation]:
    """The incarnation's start (base model) and every "now serving" line of its log."""
    found = [Activation(node, started_at, "*", None)]
    try:
        text = log_path.read_text(errors="replace")
    except FileNotFoundError:
        return found
    for line in text.splitlines():
        match = _ACTIVATED.match(line)
        if match:
            stamp, millis, task, version = match.groups()
            at = time.mktime(datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S").timetuple())
            found.append(Activation(node, at + int(millis) / 1000, task,
                                    None if version == "None" else version))
    return found
