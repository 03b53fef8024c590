"""The learner as a real process on the test stack: one isolated slice per test (own topics,
consumer group, state dir, adapter store and task file), events in, and readers for what came
out (adapter store, pending SQLite, model.events, feedback.dlq, CLI output)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from subprocess import Popen
from typing import Any

from confluent_kafka import TopicPartition

from learner.examples import is_heldout
from lorafeed import procs
from lorafeed.adapter_store import AdapterStore, AdapterStoreError
from lorafeed.kafka_clients import make_consumer
from schemas import Event, Topic, encode, topic_name
from schemas.feedback import ChatMessage, FeedbackReceived
from schemas.manifest import manifest_sha256
from schemas.model_events import ModelEventBase
from tests.support.stack import RunningStack
from tests.support.workers import ROOT, Position, Scenario, produce_landed

NOW = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def task_table(base_model: str = "tiny-llama", min_examples: int = 12, **sections: Any) -> dict:
    """A tiny, fast generation task: 3 steps of 8, 25% held out, a few Fisher samples."""
    table: dict[str, Any] = {
        "kind": "generation",
        "base_model": base_model,
        "max_seq_len": 48,
        "lora": {"r": 4, "alpha": 8},
        "trigger": {"min_examples": min_examples, "max_wait_seconds": 3600},
        "training": {
            "batch_size": 8,
            "max_steps": 3,
            "learning_rate": 0.01,
            "holdout_percent": 25,
        },
        "ewc": {"fisher_samples": 4},
        "gate": {"bootstrap_samples": 200, "min_heldout": 1},
    }
    for name, value in sections.items():
        table[name] = table[name] | value if isinstance(value, dict) else value
    return table


def to_toml(tasks: Mapping[str, Mapping[str, Any]]) -> str:
    """`[tasks.<name>]` tables (one level of sub-tables) from plain values."""
    lines: list[str] = []
    for name, table in tasks.items():
        scalars = {k: v for k, v in table.items() if not isinstance(v, dict)}
        lines += [f"[tasks.{name}]", *(f"{k} = {_toml_value(v)}" for k, v in scalars.items())]
        for key, sub in table.items():
            if isinstance(sub, dict):
                lines += [f"[tasks.{name}.{key}]"]
                lines += [f"{k} = {_toml_value(v)}" for k, v in sub.items()]
    return "\n".join(lines) + "\n"


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    raise TypeError(f"no TOML for {value!r}")


def split_ids(make_id: Any, train: int, heldout: int, percent: int = 25, start: int = 0) -> list:
    """The first `train` + `heldout` values n >= start whose example id `make_id(n)` falls in the
    train / heldout split, in order (so a test knows exactly what trains and what is held out)."""
    chosen, wanted = [], {False: train, True: heldout}
    n = start
    while wanted[False] or wanted[True]:
        held = is_heldout(make_id(n), percent)
        if wanted[held]:
            chosen.append(n)
            wanted[held] -= 1
        n += 1
    return chosen


def rating(
    request_id: str, task: str, question: str, answer: str, **fields: Any
) -> FeedbackReceived:
    """A +1 rating (or what `fields` override) of a served chat answer."""
    values: dict[str, Any] = dict(
        schema_version=1,
        request_id=request_id,
        task=task,
        kind="rating",
        rating=1,
        adapter_version=None,
        input=[ChatMessage(role="user", content=question)],
        output=answer,
        served_at=NOW,
        received_at=NOW,
    )
    return FeedbackReceived(**(values | fields))


@dataclass(frozen=True)
class LearnerScenario:
    """One test's learner world under `root`; `tasks` is written to `root/tasks.toml`."""

    scenario: Scenario
    root: Path
    models_dir: Path
    group: str

    @classmethod
    def create(
        cls,
        stack: RunningStack,
        root: Path,
        models_dir: Path,
        tasks: Mapping[str, Mapping[str, Any]],
    ) -> LearnerScenario:
        (root / "tmp").mkdir(parents=True, exist_ok=True)
        scenario = Scenario.create(stack, root / "logs")
        (root / "tasks.toml").write_text(to_toml(tasks))
        return cls(scenario, root, models_dir, f"learner-{uuid.uuid4().hex[:8]}")

    @property
    def prefix(self) -> str:
        return self.scenario.prefix

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    @property
    def pending_path(self) -> Path:
        return self.state_dir / "learner" / "pending.sqlite3"

    @property
    def store(self) -> AdapterStore:
        return AdapterStore(self.root / "adapters")

    def env(self, **extra: str) -> dict[str, str]:
        stack = self.scenario.stack
        settings = dict(
            LORAFEED_STATE_DIR=str(self.state_dir),
            LORAFEED_BOOTSTRAP_SERVERS=stack.bootstrap,
            LORAFEED_REDIS_URL=stack.redis_url,
            LORAFEED_MILVUS_URI=stack.milvus_uri,
            LORAFEED_ADAPTER_STORE=str(self.root / "adapters"),
            LEARNER_TASKS_FILE=str(self.root / "tasks.toml"),
            LEARNER_MODELS_DIR=str(self.models_dir),
            LEARNER_CHECK_INTERVAL_S="1",
            LEARNER_GROUP_ID=self.group,
            LEARNER_TORCH_THREADS="1",
            LEARNER_LOCK_TTL_S="3",  # the lock of a killed learner frees within seconds
            TMPDIR=str(self.root / "tmp"),  # scratch dirs a killed learner leaves stay in here
        )
        return self.scenario.env(**(settings | extra))

    def spawn(self, name: str = "learner", **env: str) -> tuple[procs.ProcessHandle, Popen[bytes]]:
        """`python -m learner` with this scenario's settings (and `env`, e.g. a failpoint)."""
        return procs.spawn_child(
            name,
            [sys.executable, "-m", "learner"],
            self.root / "logs" / f"{name}-{uuid.uuid4().hex[:4]}.log",
            env=self.env(**env),
            cwd=ROOT,
        )

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """`python -m lorafeed ARGS` with the learner's environment."""
        done = subprocess.run(
            [sys.executable, "-m", "lorafeed", *args],
            env=self.env(COLUMNS="200"),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"lorafeed {' '.join(args)}: {done.returncode}\n{done.stderr}")
        return done

    # -- in ------------------------------------------------------------------------------------

    def produce(self, topic: Topic, items: Iterable[tuple[str, bytes]]) -> list[Position]:
        """Produce (key, value) pairs and return where each landed, in order."""
        return produce_landed(
            self.scenario.stack.bootstrap, topic_name(topic, self.prefix), items, timeout_s=30
        )

    def send(self, topic: Topic, events: Sequence[Event]) -> list[Position]:
        """Produce events keyed by their request id or record id; where each landed."""
        keys = (getattr(e, "request_id", None) or getattr(e, "record_id", "") for e in events)
        return self.produce(topic, zip(keys, (encode(e) for e in events), strict=True))

    def committed(self, topic: Topic, positions: Iterable[Position]) -> bool:
        """Whether the learner's group committed past every one of `positions`."""
        wanted: dict[int, int] = {}
        for partition, offset in positions:
            wanted[partition] = max(wanted.get(partition, -1), offset)
        consumer = make_consumer(self.scenario.stack.bootstrap, self.group)
        try:
            name = topic_name(topic, self.prefix)
            found = consumer.committed([TopicPartition(name, p) for p in wanted], timeout=10)
        finally:
            consumer.close()
        return all(tp.offset > wanted[tp.partition] for tp in found)

    # -- out -----------------------------------------------------------------------------------

    def model_events(self, task: str | None = None) -> list[ModelEventBase]:
        events = [e for e in self.scenario.read_all(Topic.MODEL_EVENTS)]
        return [e for e in events if isinstance(e, ModelEventBase) and task in (None, e.task)]

    def examples(self, task: str) -> dict[str, tuple[str, str, str, str | None, str | None]]:
        """example_id -> (kind, split, state, version, record_id) from the pending SQLite."""
        connection = sqlite3.connect(self.pending_path, timeout=30)
        try:
            rows = connection.execute(
                "SELECT example_id, kind, split, state, version, record_id FROM examples"
                " WHERE task = ?",
                (task,),
            ).fetchall()
        finally:
            connection.close()
        return {row[0]: tuple(row[1:]) for row in rows}  # type: ignore[misc]

    def replay_ids(self, task: str) -> set[str]:
        connection = sqlite3.connect(self.pending_path, timeout=30)
        try:
            rows = connection.execute("SELECT example_id FROM replay WHERE task = ?", (task,))
            return {row[0] for row in rows.fetchall()}
        finally:
            connection.close()

    def log(self, handle: procs.ProcessHandle) -> str:
        return Path(handle.log_path).read_text(errors="replace")


