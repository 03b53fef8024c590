"""``lorafeed up`` / ``lorafeed down``: the embedded stack plus every service (streams worker,
learner, serving nodes, scorer) under the supervisor, one status line per change, restarts with
backoff, and a clean stop by pid on Ctrl-C / SIGTERM. The demo starts the same processes
through :class:`ServiceRunner`.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

from lorafeed import procs
from lorafeed.lifecycle import SupervisorError
from lorafeed.settings import StackSettings
from lorafeed.stack import Stack, StackError
from lorafeed.supervisor import ServiceEvent, ServiceSpec, ServiceStatus, Supervisor
from lorafeed.up_plan import UpPlan, UpPlanError, passed_through, service_specs, thread_budget

KEYS_FILE = "serving-keys.json"
_READY = frozenset({"healthy", "running"})
_COLOURS = {"healthy": "green", "running": "green", "starting": "yellow", "backoff": "yellow",
            "failed": "red", "stopped": "dim"}


class UpError(RuntimeError):
    """A service could not start, or did not become ready in time."""


@dataclass(frozen=True)
class ServingKeys:
    """The app and admin keys of this stack's serving nodes and their SERVING_API_KEYS value."""

    app: str
    admin: str
    entries: str
    path: Path


def serving_keys(state_dir: Path) -> ServingKeys:
    """Keys kept in `<state_dir>/serving-keys.json` (mode 0600), created on first use."""
    from serving.settings import new_api_key

    path = state_dir / KEYS_FILE
    if path.exists():
        body = json.loads(path.read_text(encoding="utf-8"))
        return ServingKeys(body["app"], body["admin"], json.dumps(body["entries"]), path)
    app, app_entry = new_api_key("app", "app")
    admin, admin_entry = new_api_key("admin", "ops")
    entries = [app_entry.model_dump(), admin_entry.model_dump()]
    state_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{KEYS_FILE}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump({"app": app, "admin": admin, "entries": entries}, out, indent=2)
    os.replace(tmp, path)
    return ServingKeys(app, admin, json.dumps(entries), path)


def http_ready(url: str) -> Callable[[], bool]:
    """A health check: GET url/readyz answers 200 within a second."""

    def check() -> bool:
        return httpx.get(f"{url}/readyz", timeout=1.0).status_code == 200

    return check


