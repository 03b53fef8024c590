"""The fault suite's world: every lorafeed service as a real process on one slice of the test
stack (two streams workers, the learner, two serving nodes sharing one task file and adapter
store), started and stopped by pid, and the record of when each one was down (`Window`s, opened
by `breakers`), which the HTTP invariant needs. Each service incarnation logs to its own file."""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from subprocess import Popen
from typing import Any, Literal

import httpx

from lorafeed import procs
from lorafeed.adapter_store import AdapterStore
from tests.support.adapters import tiny_base_dir
from tests.support.learner_proc import task_table, to_toml
from tests.support.serving_proc import PII_KEY, Keys
from tests.support.stack import RunningStack
from tests.support.workers import ROOT, Scenario, wait_for

Kind = Literal["streams", "learner", "serving"]
STREAMS = ("streams-0", "streams-1")
NODES = ("node-a", "node-b")
LABELS = ["fraud", "legit", "review"]
READY_TIMEOUT_S = 240.0
CRASH_TIMEOUT_S = 300.0


def fault_tasks() -> dict[str, dict[str, Any]]:
    """`intent` (classification, scored and labelled by the load: an update every 24 new train
    examples) and `chat` (generation, rated: every 8): tiny-llama, a few steps each."""
    # The load rates chat answers +1/-1 at random, and the online watch takes an unrated
    # parent's negative rate as 0: any margin below ~0.5 rolls versions back by chance, and a
    # rollback pins the task, which ends its promotions (the suite needs them) for good.
    chat = task_table(min_examples=8) | {"watch": {"min_rated": 40, "margin": 0.9}}
    return {
        "chat": chat,
        "intent": task_table(min_examples=24, kind="classification", labels=LABELS),
    }


@dataclass
class Window:
    """When `scope` (a service name, or "redis" / "milvus") was down or being restarted."""

    scope: str
    start: float
    end: float | None
    why: str

    def covers(self, at: float, slack_s: float = 0.0) -> bool:
        end = time.time() if self.end is None else self.end
        return self.start - slack_s <= at <= end + slack_s


@dataclass
class Incarnation:
    log_path: Path
    started_at: float
    failpoint: str | None


@dataclass
class Service:
    name: str
    kind: Kind
    port: int | None = None
    handle: procs.ProcessHandle | None = None
    popen: Popen[bytes] | None = None
    incarnations: list[Incarnation] = field(default_factory=list)

    @property
    def url(self) -> str:
        assert self.port is not None, f"{self.name} has no HTTP port"
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.incarnations[-1].log_path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.incarnations else ""

    def alive(self) -> bool:
        return self.handle is not None and self.handle.is_alive()