def unsent_outbox(world: LearnerScenario) -> list[tuple[str, str]]:
    """(task, version) of every outbox message the learner has not sent yet."""
    connection = sqlite3.connect(world.pending_path, timeout=30)
    try:
        rows = connection.execute("SELECT task, version FROM outbox WHERE sent_at IS NULL")
        return [(str(task), str(version)) for task, version in rows.fetchall()]
    finally:
        connection.close()


def check_consistent(world: LearnerScenario, task: str) -> list[str]:
    """Assert the learner's published state of `task` is whole; returns its versions.

    Every visible version directory has a valid manifest with verified files; each consumed
    example is listed by exactly the version SQLite says it went into, and no trainable example
    waits; every version's events are on model.events (duplicates allowed) and none is queued;
    the champion pointer names the newest promoted version with its manifest's digest.
    """
    store = world.store
    versions = store.versions(task)
    task_dir = store.root / task
    visible = {p.name for p in task_dir.iterdir() if p.is_dir() and not p.name.startswith(".")}
    assert visible == set(versions), f"version dirs without a valid manifest: {visible}"
    manifests = {version: store.verify(task, version) for version in versions}
    owner: dict[str, str] = {}
    for version, manifest in manifests.items():
        ids = manifest.configs["example_ids"]
        assert isinstance(ids, list)
        for example_id in map(str, ids):
            assert example_id not in owner, f"{example_id} in {owner[example_id]} and {version}"
            owner[example_id] = version
    rows = world.examples(task)
    consumed = {eid: row[3] for eid, row in rows.items() if row[2] == "consumed"}
    assert consumed == owner
    waiting = [e for e, r in rows.items() if r[:3] in (("sft", "train", "pending"),)]
    assert waiting == [], f"trainable examples still pending: {waiting[:5]}"
    assert unsent_outbox(world) == []
    events = world.model_events(task)
    for version, manifest in manifests.items():
        digest = manifest_sha256(manifest)
        seen = {e.type for e in events if getattr(e, "manifest_sha256", None) == digest}
        verdict = "adapter_promoted" if manifest.gate.promoted else "adapter_rejected"
        assert {"adapter_published", verdict} <= seen, f"{task}@{version}: events {seen}"
    promoted = [v for v in versions if manifests[v].gate.promoted]
    champion = store.champion(task)
    if not promoted:
        assert champion is None
    else:
        assert champion is not None and champion.version == promoted[-1]
        assert champion.manifest_sha256 == manifest_sha256(manifests[promoted[-1]])
    return versions


def assert_consistent(world: LearnerScenario, task: str, timeout_s: float) -> list[str]:
    """Wait until `check_consistent` passes; on timeout fail with its reason."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            return check_consistent(world, task)
        except (AssertionError, KeyError, FileNotFoundError, AdapterStoreError):
            time.sleep(1.0)
    return check_consistent(world, task)