class ServiceRunner:
    """A supervisor polled from a background thread (exits, restarts, health) while the caller
    does other work; every event goes to `on_event`."""

    def __init__(self, state_dir: Path, specs: Iterable[ServiceSpec],
                 on_event: Callable[[ServiceEvent], None]) -> None:
        self.supervisor = Supervisor(state_dir)
        for spec in specs:
            self.supervisor.add(spec)
        self._emit = on_event
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="supervisor", daemon=True)
        self._started = False

    def refuse_if_running(self) -> None:
        """UpError when the state dir records a live supervisor or services of another run."""
        running = [row for row in self.supervisor.status() if row.pid is not None]
        if running:
            pids = ", ".join(f"{row.name} pid {row.pid}" for row in running)
            raise UpError(f"{self.supervisor.state_dir} already runs services ({pids}); "
                          "stop them with `lorafeed down` first")

    def start(self) -> None:
        """Start every service (SupervisorError, with nothing of ours left running, if one
        cannot start or another run's services are alive)."""
        with self._lock:
            events = self.supervisor.start_all()
        self._started = True
        for event in events:
            self._emit(event)
        self._thread.start()

    def status(self) -> list[ServiceStatus]:
        with self._lock:
            return self.supervisor.status()

    def wait_ready(self, timeout_s: float, on_tick: Callable[[list[ServiceStatus]], None]
                   = lambda rows: None) -> list[ServiceStatus]:
        """Until every service is healthy (or running, without a health check); UpError when
        one failed for good or the time is up, naming its log."""
        deadline = time.monotonic() + timeout_s
        while True:
            rows = self.status()
            on_tick(rows)
            if all(row.state in _READY for row in rows):
                return rows
            failed = [row for row in rows if row.state == "failed"]
            if failed or time.monotonic() > deadline:
                raise UpError(_not_ready(failed or [r for r in rows if r.state not in _READY],
                                         "failed" if failed else f"not ready in {timeout_s:.0f} s"))
            time.sleep(0.5)

    def stop(self) -> list[ServiceEvent]:
        """Stop our services by pid (nothing, when start never succeeded: what another run
        recorded in the state dir is not ours to stop)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        if not self._started:
            return []
        with self._lock:
            events = self.supervisor.stop_all()
        for event in events:
            self._emit(event)
        return events

    def _poll(self) -> None:
        while not self._stop.wait(0.3):
            with self._lock:
                events = self.supervisor.poll()
            for event in events:
                self._emit(event)


def _not_ready(rows: Sequence[ServiceStatus], what: str) -> str:
    lines = [f"services {what}:"]
    for row in rows:
        lines.append(f"  {row.name} ({row.state}, exit code {row.exit_code}); log {row.log_path}:")
        lines += [f"    {line}" for line in procs.tail(row.log_path, 8).splitlines()]
    return "\n".join(lines)


def status_table(rows: Sequence[ServiceStatus], urls: dict[str, str]) -> Table:
    """The compact status table: one row per service."""
    table = Table(title="services")
    for column in ("service", "state", "pid", "restarts", "url", "log"):
        table.add_column(column)
    for row in rows:
        colour = _COLOURS.get(row.state, "white")
        table.add_row(row.name, f"[{colour}]{row.state}[/]", str(row.pid or "-"),
                      str(row.restarts), urls.get(row.name, "-"), str(row.log_path))
    return table


def budget_line(plan: UpPlan) -> str:
    """The torch thread budget, as printed when the services start."""
    budget = thread_budget(plan.cores, plan.names, plan.learner_share)
    shares = ", ".join(f"{name} {threads}" for name, threads in budget.items())
    return f"torch threads for {plan.cores} cores: {shares}"


def dashboard_hint(state_dir: Path, node_urls: dict[str, str]) -> str | None:
    """The command that watches these services live, when this install has the dashboard."""
    if importlib.util.find_spec("lorafeed.dashboard") is None:
        return None
    nodes = " ".join(f"--node {url}" for url in node_urls.values())
    return f"watch it live in another terminal: lorafeed dashboard --state-dir {state_dir} {nodes}"


def event_line(event: ServiceEvent) -> str:
    """One status line per change, coloured by what happened."""
    colour = {"healthy": "green", "started": "cyan", "unhealthy": "yellow", "exited": "yellow",
              "failed": "red", "stopped": "dim"}[event.kind]
    return f"  [{colour}]{event}[/]"


def run_up(stack_settings: StackSettings, tasks_file: Path, ports: tuple[int, ...],
           console: Console, cores: int | None = None) -> int:
    """Start the stack and the services, print changes until SIGINT/SIGTERM, stop everything."""
    stack = Stack(stack_settings, log=lambda line: console.print(f"  {line}", highlight=False))
    state_dir = stack.state_dir
    environ = passed_through(os.environ)
    keys = serving_keys(state_dir)
    try:
        plan = UpPlan(state_dir, tasks_file, ports, cores or os.cpu_count() or 1,
                      api_key_entries=environ.pop("SERVING_API_KEYS", keys.entries), env=environ)
    except UpPlanError as exc:
        raise UpError(str(exc)) from exc
    taken = [port for port in ports if procs.port_open("127.0.0.1", port)]
    if taken:
        raise UpError(f"serving node ports {taken} are taken; choose another --port")
    runner = ServiceRunner(state_dir, service_specs(plan, http_ready),
                           lambda event: console.print(event_line(event), highlight=False))
    runner.refuse_if_running()  # another `up` on this state dir: leave it (and its stack) alone
    was_up = all(row.state == "healthy" for row in stack.status())
    try:
        stack.up()
    except StackError as exc:
        raise UpError(str(exc)) from exc
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set())
                for sig in (signal.SIGINT, signal.SIGTERM)}
    console.print(budget_line(plan), highlight=False)
    try:
        runner.start()
        _watch(runner, plan, keys, stop, console)
    except SupervisorError as exc:
        raise UpError(str(exc)) from exc
    finally:
        console.print("stopping every service by pid")
        runner.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if not was_up:
            console.print(f"stopped the stack: {', '.join(stack.down())}")
    return 0


def _watch(runner: ServiceRunner, plan: UpPlan, keys: ServingKeys, stop: threading.Event,
           console: Console) -> None:
    shown = False
    while not stop.wait(1.0):
        rows = runner.status()
        if not shown and all(row.state in _READY for row in rows):
            console.print(status_table(rows, plan.node_urls()))
            console.print(f"API keys: {keys.path} (send 'Authorization: Bearer <app key>'); "
                          "Ctrl-C stops everything", highlight=False)
            hint = dashboard_hint(plan.state_dir, plan.node_urls())
            if hint:
                console.print(hint, highlight=False)
            shown = True


def run_down(stack_settings: StackSettings) -> list[str]:
    """Stop what `lorafeed up` recorded in the state dir (its supervisor first), then the stack."""
    state_dir = stack_settings.state_dir.resolve()
    stopped = [event.name for event in Supervisor(state_dir).stop_all()]
    return stopped + Stack(stack_settings).down()
