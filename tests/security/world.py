"""The security suite's world: one isolated slice of the run's stack with every service running
as a real process on it (a streams worker, a learner, a serving node and the streaming scorer,
each with its /metrics where it has one), tiny models, seeded adapter versions, API keys, and
secrets planted in every process's environment so the suite can prove they never leak.

Tests push their own inputs through it and read back what came out; `assert_alive` proves that
nothing they sent crashed a worker.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import time
import uuid
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from subprocess import Popen
from typing import Any

import httpx
import redis
from confluent_kafka import KafkaException, TopicPartition

from lorafeed import procs
from lorafeed.kafka_clients import make_consumer, make_producer
from lorafeed.task_catalog import load_catalog
from schemas import TOPICS, SchemaError, Topic, decode, topic_name
from tests.support.learner_proc import task_table, to_toml
from tests.support.serving_proc import Keys, Node, ServingWorld
from tests.support.stack import RunningStack
from tests.support.workers import ROOT, Position, Scenario, produce_landed, wait_for

PII_KEY = "test-key-0123456789abcdef"  # Scenario.env gives it to every process
# Planted in every process's environment: none may ever show in a log, a metric or an answer.
S3_KEY_ID = "AKIAPROBE7Q2XW9ZK4LM"
S3_SECRET = "s3-secret-probe-Zq8Lw2Nx5Vb7Tc1Rm4Kp"
DASHBOARD_ACCESS_KEY = "dash-access-probe-Hk3Jm9Qw2Ls7"
FAQ_SOURCE = "faq-pii"  # the knowledge source the chat task learns from
START_TIMEOUT_S = 240


@dataclass(frozen=True)
class Landed:
    """One message as read back: where it is, its key and value."""

    partition: int
    offset: int
    key: str
    value: bytes


def _tasks_toml() -> str:
    chat = task_table("tiny-llama", min_examples=4, knowledge_sources=[FAQ_SOURCE])
    intent = task_table(
        "tiny-llama", min_examples=10_000, kind="classification",
        labels=["billing", "shipping", "other"],
    )
    return to_toml({"chat": chat, "intent": intent})


@dataclass
class SecureWorld:
    """Every service of the loop on one slice of the stack; `processes` are stopped at the end."""

    serving: ServingWorld
    ports: dict[str, int]
    processes: dict[str, tuple[procs.ProcessHandle, Popen[bytes]]] = field(default_factory=dict)
    node: Node | None = None

    # -- building ------------------------------------------------------------------------------

    @classmethod
    def create(cls, stack: RunningStack, root: Path) -> SecureWorld:
        (root / "tmp").mkdir(parents=True, exist_ok=True)
        (root / "tasks.toml").write_text(_tasks_toml())
        catalog = load_catalog(root / "tasks.toml")
        scenario = Scenario.create(stack, root / "logs")
        tag = uuid.uuid4().hex[:8]
        serving = ServingWorld(scenario, root, root / "models", Keys.create(),
                               tuple(catalog.tasks.values()), tag)
        for task, versions in (("chat", ("1.0.0",)), ("intent", ("1.0.0", "1.1.0"))):
            for seed, version in enumerate(versions, start=1):
                serving.add_version(task, version, seed=seed)
        serving.create_collection()
        ports = {name: procs.free_port() for name in ("streams", "learner", "node")}
        return cls(serving, ports)

    @property
    def root(self) -> Path:
        return self.serving.root

    @property
    def prefix(self) -> str:
        return self.serving.prefix

    @property
    def keys(self) -> Keys:
        return self.serving.keys

    @property
    def collection(self) -> str:
        return self.serving.scenario.collection

    @property
    def pending_path(self) -> Path:
        return self.root / "state" / "learner" / "pending.sqlite3"

    def env(self, **extra: str) -> dict[str, str]:
        """Every setting of every service (each reads its own prefix), secrets included."""
        settings = dict(
            LORAFEED_S3_ACCESS_KEY_ID=S3_KEY_ID,
            LORAFEED_S3_SECRET_ACCESS_KEY=S3_SECRET,
            LORAFEED_DASHBOARD_ACCESS_KEY=DASHBOARD_ACCESS_KEY,
            LORAFEED_DASHBOARD_ADMIN_KEY=self.keys.admin,
            STREAMS_METRICS_PORT=str(self.ports["streams"]),
            STREAMS_BATCH_MAX="32",
            LEARNER_TASKS_FILE=str(self.root / "tasks.toml"),
            LEARNER_MODELS_DIR=str(self.serving.models_dir),
            LEARNER_CHECK_INTERVAL_S="1",
            LEARNER_GROUP_ID=f"learner-{self.serving.tag}",
            LEARNER_TORCH_THREADS="1",
            LEARNER_METRICS_PORT=str(self.ports["learner"]),
            LEARNER_COLLECTION=self.collection,
            SERVING_RETRIEVAL="true",
            SERVING_COLLECTION=self.collection,
            SERVING_MAX_TOKENS_CAP="8",
            SERVING_DEFAULT_MAX_TOKENS="4",
            TMPDIR=str(self.root / "tmp"),
        )
        return self.serving.env(**(settings | extra))

    def spawn(self, name: str, *args: str, **env: str) -> tuple[procs.ProcessHandle, Popen[bytes]]:
        started = procs.spawn_child(name, [sys.executable, *args],
                                    self.root / "logs" / f"{name}.log", env=self.env(**env),
                                    cwd=ROOT)
        self.processes[name] = started
        return started

    def start(self) -> None:
        """Every service, started together (they load models in parallel), then waited for."""
        self.spawn("streams", "-m", "streams")
        self.spawn("learner", "-m", "learner")
        self.spawn("scorer", "-m", "lorafeed", "run", "scorer", SERVING_NODE_ID="sec-scorer")
        handle, popen = self.spawn("node", "-m", "lorafeed", "run", "serve", "--port",
                                   str(self.ports["node"]), SERVING_NODE_ID="sec-node")
        self.node = Node("sec-node", handle, popen, f"http://127.0.0.1:{self.ports['node']}")
        self.node.wait_ready(START_TIMEOUT_S)
        for name, marker in (("streams", "streams worker ready"),
                             ("learner", ": tasks ['chat', 'intent']"),
                             ("scorer", "scorer sec-scorer-scorer: tasks")):
            wait_for(lambda n=name, m=marker: self._logged(n, m), START_TIMEOUT_S,
                     f"{name} started")
        self.assert_alive()

    def stop(self) -> None:
        """Stop every process by its pid, all at once (each drains on SIGTERM)."""
        with ThreadPoolExecutor(max(1, len(self.processes))) as pool:
            list(pool.map(lambda started: procs.stop(started[0], timeout=20),
                          self.processes.values()))

    def _logged(self, name: str, marker: str) -> bool:
        popen = self.processes[name][1]
        if popen.poll() is not None:
            raise AssertionError(f"{name} exited {popen.returncode}:\n{self.log(name)[-3000:]}")
        return marker in self.log(name)

    def assert_alive(self) -> None:
        """Nothing crashed a worker: every process still runs and logged no traceback."""
        for name, (_handle, popen) in self.processes.items():
            log = self.log(name)
            assert popen.poll() is None, f"{name} exited {popen.returncode}:\n{log[-3000:]}"
            assert "Traceback" not in log, f"{name}:\n{log[log.index('Traceback') - 300:][:4000]}"

    def log(self, name: str) -> str:
        return Path(self.processes[name][0].log_path).read_text(errors="replace")

    def logs(self) -> dict[str, bytes]:
        return {name: Path(handle.log_path).read_bytes()
                for name, (handle, _popen) in self.processes.items()}

    # -- talking to it -------------------------------------------------------------------------

    def http(self, role: str = "app") -> httpx.Client:
        assert self.node is not None
        key = self.keys.app if role == "app" else self.keys.admin
        return httpx.Client(base_url=self.node.url, timeout=60,
                            headers={"Authorization": f"Bearer {key}"})

    def produce(self, topic: Topic, items: Iterable[tuple[str, bytes]]) -> list[Position]:
        """Produce and wait for every delivery report; where each landed, in order."""
        return produce_landed(self.serving.scenario.stack.bootstrap,
                              topic_name(topic, self.prefix), items)

    def produce_refused(self, topic: Topic, value: bytes) -> str:
        """The producer's own refusal of `value` (e.g. over message.max.bytes), as text."""
        producer = make_producer(self.serving.scenario.stack.bootstrap)
        try:
            producer.produce(topic_name(topic, self.prefix), key="refused", value=value)
        except KafkaException as exc:
            return str(exc)
        producer.flush(30)
        raise AssertionError(f"the producer accepted a {len(value)}-byte value for {topic}")

    def messages(self, topic: Topic) -> list[Landed]:
        """Every message on `topic` (all partitions, from the start), in offset order per
        partition; read until the topic stays quiet (Tansu's watermarks are wrong)."""
        consumer = make_consumer(self.serving.scenario.stack.bootstrap,
                                 f"sec-reader-{uuid.uuid4().hex[:8]}")
        name = topic_name(topic, self.prefix)
        try:
            consumer.assign([TopicPartition(name, p, 0) for p in range(TOPICS[topic].partitions)])
            found, idle_since = [], time.monotonic()
            while time.monotonic() - idle_since < 1.5:
                msg = consumer.poll(0.3)
                if msg is None or msg.error():
                    continue
                key = (msg.key() or b"").decode("utf-8", "replace")
                found.append(Landed(msg.partition() or 0, msg.offset() or 0, key,
                                    msg.value() or b""))
                idle_since = time.monotonic()
            return sorted(found, key=lambda m: (m.partition, m.offset))
        finally:
            consumer.close()

    def read(self, topic: Topic) -> list[Any]:
        """The decodable events of `topic` (hostile tests leave undecodable ones on inputs)."""
        events = []
        for message in self.messages(topic):
            try:
                events.append(decode(topic, message.value))
            except SchemaError:
                continue
        return events

    def metrics(self) -> dict[str, str]:
        """The /metrics text of the node (admin key), the streams worker and the learner."""
        with self.http("admin") as admin:
            found = {"node": admin.get("/metrics").text}
        for name in ("streams", "learner"):
            found[name] = httpx.get(f"http://127.0.0.1:{self.ports[name]}/metrics", timeout=10).text
        return found

    def redis_everything(self) -> bytes:
        """Every key and value of the stack's Redis, whatever its type."""
        client = redis.Redis.from_url(self.serving.scenario.stack.redis_url)
        parts: list[bytes] = []
        try:
            for key in client.scan_iter(count=1000):
                parts.append(key)
                kind = client.type(key)
                if kind == b"string":
                    parts.append(client.get(key) or b"")
                elif kind == b"hash":
                    parts += [b for pair in client.hgetall(key).items() for b in pair]
                elif kind == b"list":
                    parts += client.lrange(key, 0, -1)
                elif kind == b"set":
                    parts += list(client.smembers(key))
                elif kind == b"zset":
                    parts += [m for m, _ in client.zrange(key, 0, -1, withscores=True)]
                elif kind == b"stream":
                    for _id, entry in client.xrange(key):
                        parts += [b for pair in entry.items() for b in pair]
        finally:
            client.close()
        return b"\n".join(parts)

    def sqlite_everything(self) -> str:
        """A dump (schema and every row) of the learner's pending / replay / outbox store."""
        connection = sqlite3.connect(f"file:{self.pending_path}?mode=ro", uri=True, timeout=30)
        try:
            return "\n".join(connection.iterdump())
        finally:
            connection.close()

    def files_under(self, *dirs: Path) -> Iterator[tuple[Path, bytes]]:
        for directory in dirs:
            for path in sorted(directory.rglob("*")):
                if path.is_file() and not path.is_symlink():
                    yield path, path.read_bytes()


def wait_until(predicate: Any, timeout_s: float, what: str, world: SecureWorld) -> Any:
    """`wait_for`, failing early (with the log) if a process died meanwhile."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        world.assert_alive()
        value = predicate()
        if value:
            return value
        time.sleep(1.0)
    world.assert_alive()
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)
