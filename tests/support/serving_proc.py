"""Serving nodes and the streaming scorer as real processes on the test stack: one isolated world
per test module (own topics, Redis prefix, consumer groups, adapter store, task file and API
keys), adapter versions published the way the learner does (store, pointer, AdapterPromoted),
and readers for what came out (topics, Redis, node logs)."""

from __future__ import annotations

import json
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from subprocess import Popen
from typing import Any

import httpx
import redis

from lorafeed import procs
from lorafeed.adapter_store import AdapterStore
from lorafeed.kafka_clients import make_producer
from schemas import Event, Topic, encode, topic_name
from schemas.manifest import AdapterManifest, manifest_sha256
from schemas.model_events import AdapterPromoted, ModelEventBase
from schemas.tasks import TaskConfig
from serving.settings import new_api_key
from tests.support.adapters import add_version, build_adapter, tiny_base_dir, version_dir
from tests.support.stack import RunningStack
from tests.support.workers import ROOT, Scenario

PII_KEY = "test-key-0123456789abcdef"  # what Scenario.env gives every process
READY_TIMEOUT_S = 120


@dataclass(frozen=True)
class Keys:
    """One app key and one admin key (plain, for clients) and the SERVING_API_KEYS value."""

    app: str
    admin: str
    entries: str

    @classmethod
    def create(cls) -> Keys:
        app, app_entry = new_api_key("app", "app")
        admin, admin_entry = new_api_key("admin", "ops")
        entries = json.dumps([app_entry.model_dump(), admin_entry.model_dump()])
        return cls(app, admin, entries)


@dataclass(frozen=True)
class Node:
    """A running serving node: its process, base URL and log."""

    node_id: str
    handle: procs.ProcessHandle
    popen: Popen[bytes]
    url: str

    def log(self) -> str:
        return Path(self.handle.log_path).read_text(errors="replace")

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> dict[str, Any]:
        """Poll /readyz until 200 (its body); fail with the log tail if the process exits."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise AssertionError(
                    f"node {self.node_id} exited {self.popen.returncode}:\n{self.log()[-3000:]}"
                )
            try:
                response = httpx.get(f"{self.url}/readyz", timeout=5)
                if response.status_code == 200:
                    return dict(response.json())
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        raise AssertionError(
            f"node {self.node_id} not ready in {timeout_s} s:\n{self.log()[-3000:]}"
        )


@dataclass(frozen=True)
class ServingWorld:
    """One test module's serving world under `root`, on a slice of the shared stack."""

    scenario: Scenario
    root: Path
    models_dir: Path
    keys: Keys
    tasks: tuple[TaskConfig, ...]
    tag: str

    @classmethod
    def create(
        cls, stack: RunningStack, root: Path, models_dir: Path, tasks: Sequence[TaskConfig]
    ) -> ServingWorld:
        scenario = Scenario.create(stack, root / "logs")
        (root / "tasks.toml").write_text(_tasks_toml(tasks))
        tag = uuid.uuid4().hex[:8]
        return cls(scenario, root, models_dir, Keys.create(), tuple(tasks), tag)

    @property
    def prefix(self) -> str:
        return self.scenario.prefix

    @property
    def redis_prefix(self) -> str:
        return f"t{self.tag}:serving:"

    @property
    def store(self) -> AdapterStore:
        return AdapterStore(self.root / "adapters")

    def task(self, name: str) -> TaskConfig:
        return next(t for t in self.tasks if t.name == name)

    def env(self, **extra: str) -> dict[str, str]:
        stack = self.scenario.stack
        settings = dict(
            LORAFEED_STATE_DIR=str(self.root / "state"),
            LORAFEED_BOOTSTRAP_SERVERS=stack.bootstrap,
            LORAFEED_REDIS_URL=stack.redis_url,
            LORAFEED_MILVUS_URI=stack.milvus_uri,
            LORAFEED_ADAPTER_STORE=str(self.root / "adapters"),
            SERVING_TASKS_FILE=str(self.root / "tasks.toml"),
            SERVING_MODELS_DIR=str(self.models_dir),
            SERVING_API_KEYS=self.keys.entries,
            SERVING_AUTH_ENABLED="true",
            SERVING_RETRIEVAL="false",
            SERVING_TORCH_THREADS="1",
            SERVING_RATE_LIMIT_PER_MINUTE="0",
            SERVING_REDIS_PREFIX=self.redis_prefix,
            SERVING_SCORER_GROUP_ID=f"scorer-{self.tag}",
        )
        return self.scenario.env(**(settings | extra))

    # -- processes -----------------------------------------------------------------------------

    def spawn_node(self, node_id: str, **env: str) -> Node:
        """`lorafeed run serve --port P` as `node_id` (not waited for: see `Node.wait_ready`)."""
        port = procs.free_port()
        handle, popen = procs.spawn_child(
            node_id,
            [sys.executable, "-m", "lorafeed", "run", "serve", "--port", str(port)],
            self.root / "logs" / f"{node_id}.log",
            env=self.env(SERVING_NODE_ID=node_id, **env),
            cwd=ROOT,
        )
        return Node(node_id, handle, popen, f"http://127.0.0.1:{port}")

    def spawn_scorer(
        self, node_id: str = "scorer", **env: str
    ) -> tuple[procs.ProcessHandle, Popen[bytes]]:
        """`lorafeed run scorer` (its registry reports as `<node_id>-scorer`)."""
        return procs.spawn_child(
            f"{node_id}-scorer",
            [sys.executable, "-m", "lorafeed", "run", "scorer"],
            self.root / "logs" / f"{node_id}-scorer.log",
            env=self.env(SERVING_NODE_ID=node_id, **env),
            cwd=ROOT,
        )

    # -- adapter versions ------------------------------------------------------------------------

    def add_version(
        self, task: str, version: str, *, seed: int, champion: bool = True
    ) -> AdapterManifest:
        """Store a seeded adapter as task@version (champion by default), as the learner would."""
        config = self.task(task)
        base = tiny_base_dir(self.models_dir)
        files = build_adapter(config, base, self.root / "build" / task / version, seed=seed)
        return add_version(self.store, config, version, base, files, champion=champion)

    def corrupt(self, task: str, version: str) -> None:
        """Flip one byte in the middle of the stored adapter weights of task@version."""
        path = version_dir(self.store, task, version) / "adapter_model.safetensors"
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.chmod(0o644)
        path.write_bytes(bytes(data))

    def promote(self, manifest: AdapterManifest) -> AdapterPromoted:
        """Tell every node that task@version is the champion now (AdapterPromoted)."""
        event = AdapterPromoted(
            schema_version=1,
            event_id=uuid.uuid4().hex,
            task=manifest.task,
            occurred_at=datetime.now(UTC),
            version=manifest.version,
            manifest_sha256=manifest_sha256(manifest),
        )
        self.produce(Topic.MODEL_EVENTS, [(event.task, encode(event))])
        return event

    def create_collection(self) -> str:
        """This world's knowledge collection, created empty (as the streams worker would)."""
        from lorafeed.knowledge import KnowledgeBase, KnowledgeConfig
        from lorafeed.stores import make_milvus

        client = make_milvus(self.scenario.stack.milvus_uri)
        try:
            KnowledgeBase(client, KnowledgeConfig(self.scenario.collection)).ensure_collection()
        finally:
            client.close()
        return self.scenario.collection

    # -- topics and Redis ------------------------------------------------------------------------

    def produce(self, topic: Topic, items: Sequence[tuple[str, bytes]]) -> None:
        producer = make_producer(self.scenario.stack.bootstrap)
        for key, value in items:
            producer.produce(topic_name(topic, self.prefix), key=key, value=value)
            producer.poll(0)
        assert producer.flush(30) == 0

    def read(self, topic: Topic) -> list[Event]:
        return self.scenario.read_all(topic)

    def model_events(self, type_: str) -> list[ModelEventBase]:
        return [
            e
            for e in self.read(Topic.MODEL_EVENTS)
            if isinstance(e, ModelEventBase) and getattr(e, "type", None) == type_
        ]

    def redis_dump(self) -> list[bytes]:
        """Every key and every value (strings, hash fields) in the stack's Redis."""
        client = redis.Redis.from_url(self.scenario.stack.redis_url)
        try:
            found: list[bytes] = []
            for key in client.scan_iter(count=500):
                found.append(key)
                kind = client.type(key)
                if kind == b"string":
                    found.append(client.get(key) or b"")
                elif kind == b"hash":
                    found += [b for pair in client.hgetall(key).items() for b in pair]
            return found
        finally:
            client.close()


