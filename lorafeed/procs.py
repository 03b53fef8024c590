"""Child processes we start and stop ourselves: spawn detached with a log file, stop by pid.

Used by the embedded stack and the service supervisor. Every process we start is recorded by
pid (with its start time, so a recycled pid is never mistaken for ours) and stopped by that pid.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil


class ProcessError(RuntimeError):
    """A child process could not be started or did not become healthy."""


@dataclass(frozen=True)
class ProcessHandle:
    """What we need to find a started process again, possibly from another CLI invocation."""

    name: str
    pid: int
    create_time: float
    log_path: str

    def is_alive(self) -> bool:
        return pid_is_ours_and_alive(self.pid, self.create_time)


def spawn(
    name: str,
    argv: Sequence[str],
    log_path: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> ProcessHandle:
    """Start ``argv`` in its own session with stdout and stderr appended to ``log_path``.

    The child gets its own session so a Ctrl-C in the parent's terminal does not reach it;
    it is stopped only through :func:`stop`.
    """
    return spawn_child(name, argv, log_path, env, cwd)[0]


def spawn_child(
    name: str,
    argv: Sequence[str],
    log_path: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> tuple[ProcessHandle, subprocess.Popen[bytes]]:
    """Like :func:`spawn`, and also return the Popen, for a caller that waits for the exit code.

    The supervisor keeps the Popen so that only it reaps the child and sees how it exited.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        try:
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else None,
                cwd=str(cwd) if cwd else None,
                start_new_session=True,
            )
        except OSError as exc:
            raise ProcessError(f"cannot start {name} ({argv[0]}): {exc}") from exc
    try:
        create_time = psutil.Process(proc.pid).create_time()
    except psutil.NoSuchProcess as exc:
        raise ProcessError(f"{name} exited at once; see {log_path}") from exc
    handle = ProcessHandle(name=name, pid=proc.pid, create_time=create_time, log_path=str(log_path))
    return handle, proc


def pid_is_ours_and_alive(pid: int, create_time: float) -> bool:
    """True when ``pid`` runs, is not a zombie, and is the process we started (same start time)."""
    try:
        proc = psutil.Process(pid)
        if abs(proc.create_time() - create_time) > 0.05:
            return False
        return proc.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def stop(handle: ProcessHandle, timeout: float = 10.0) -> bool:
    """Stop the process (and its process group) by pid: SIGTERM, then SIGKILL after ``timeout``.

    Returns True when the process is gone. A process that is already gone, or whose pid now
    belongs to someone else, is left alone.
    """
    if not handle.is_alive():
        _reap(handle.pid)
        return True
    _signal_group(handle.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(handle.pid)
        if not handle.is_alive():
            return True
        time.sleep(0.05)
    _signal_group(handle.pid, signal.SIGKILL)
    for _ in range(100):
        _reap(handle.pid)
        if not handle.is_alive():
            return True
        time.sleep(0.05)
    return not handle.is_alive()


def _signal_group(pid: int, sig: signal.Signals) -> None:
    # The child leads its own session (start_new_session), so its pgid is its pid; signalling
    # the group also reaches helpers it forked. Fall back to the pid alone if the group is gone.
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _reap(pid: int) -> None:
    """Collect the exit status if the process is our direct child, so it leaves no zombie."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the caller binds it soon after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def tail(path: str | Path, lines: int = 20) -> str:
    """The last ``lines`` lines of a log file, for error messages."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
