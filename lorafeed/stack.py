"""The embedded stack: Tansu broker, Redis and a Milvus Lite server on this machine, by pid.

``up`` starts what is not already running (twice is harmless), waits for health and creates
every topic of the table; ``down`` stops only what ``up`` started; ``status`` reports both.
Pids, ports and logs live under the state dir so separate CLI invocations find them again.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from lorafeed import procs
from lorafeed.binaries import milvus_lite_binary, redis_binary, tansu_binary
from lorafeed.health import redis_health, url_health
from lorafeed.settings import StackSettings

STATE_FILE = "stack.json"
COMPONENTS = ("broker", "redis", "milvus")


class StackError(RuntimeError):
    """A component could not be started or did not become healthy."""


@dataclass(frozen=True)
class ComponentState:
    """One component as recorded in the state file."""

    name: str
    url: str
    port: int
    owned: bool  # started by us (stopped by ``down``) or an existing service we reuse
    pid: int | None = None
    create_time: float | None = None
    log_path: str | None = None

    def handle(self) -> procs.ProcessHandle | None:
        if not self.owned or self.pid is None or self.create_time is None:
            return None
        return procs.ProcessHandle(self.name, self.pid, self.create_time, self.log_path or "")

    def process_alive(self) -> bool:
        handle = self.handle()
        return True if handle is None else handle.is_alive()


@dataclass
class StackState:
    host: str
    topic_prefix: str
    components: dict[str, ComponentState] = field(default_factory=dict)
    topics: dict[str, int] = field(default_factory=dict)

    @property
    def bootstrap_servers(self) -> str | None:
        broker = self.components.get("broker")
        return f"{self.host}:{broker.port}" if broker else None

    def url(self, name: str) -> str | None:
        component = self.components.get(name)
        return component.url if component else None


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    state: str  # healthy | unhealthy | stopped
    url: str
    pid: int | None
    owned: bool
    log_path: str | None
    detail: str = ""


def load_state(state_dir: Path) -> StackState | None:
    path = state_dir / STATE_FILE
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise StackError(f"stack state file {path} is unreadable: {exc}") from exc
    components = {k: ComponentState(**v) for k, v in raw.get("components", {}).items()}
    return StackState(raw["host"], raw["topic_prefix"], components, raw.get("topics", {}))


def save_state(state_dir: Path, state: StackState) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    payload = {
        "host": state.host,
        "topic_prefix": state.topic_prefix,
        "components": {k: asdict(v) for k, v in state.components.items()},
        "topics": state.topics,
    }
    tmp = state_dir / f".{STATE_FILE}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, state_dir / STATE_FILE)


def component_health(component: ComponentState) -> str:
    if not component.process_alive():
        return "process is not running"
    return url_health(component.name, component.url)


class Stack:
    """Starts, inspects and stops the embedded stack described by :class:`StackSettings`."""

    def __init__(self, settings: StackSettings, log: Callable[[str], None] = lambda _: None):
        self.settings = settings
        self.state_dir = settings.state_dir.resolve()
        self.log = log

    def state(self) -> StackState | None:
        return load_state(self.state_dir)

    def up(self) -> StackState:
        """Start whatever is not running and healthy, wait for health, create the topics."""
        state = self.state() or StackState(self.settings.host, self.settings.topic_prefix)
        if state.topic_prefix != self.settings.topic_prefix and state.components:
            raise StackError(
                f"the stack in {self.state_dir} runs with topic prefix {state.topic_prefix!r}, "
                f"not {self.settings.topic_prefix!r}; run 'lorafeed stack down' first"
            )
        started: list[ComponentState] = []
        for name in COMPONENTS:
            current = state.components.get(name)
            if current is not None and current.process_alive() and not component_health(current):
                self.log(f"{name}: already running at {current.url}")
                continue
            component = self._start(name, current)
            state.components[name] = component
            save_state(self.state_dir, state)  # recorded at once, so 'down' finds it
            if component.owned:
                started.append(component)
        try:
            self._wait_healthy(state)
            state.topics = self._create_topics(state)
        except StackError:
            for component in started:
                if handle := component.handle():
                    procs.stop(handle)
                state.components.pop(component.name, None)
            save_state(self.state_dir, state)
            raise
        save_state(self.state_dir, state)
        return state

    def down(self) -> list[str]:
        """Stop, by pid, every component ``up`` started; returns their names."""
        state = self.state()
        if state is None:
            return []
        stopped = []
        for name in reversed(COMPONENTS):
            component = state.components.get(name)
            handle = component.handle() if component else None
            if handle is None:
                continue
            if not procs.stop(handle):
                raise StackError(f"{name} (pid {handle.pid}) did not stop")
            stopped.append(name)
        (self.state_dir / STATE_FILE).unlink(missing_ok=True)
        return stopped

    def status(self) -> list[ComponentStatus]:
        state = self.state()
        rows = []
        for name in COMPONENTS:
            component = state.components.get(name) if state else None
            if component is None:
                rows.append(ComponentStatus(name, "stopped", "", None, False, None))
                continue
            problem = component_health(component)
            rows.append(
                ComponentStatus(
                    name=name,
                    state="healthy" if not problem else "unhealthy",
                    url=component.url,
                    pid=component.pid,
                    owned=component.owned,
                    log_path=component.log_path,
                    detail=problem,
                )
            )
        return rows

    # --- starting ------------------------------------------------------------------------

    def _start(self, name: str, previous: ComponentState | None) -> ComponentState:
        if previous is not None and (handle := previous.handle()) is not None:
            procs.stop(handle)  # alive but unhealthy: replace it
        if name == "redis":
            return self._start_redis()
        port = previous.port if previous else self._port(name)
        if procs.port_open(self.settings.host, port):
            setting = f"LORAFEED_STACK_{'KAFKA' if name == 'broker' else 'MILVUS'}_PORT"
            raise StackError(
                f"{name}: port {self.settings.host}:{port} is taken by another process; "
                f"stop it or set {setting} (0 picks a free port)"
            )
        log_path = self.state_dir / "logs" / f"{name}.log"
        if name == "broker":
            address = f"tcp://{self.settings.host}:{port}"
            argv = [tansu_binary(), "broker", "--listener-url", address,
                    "--advertised-listener-url", address, "--storage-engine", "memory://tansu/"]
            url = f"kafka://{self.settings.host}:{port}"
        else:
            data_dir = self.state_dir / "milvus"
            argv = [milvus_lite_binary(), "server", "--data-dir", str(data_dir),
                    "--host", self.settings.host, "--port", str(port)]
            url = f"http://{self.settings.host}:{port}"
        self.log(f"{name}: starting on {url}")
        handle = procs.spawn(name, argv, log_path, env=_child_env())
        return ComponentState(name, url, port, True, handle.pid, handle.create_time, str(log_path))

    def _start_redis(self) -> ComponentState:
        url = self.settings.redis_url
        parsed = urlparse(url)
        port = parsed.port or 6379
        if not redis_health(url):
            self.log(f"redis: reusing the server at {url}")
            return ComponentState("redis", url, port, owned=False)
        host = parsed.hostname or "127.0.0.1"
        if not (host.startswith("127.") or host == "localhost"):
            raise StackError(
                f"redis: nothing answers at {url}, and a remote host cannot be started here"
            )
        if procs.port_open(host, port):
            raise StackError(
                f"redis: {host}:{port} is taken by something that does not answer PING"
            )
        data_dir = self.state_dir / "redis"
        data_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.state_dir / "logs" / "redis.log"
        # appendonly so dedup keys and locks survive a Redis restart.
        argv = [redis_binary(), "--port", str(port), "--bind", self.settings.host,
                "--dir", str(data_dir), "--appendonly", "yes", "--save", "",
                "--daemonize", "no", "--protected-mode", "yes", "--logfile", ""]
        self.log(f"redis: starting on {url}")
        handle = procs.spawn("redis", argv, log_path, env=_child_env())
        return ComponentState(
            "redis", url, port, True, handle.pid, handle.create_time, str(log_path)
        )

    def _port(self, name: str) -> int:
        configured = self.settings.kafka_port if name == "broker" else self.settings.milvus_port
        return configured or procs.free_port(self.settings.host)

    def _wait_healthy(self, state: StackState) -> None:
        deadline = time.monotonic() + self.settings.health_timeout_s
        with ThreadPoolExecutor(max_workers=len(COMPONENTS)) as pool:
            results = list(pool.map(lambda c: _wait_one(c, deadline), state.components.values()))
        failures = [r for r in results if r]
        if failures:
            raise StackError("\n".join(failures))

    def _create_topics(self, state: StackState) -> dict[str, int]:
        from lorafeed.kafka_clients import KafkaSetupError, ensure_topics, make_admin

        assert state.bootstrap_servers is not None
        try:
            return ensure_topics(make_admin(state.bootstrap_servers), state.topic_prefix)
        except KafkaSetupError as exc:
            broker = state.components["broker"]
            raise StackError(f"broker: {exc} (log: {broker.log_path})") from exc


def _wait_one(component: ComponentState, deadline: float) -> str:
    problem = "not checked"
    while time.monotonic() < deadline:
        problem = component_health(component)
        if not problem:
            return ""
        if not component.process_alive():
            break
        time.sleep(0.1)
    where = f"; log: {component.log_path}" if component.log_path else ""
    last = procs.tail(component.log_path, 5) if component.log_path else ""
    return f"{component.name} at {component.url} is not healthy: {problem}{where}" + (
        "\n  last log lines:\n    " + "\n    ".join(last.splitlines()) if last else ""
    )


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("RUST_LOG", "warn")
    return env


def stack_info(state_dir: Path, state: StackState) -> dict[str, Any]:
    """The machine-readable view printed by ``lorafeed stack status --json``."""
    return {
        "state_dir": str(state_dir),
        "topic_prefix": state.topic_prefix,
        "bootstrap_servers": state.bootstrap_servers,
        "redis_url": state.url("redis"),
        "milvus_uri": state.url("milvus"),
        "topics": state.topics,
        "components": {k: asdict(v) for k, v in state.components.items()},
    }