class FaultWorld:
    """All services on one topic prefix, collection, adapter store and learner state dir."""

    def __init__(self, stack: RunningStack, root: Path, models_dir: Path,
                 tasks: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        self.stack = stack
        self.tasks = dict(tasks or fault_tasks())
        self.root = root
        self.models_dir = models_dir
        self.scenario = Scenario.create(stack, root / "logs")
        self.keys = Keys.create()
        self.tag = uuid.uuid4().hex[:8]
        (root / "tmp").mkdir(parents=True, exist_ok=True)
        (root / "tasks.toml").write_text(to_toml(self.tasks))
        tiny_base_dir(models_dir)  # generated once here, not raced by four processes
        self.services: dict[str, Service] = {name: Service(name, "streams") for name in STREAMS}
        self.services["learner"] = Service("learner", "learner")
        for name in NODES:
            self.services[name] = Service(name, "serving", port=procs.free_port())
        self.windows: list[Window] = []
        self.notes: list[str] = []  # what happened when (seconds since the world was made)
        self._t0 = time.monotonic()

    def note(self, what: str) -> None:
        self.notes.append(f"{time.monotonic() - self._t0:7.1f} s  {what}")

    # -- where things are ----------------------------------------------------------------------

    @property
    def prefix(self) -> str:
        return self.scenario.prefix

    @property
    def collection(self) -> str:
        return self.scenario.collection

    @property
    def store(self) -> AdapterStore:
        return AdapterStore(self.root / "adapters")

    @property
    def pending_path(self) -> Path:
        return self.root / "state" / "learner" / "pending.sqlite3"

    @property
    def node_urls(self) -> list[str]:
        return [self.services[name].url for name in NODES]

    def env(self, service: Service, failpoint: str | None) -> dict[str, str]:
        stack = self.stack
        env = self.scenario.env(
            LORAFEED_STATE_DIR=str(self.root / "state"),
            LORAFEED_BOOTSTRAP_SERVERS=stack.bootstrap,
            LORAFEED_REDIS_URL=stack.redis_url,
            LORAFEED_MILVUS_URI=stack.milvus_uri,
            LORAFEED_ADAPTER_STORE=str(self.root / "adapters"),
            LORAFEED_PII_KEY=PII_KEY,
            TMPDIR=str(self.root / "tmp"),
        )
        if service.kind == "streams":
            env |= {"STREAMS_BATCH_MAX": "8", "STREAMS_RETRY_MAX_BACKOFF_S": "4"}
        elif service.kind == "learner":
            env |= {
                "LEARNER_TASKS_FILE": str(self.root / "tasks.toml"),
                "LEARNER_MODELS_DIR": str(self.models_dir),
                "LEARNER_CHECK_INTERVAL_S": "1",
                "LEARNER_GROUP_ID": f"learner-{self.tag}",
                "LEARNER_TORCH_THREADS": "1",
                "LEARNER_LOCK_TTL_S": "3",
            }
        else:
            env |= {
                "SERVING_NODE_ID": service.name,
                "SERVING_TASKS_FILE": str(self.root / "tasks.toml"),
                "SERVING_MODELS_DIR": str(self.models_dir),
                "SERVING_API_KEYS": self.keys.entries,
                "SERVING_AUTH_ENABLED": "true",
                "SERVING_RETRIEVAL": "false",
                "SERVING_TORCH_THREADS": "1",
                "SERVING_RATE_LIMIT_PER_MINUTE": "0",
                "SERVING_REDIS_PREFIX": f"t{self.tag}:serving:",
            }
        if failpoint:
            env["LORAFEED_FAILPOINT"] = failpoint
        return env

    # -- starting and stopping -----------------------------------------------------------------

    def start(self, name: str, failpoint: str | None = None, wait: bool = True) -> Service:
        service = self.services[name]
        assert not service.alive(), f"{name} is already running"
        argv = {
            "streams": [sys.executable, "-m", "streams"],
            "learner": [sys.executable, "-m", "learner"],
            "serving": [sys.executable, "-m", "lorafeed", "run", "serve", "--port",
                        str(service.port)],
        }[service.kind]
        log_path = self.root / "logs" / f"{name}-{len(service.incarnations)}.log"
        service.incarnations.append(Incarnation(log_path, time.time(), failpoint))
        service.handle, service.popen = procs.spawn_child(
            name, argv, log_path, env=self.env(service, failpoint), cwd=ROOT
        )
        self.note(f"{name} started" + (f" armed at {failpoint}" if failpoint else ""))
        if wait:
            self.wait_ready(name)
        return service

    def wait_ready(self, name: str, timeout_s: float = READY_TIMEOUT_S) -> None:
        service = self.services[name]

        def ready() -> bool:
            if service.popen is not None and service.popen.poll() is not None:
                raise AssertionError(
                    f"{name} exited {service.popen.returncode} while starting:\n"
                    f"{service.log()[-3000:]}"
                )
            if service.kind == "serving":
                try:
                    return httpx.get(f"{service.url}/readyz", timeout=5).status_code == 200
                except httpx.TransportError:
                    return False
            marker = "streams worker ready" if service.kind == "streams" else ": tasks ["
            return marker in service.log()

        wait_for(ready, timeout_s, f"{name} ready", interval=0.5)
        self.note(f"{name} ready")

    def start_all(self) -> None:
        for name in self.services:  # all spawned first: their start-ups overlap
            self.start(name, wait=False)
        for name in self.services:
            self.wait_ready(name)

    def stop(self, name: str) -> None:
        service = self.services[name]
        if service.handle is not None and service.alive():
            procs.stop(service.handle, timeout=30)
            if service.popen is not None:
                service.popen.wait(10)
            self.note(f"{name} stopped")

    def stop_all(self) -> None:
        for name in self.services:
            self.stop(name)

    def dead(self) -> list[str]:
        """Services that should run and do not, with their log tails."""
        return [
            f"{s.name} exited {s.popen.returncode if s.popen else '?'}:\n{s.log()[-2000:]}"
            for s in self.services.values()
            if not s.alive()
        ]

    def log_count(self, marker: str) -> int:
        """How often `marker` appears in the current logs of every service."""
        return sum(s.log().count(marker) for s in self.services.values()) if marker else 0

    def open_window(self, scope: str, why: str) -> Window:
        window = Window(scope, time.time(), None, why)
        self.windows.append(window)
        return window

    def champions(self) -> int:
        """How many tasks have a champion now (a node loads each at start-up)."""
        return sum(self.store.champion(task) is not None for task in self.tasks)


def assert_running(world: FaultWorld) -> None:
    dead = world.dead()
    assert not dead, "\n\n".join(dead)


def environment_flag(name: str) -> bool:
    return os.environ.get(name, "").lower() in ("1", "true", "yes", "full")
