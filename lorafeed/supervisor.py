"""Service supervisor behind ``lorafeed up``: start service processes, restart them with backoff,
stop them all. Restart decisions are pure functions of a :class:`Lifecycle`; :class:`Supervisor`
applies them to real processes through :mod:`lorafeed.procs` and records pids in supervisor.json.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, MappingProxyType
from typing import Any, Literal

import psutil

from lorafeed import procs
from lorafeed.lifecycle import (
    Lifecycle,
    Phase,
    RestartPolicy,
    SupervisorError,
    checked,
    exited,
    halted,
    next_action,
    started,
)
from lorafeed.procs import ProcessHandle

EventKind = Literal["started", "healthy", "unhealthy", "exited", "failed", "stopped"]
STATE_FILE = "supervisor.json"
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")


@dataclass(frozen=True)
class ServiceSpec:
    """One service process. ``env`` is added to the supervisor's own environment.

    ``health`` (e.g. an HTTP GET of /healthz with a short timeout) is called every
    ``health_interval`` seconds while the process runs; it only informs the status.
    """

    name: str
    argv: Sequence[str]
    env: Mapping[str, str] = field(default_factory=dict)
    health: Callable[[], bool] | None = None
    restart: RestartPolicy = field(default_factory=RestartPolicy)
    stop_timeout: float = 10.0
    health_interval: float = 1.0
    cwd: Path | None = None

    def __post_init__(self) -> None:
        if not _NAME_RE.match(self.name):
            raise SupervisorError(f"invalid service name {self.name!r}: need {_NAME_RE.pattern}")
        if not self.argv:
            raise SupervisorError(f"service {self.name} has an empty argv")
        if self.stop_timeout <= 0:
            raise SupervisorError(f"service {self.name}: stop_timeout {self.stop_timeout} <= 0")
        object.__setattr__(self, "argv", tuple(self.argv))
        object.__setattr__(self, "env", MappingProxyType(dict(self.env)))


@dataclass(frozen=True)
class ServiceEvent:
    """Something that happened to a service during start, poll or stop."""

    name: str
    kind: EventKind
    pid: int | None = None
    exit_code: int | None = None
    retry_in: float | None = None

    def __str__(self) -> str:
        text = f"{self.name} {self.kind}"
        if self.pid is not None:
            text += f" (pid {self.pid})"
        if self.exit_code is not None:
            text += f" with exit code {self.exit_code}"
        if self.retry_in is not None:
            text += f", restarting in {self.retry_in:.1f}s"
        return text


@dataclass(frozen=True)
class ServiceStatus:
    """One line of ``lorafeed status``; ``uptime`` and ``retry_in`` are in seconds."""

    name: str
    pid: int | None
    state: Phase
    restarts: int
    uptime: float | None
    exit_code: int | None
    log_path: Path
    retry_in: float | None = None


@dataclass
class _Service:
    spec: ServiceSpec
    log_path: Path
    life: Lifecycle = field(default_factory=Lifecycle)
    handle: ProcessHandle | None = None
    popen: subprocess.Popen[bytes] | None = None
    health_at: float = 0.0


@dataclass(frozen=True)
class _Record:
    handle: ProcessHandle
    stop_timeout: float


@dataclass(frozen=True)
class _Recorded:
    """What supervisor.json says is still alive: the supervisor that wrote it (unless it is us)
    and the services it started."""

    owner: ProcessHandle | None
    services: dict[str, _Record]


def _never() -> bool:
    return False


class Supervisor:
    """Runs the services of one ``lorafeed up``; any instance on the same ``state_dir`` can stop
    them (``lorafeed down``), because the supervisor's and the services' pids are recorded there.

    What an earlier instance recorded and is still alive and ours is adopted: shown by
    :meth:`status`, stopped by :meth:`stop_all` (the recorded supervisor first, with SIGTERM, so
    it does not restart what we stop), and it keeps :meth:`start_all` from starting a second set.
    Stale records are ignored.
    """

    def __init__(
        self,
        state_dir: Path,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.state_dir = state_dir
        self._clock = clock
        self._sleep = sleep
        self._services: dict[str, _Service] = {}
        recorded = _load_records(state_dir / STATE_FILE)
        self._owner = recorded.owner
        self._adopted = recorded.services
        self._me = psutil.Process().create_time()
        self._stop_requested = False

    def add(self, spec: ServiceSpec) -> None:
        """Register a service; services start in the order they are added, stop in reverse."""
        if spec.name in self._services:
            raise SupervisorError(f"service {spec.name} is already added")
        self._services[spec.name] = _Service(spec, self.state_dir / "logs" / f"{spec.name}.log")

    def start_all(self) -> list[ServiceEvent]:
        """Start every added service not yet started; on failure stop them all and raise."""
        live = [f"supervisor pid {self._owner.pid}"] if self._owner else []
        live += [f"{name} pid {r.handle.pid}" for name, r in self._adopted.items()]
        if live:
            raise SupervisorError(
                f"{self.state_dir / STATE_FILE} records processes still running "
                f"({', '.join(live)}); stop them first"
            )
        events: list[ServiceEvent] = []
        try:
            for svc in self._services.values():
                if svc.handle is None and svc.life.phase == "stopped":
                    events.append(self._spawn(svc))
        except procs.ProcessError as exc:
            self.stop_all()
            raise SupervisorError(f"cannot start services: {exc}") from exc
        return events

    def poll(self) -> list[ServiceEvent]:
        """One step: collect exits, schedule or perform restarts, run due health checks."""
        events: list[ServiceEvent] = []
        for svc in self._services.values():
            now = self._clock()
            if svc.popen is not None:
                done, code = _collect_exit(svc.popen)
                events.extend(self._on_exit(svc, now, code) if done else self._check(svc, now))
            elif next_action(svc.life, now) == "start":
                events.extend(self._restart(svc, now))
        return events

    def run(
        self,
        until: Callable[[], bool] = _never,
        interval: float = 0.2,
        on_event: Callable[[ServiceEvent], None] | None = None,
    ) -> None:
        """Start the services, then poll until ``until()`` or a stop request, then stop_all.

        If start_all raises, nothing of ours runs and what another supervisor runs is left alone.
        """
        emit = on_event or (lambda event: None)
        for event in self.start_all():
            emit(event)
        try:
            while not self._stop_requested and not until():
                for event in self.poll():
                    emit(event)
                self._sleep(interval)
        finally:
            for event in self.stop_all():
                emit(event)

    def request_stop(self) -> None:
        """Make :meth:`run` leave its loop (and stop everything) at the next step."""
        self._stop_requested = True

    def install_signal_handlers(self) -> Callable[[], None]:
        """Turn SIGTERM and SIGINT into :meth:`request_stop`; returns a function that restores
        the previous handlers. Call from the main thread."""

        def handler(signum: int, frame: FrameType | None) -> None:
            self.request_stop()

        previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}

        def restore() -> None:
            for sig, old in previous.items():
                signal.signal(sig, old)

        return restore

    def stop_all(self) -> list[ServiceEvent]:
        """Stop our services in reverse start order, then adopted ones; raise if one survives."""
        events: list[ServiceEvent] = []
        stuck: dict[str, _Record] = {}
        self._stop_owner()
        for svc in reversed(list(self._services.values())):
            if svc.handle is not None and svc.popen is not None:
                done, code = _collect_exit(svc.popen)
                if not done and not _stop(svc.handle, svc.spec.stop_timeout):
                    stuck[svc.spec.name] = _Record(svc.handle, svc.spec.stop_timeout)
                elif not done:
                    _collect_exit(svc.popen)  # procs.stop reaped it; let the Popen know
                events.append(ServiceEvent(svc.spec.name, "stopped", svc.handle.pid, code))
            svc.handle = svc.popen = None
            svc.life = halted(svc.life)
        for name, record in reversed(list(self._adopted.items())):
            if not _stop(record.handle, record.stop_timeout):
                stuck[name] = record
            events.append(ServiceEvent(name, "stopped", record.handle.pid))
        self._adopted = stuck
        self._save()
        if stuck:
            pids = {name: record.handle.pid for name, record in stuck.items()}
            raise SupervisorError(f"processes still running after SIGKILL: {pids}")
        return events

    def status(self) -> list[ServiceStatus]:
        """Our services in start order, then adopted processes."""
        now = self._clock()
        rows = [_status(svc, now) for svc in self._services.values()]
        for name, record in self._adopted.items():
            uptime = time.time() - record.handle.create_time
            log = Path(record.handle.log_path)
            rows.append(ServiceStatus(name, record.handle.pid, "running", 0, uptime, None, log))
        return rows

    def _stop_owner(self) -> None:
        """SIGTERM the supervisor that recorded the adopted services and let it stop them; what
        it leaves behind (or all of it, if it has to be killed) is then stopped by pid."""
        owner = self._owner
        if owner is None:
            return
        budget = sum(r.stop_timeout for r in self._adopted.values()) + 5.0
        with contextlib.suppress(ProcessLookupError):
            os.kill(owner.pid, signal.SIGTERM)  # the pid alone: it may lead the user's shell job
        deadline = time.monotonic() + budget
        while owner.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        if owner.is_alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(owner.pid, signal.SIGKILL)
        self._owner = None
        self._adopted = _load_records(self.state_dir / STATE_FILE).services

    def _spawn(self, svc: _Service) -> ServiceEvent:
        spec = svc.spec
        _note(svc.log_path, f"starting {spec.name} (restarts so far: {svc.life.restarts})")
        env = {**os.environ, **spec.env}
        svc.handle, svc.popen = procs.spawn_child(spec.name, spec.argv, svc.log_path, env, spec.cwd)
        now = self._clock()
        svc.life = started(svc.life, now, has_health=spec.health is not None)
        svc.health_at = now
        self._save()
        return ServiceEvent(spec.name, "started", svc.handle.pid)

    def _restart(self, svc: _Service, now: float) -> list[ServiceEvent]:
        try:
            return [self._spawn(svc)]
        except procs.ProcessError as exc:  # e.g. the binary vanished: back off like an exit
            _note(svc.log_path, str(exc))
            svc.life = started(svc.life, now, has_health=False)
            return self._on_exit(svc, now, None)

    def _on_exit(self, svc: _Service, now: float, code: int | None) -> list[ServiceEvent]:
        pid = svc.handle.pid if svc.handle else None
        svc.handle = svc.popen = None
        svc.life = exited(svc.spec.restart, svc.life, now, code)
        self._save()
        name = svc.spec.name
        _note(svc.log_path, f"{name} exited with code {code}; now {svc.life.phase}")
        retry_in = svc.life.retry_at - now if svc.life.retry_at is not None else None
        events = [ServiceEvent(name, "exited", pid, code, retry_in)]
        if svc.life.phase == "failed":
            events.append(ServiceEvent(name, "failed", pid, code))
        return events

    def _check(self, svc: _Service, now: float) -> list[ServiceEvent]:
        health = svc.spec.health
        if health is None or now < svc.health_at:
            return []
        svc.health_at = now + svc.spec.health_interval
        ok = _probe(health)
        before = svc.life.phase
        svc.life = checked(svc.life, ok)
        if svc.life.phase == before:
            return []
        pid = svc.handle.pid if svc.handle else None
        return [ServiceEvent(svc.spec.name, "healthy" if ok else "unhealthy", pid)]

    def _save(self) -> None:
        rows = [(n, r.handle, r.stop_timeout) for n, r in self._adopted.items()]
        rows += [(n, s.handle, s.spec.stop_timeout) for n, s in self._services.items() if s.handle]
        services = [
            {
                "name": n,
                "pid": h.pid,
                "create_time": h.create_time,
                "log_path": h.log_path,
                "stop_timeout": t,
            }
            for n, h, t in rows
        ]
        me = {"pid": os.getpid(), "create_time": self._me}
        body = {"version": 1, "supervisor": me, "services": services}
        _write_atomic(self.state_dir / STATE_FILE, json.dumps(body, indent=2) + "\n")


def render_status(rows: Sequence[ServiceStatus]) -> list[str]:
    """One plain line per service, columns aligned, for the CLI to print or style."""
    width = max((len(row.name) for row in rows), default=0)
    lines = []
    for row in rows:
        parts = [row.name.ljust(width), row.state.ljust(8)]
        parts.append(f"pid {row.pid}" if row.pid is not None else "pid -")
        if row.uptime is not None:
            parts.append(f"up {_duration(row.uptime)}")
        if row.retry_in is not None:
            parts.append(f"retry in {row.retry_in:.1f}s")
        parts.append(f"restarts {row.restarts}")
        if row.exit_code is not None:
            parts.append(f"last exit {row.exit_code}")
        parts.append(f"log {row.log_path}")
        lines.append("  ".join(parts))
    return lines


def _status(svc: _Service, now: float) -> ServiceStatus:
    life = svc.life
    uptime = now - life.started_at if life.started_at is not None else None
    retry_in = max(0.0, life.retry_at - now) if life.retry_at is not None else None
    pid = svc.handle.pid if svc.handle else None
    row = (svc.spec.name, pid, life.phase, life.restarts, uptime, life.exit_code, svc.log_path)
    return ServiceStatus(*row, retry_in=retry_in)


def _collect_exit(popen: subprocess.Popen[bytes]) -> tuple[bool, int | None]:
    """(exited, exit code). Before reaping, kill what the service left in its process group:
    until the zombie is reaped its pid, and so the group id, cannot be reused."""
    try:
        info = os.waitid(os.P_PID, popen.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:  # reaped elsewhere (procs.stop): the code is lost
        popen.poll()  # marks the Popen done so it does not warn "still running"
        return True, None
    if info is None or info.si_pid == 0:
        return False, None
    _kill_group(popen.pid)
    return True, popen.wait()


def _stop(handle: ProcessHandle, timeout: float) -> bool:
    gone = procs.stop(handle, timeout)
    if gone:
        # The leader is gone; members that ignored SIGTERM keep the group id (and so the pid)
        # from being reused, so killing the group cannot hit a stranger.
        _kill_group(handle.pid)
    return gone


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _probe(check: Callable[[], bool]) -> bool:
    try:
        return bool(check())
    except Exception:  # a check that raises means "not healthy", never a supervisor crash
        return False


def _note(log_path: Path, text: str) -> None:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(f"[lorafeed supervisor {stamp}] {text}\n")


def _duration(seconds: float) -> str:
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def _load_records(path: Path) -> _Recorded:
    """What ``path`` records that is still alive and ours; stale entries are dropped."""
    try:
        body: Any = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return _Recorded(None, {})
    except (OSError, ValueError) as exc:
        raise SupervisorError(f"cannot read supervisor state {path}: {exc}") from exc
    records: dict[str, _Record] = {}
    try:
        sup = body.get("supervisor") or {}
        owner = ProcessHandle(
            "supervisor", int(sup.get("pid", 0)), float(sup.get("create_time", 0)), ""
        )
        for row in body["services"]:
            handle = ProcessHandle(
                row["name"], int(row["pid"]), float(row["create_time"]), str(row["log_path"])
            )
            if handle.is_alive():
                records[handle.name] = _Record(handle, float(row["stop_timeout"]))
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise SupervisorError(f"malformed supervisor state {path}: {exc!r}") from exc
    alive = owner.pid not in (0, os.getpid()) and owner.is_alive()
    return _Recorded(owner if alive else None, records)


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