def _tasks_toml(tasks: Sequence[TaskConfig]) -> str:
    lines: list[str] = []
    for task in tasks:
        lines += [f"[tasks.{task.name}]", f'kind = "{task.kind}"']
        lines += [f'base_model = "{task.base_model}"']
        if task.labels:
            lines.append("labels = " + json.dumps(list(task.labels)))
        lines += [f"[tasks.{task.name}.lora]", f"r = {task.lora.r}", f"alpha = {task.lora.alpha}"]
    return "\n".join(lines) + "\n"


def stop_all(*handles: procs.ProcessHandle) -> None:
    """Stop each process by its pid (a node drains its requests on SIGTERM)."""
    for handle in handles:
        procs.stop(handle, timeout=20)


class _NoPublisher:
    async def publish(self, topic: str, key: str, value: bytes) -> None:
        raise AssertionError("the schema-only app publishes nothing")


def openapi_document(scratch: Path, keys: Keys) -> dict[str, Any]:
    """`create_app(deps).openapi()` of an app with the real routes and no task (the routes and
    bodies do not depend on the catalog); its deps are never called."""
    import redis.asyncio as aioredis

    from lorafeed.privacy import Pseudonymizer
    from serving.api import create_app
    from serving.contexts import ContextStore
    from serving.deps import ServingDeps
    from serving.registry import AdapterRegistry
    from serving.settings import ServingSettings

    async def no_events(_event: ModelEventBase) -> None:
        return None

    pseudonymizer = Pseudonymizer(PII_KEY.encode())
    deps = ServingDeps(
        settings=ServingSettings(api_keys=keys.entries, retrieval=False),
        registry=AdapterRegistry(AdapterStore(scratch), {}, "schema", no_events),
        contexts=ContextStore(aioredis.Redis(), pseudonymizer),
        feedback_publisher=_NoPublisher(),
        audit_publisher=_NoPublisher(),
        pseudonymizer=pseudonymizer,
    )
    return create_app(deps).openapi()
