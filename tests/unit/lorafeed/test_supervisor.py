"""The supervisor restarts crashed services with backoff and never leaves a process behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from lorafeed import supervisor
from lorafeed.supervisor import (
    STATE_FILE,
    Lifecycle,
    RestartPolicy,
    ServiceEvent,
    ServiceSpec,
    ServiceStatus,
    Supervisor,
    SupervisorError,
    checked,
    exited,
    halted,
    next_action,
    render_status,
    started,
)

SLEEPER = "import time; print('ready', flush=True); time.sleep(60)"
STUBBORN = textwrap.dedent(
    """
    import signal, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print('ready', flush=True)
    time.sleep(60)
    """
)
# The service leaves a grandchild in its process group that ignores SIGTERM.
PARENT_OF_STUBBORN = textwrap.dedent(
    f"""
    import subprocess, sys, time
    subprocess.Popen([sys.executable, '-c', {STUBBORN!r}, sys.argv[1]])
    if sys.argv[2] == 'exit':
        time.sleep(0.3)
        sys.exit(3)
    time.sleep(60)
    """
)

# A supervisor in its own process, as `lorafeed up` runs it: argv is token, state dir, handlers.
OWNER = textwrap.dedent(
    f"""
    import sys
    from pathlib import Path
    from lorafeed.supervisor import ServiceSpec, Supervisor
    token, state, handles_signals = sys.argv[1:4]
    sup = Supervisor(Path(state))
    sleeper = [sys.executable, '-c', {SLEEPER!r}, token]
    sup.add(ServiceSpec('worker', sleeper))
    if handles_signals == 'True':
        sup.install_signal_handlers()
    sup.run(interval=0.05)
    print('owner done', flush=True)
    """
)
ROOT = Path(supervisor.__file__).resolve().parents[1]

# --- pure restart decisions ------------------------------------------------------------------


def crash_loop(policy: RestartPolicy, runs: list[float]) -> list[tuple[Lifecycle, float | None]]:
    """Start, run for each duration, exit with code 3, restart when due.

    Returns the state after each exit and the wait it was given (None once failed).
    """
    life, now = Lifecycle(), 0.0
    out: list[tuple[Lifecycle, float | None]] = []
    for ran in runs:
        life = started(life, now, has_health=False)
        now += ran
        life = exited(policy, life, now, 3)
        if life.retry_at is None:
            assert next_action(life, now + 1e6) == "none"
            out.append((life, None))
            break
        out.append((life, life.retry_at - now))
        assert next_action(life, life.retry_at - 0.01) == "wait"
        now = life.retry_at
        assert next_action(life, now) == "start"
    return out


def test_backoff_doubles_from_half_a_second_up_to_the_cap() -> None:
    policy = RestartPolicy(max_restarts=20, backoff_initial=0.5, backoff_max=30.0)

    steps = crash_loop(policy, [1.0] * 9)

    assert [wait for _, wait in steps] == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    last = steps[-1][0]
    assert (last.restarts, last.streak, last.exit_code) == (8, 9, 3)


def test_a_stable_run_resets_the_backoff_but_not_the_restart_count() -> None:
    policy = RestartPolicy(max_restarts=3, backoff_initial=0.5, stable_after=10.0)

    steps = crash_loop(policy, [1.0, 1.0, 1.0, 10.0, 1.0])

    assert [wait for _, wait in steps] == [0.5, 1.0, 2.0, 0.5, 1.0]
    assert [life.restarts for life, _ in steps] == [0, 1, 2, 3, 4]


def test_service_fails_after_max_restarts_and_is_not_restarted() -> None:
    steps = crash_loop(RestartPolicy(max_restarts=3), [1.0] * 10)

    assert [life.phase for life, _ in steps] == ["backoff", "backoff", "backoff", "failed"]
    assert (steps[-1][0].restarts, steps[-1][0].exit_code) == (3, 3)


def test_zero_max_restarts_fails_on_first_exit() -> None:
    steps = crash_loop(RestartPolicy(max_restarts=0), [1.0])
    assert [life.phase for life, _ in steps] == ["failed"]


def test_health_moves_between_starting_healthy_and_running() -> None:
    life = started(Lifecycle(), 0.0, has_health=True)
    assert life.phase == "starting"
    assert checked(life, False).phase == "starting"
    life = checked(life, True)
    assert life.phase == "healthy"
    assert checked(life, False).phase == "running"
    assert started(Lifecycle(), 0.0, has_health=False).phase == "running"
    backoff = exited(RestartPolicy(), life, 1.0, 1)
    assert checked(backoff, True) == backoff
    assert halted(backoff).phase == "stopped" and halted(backoff).retry_at is None
    failed = exited(RestartPolicy(max_restarts=0), life, 1.0, 1)
    assert halted(failed).phase == "failed"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_restarts": -1}, "max_restarts must be >= 0, got -1"),
        ({"backoff_initial": 0.0}, "got 0.0 and 30.0"),
        ({"backoff_initial": 5.0, "backoff_max": 1.0}, "got 5.0 and 1.0"),
        ({"stable_after": 0.0}, "stable_after must be > 0, got 0.0"),
    ],
)
def test_bad_policies_are_rejected(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(SupervisorError, match=message):
        RestartPolicy(**kwargs)  # type: ignore[arg-type]


def test_bad_specs_are_rejected() -> None:
    with pytest.raises(SupervisorError, match="invalid service name 'Bad Name'"):
        ServiceSpec("Bad Name", ["true"])
    with pytest.raises(SupervisorError, match="service x has an empty argv"):
        ServiceSpec("x", [])
    spec = ServiceSpec("x", ["a", "b"], env={"K": "v"})
    assert spec.argv == ("a", "b") and dict(spec.env) == {"K": "v"}


def test_render_status_gives_one_aligned_line_per_service() -> None:
    rows = [
        ServiceStatus("streams", 42, "healthy", 0, 192.0, None, Path("/s/logs/streams.log")),
        ServiceStatus("serve-1", None, "backoff", 2, None, 3, Path("/s/logs/serve-1.log"), 1.0),
    ]
    assert render_status(rows) == [
        "streams  healthy   pid 42  up 3m12s  restarts 0  log /s/logs/streams.log",
        "serve-1  backoff   pid -  retry in 1.0s  restarts 2  last exit 3  log /s/logs/serve-1.log",
    ]
    event = ServiceEvent("serve-1", "exited", 7, 3, 1.0)
    assert str(event) == "serve-1 exited (pid 7) with exit code 3, restarting in 1.0s"


# --- real processes --------------------------------------------------------------------------


@pytest.fixture
def marker() -> Iterator[str]:
    """A token put in every test process's argv; afterwards none may remain, nor any zombie."""
    token = f"lorafeed-test-{uuid.uuid4().hex}"
    yield token
    wait_for(lambda: not marked(token), timeout=3.0)
    leftovers = marked(token)
    for proc in leftovers:
        proc.kill()
    zombies = [c.pid for c in psutil.Process().children(recursive=True) if is_zombie(c)]
    assert not leftovers, f"processes left running: {leftovers}"
    assert not zombies, f"zombies left: {zombies}"


def marked(token: str) -> list[psutil.Process]:
    return [p for p in psutil.process_iter(["cmdline"]) if token in (p.info["cmdline"] or [])]


def is_zombie(proc: psutil.Process) -> bool:
    try:
        return bool(proc.status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def gone(pid: int) -> bool:
    """Not running; an orphan may linger as a zombie until init reaps it."""
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


def wait_for(probe: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Call ``probe`` until it is true or ``timeout`` passes; its last answer."""
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def py(code: str, token: str, *args: str) -> list[str]:
    return [sys.executable, "-c", code, token, *args]


def poll_until(sup: Supervisor, done: Callable[[], bool], timeout: float = 10.0) -> list[str]:
    events: list[str] = []
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"timed out; events so far: {events}"
        events += [str(e) for e in sup.poll()]
        time.sleep(0.02)
    return events


def status_of(sup: Supervisor, name: str) -> ServiceStatus:
    return next(s for s in sup.status() if s.name == name)


def log_has(path: Path, text: str, count: int = 1) -> bool:
    return path.exists() and path.read_text().count(text) >= count


def test_crashing_service_is_restarted_with_backoff_until_failed(
    tmp_path: Path, marker: str
) -> None:
    policy = RestartPolicy(max_restarts=3, backoff_initial=0.1, backoff_max=0.2)
    sup = Supervisor(tmp_path)
    sup.add(
        ServiceSpec("crasher", py("print('boom'); raise SystemExit(3)", marker), restart=policy)
    )
    sup.start_all()
    counts: list[int] = []

    def failed() -> bool:
        counts.append(status_of(sup, "crasher").restarts)
        return status_of(sup, "crasher").state == "failed"

    events = poll_until(sup, failed)

    exits = [e for e in events if "exited" in e]
    assert len(exits) == 4 and all("exit code 3" in e for e in exits)
    assert [e.rsplit("restarting in ", 1)[-1] for e in exits[:3]] == ["0.1s", "0.2s", "0.2s"]
    assert counts == sorted(counts) and counts[-1] == 3
    final = status_of(sup, "crasher")
    assert (final.pid, final.exit_code, final.restarts) == (None, 3, 3)
    assert final.log_path.read_text().count("boom") == 4
    sup.stop_all()


def test_stop_all_stops_healthy_services_in_reverse_order(tmp_path: Path, marker: str) -> None:
    answers = iter([False, True])

    def health() -> bool:
        value = next(answers, None)
        if value is None:
            raise ConnectionError("refused")
        return value

    sup = Supervisor(tmp_path)
    sup.add(ServiceSpec("first", py(SLEEPER, marker), health=health, health_interval=0.0))
    sup.add(ServiceSpec("second", py(SLEEPER, marker)))
    sup.start_all()
    pids = [s.pid for s in sup.status()]
    states = [s.state for s in sup.status()]
    events = poll_until(sup, lambda: status_of(sup, "first").state == "healthy")
    events += poll_until(sup, lambda: status_of(sup, "first").state == "running")

    stopped = [str(e) for e in sup.stop_all()]

    assert states == ["starting", "running"]
    assert [e.split(" (")[0] for e in events] == ["first healthy", "first unhealthy"]
    assert [e.split(" ")[0] for e in stopped] == ["second", "first"]
    assert not any(psutil.pid_exists(pid) for pid in pids if pid is not None)
    assert [s.state for s in sup.status()] == ["stopped", "stopped"]
    assert json.loads((tmp_path / STATE_FILE).read_text())["services"] == []


def test_child_ignoring_sigterm_is_killed_after_stop_timeout(tmp_path: Path, marker: str) -> None:
    sup = Supervisor(tmp_path)
    sup.add(ServiceSpec("stubborn", py(STUBBORN, marker), stop_timeout=0.5))
    sup.start_all()
    row = status_of(sup, "stubborn")
    assert wait_for(lambda: log_has(row.log_path, "ready"))

    began = time.monotonic()
    sup.stop_all()
    took = time.monotonic() - began

    assert 0.5 <= took < 5.0
    assert row.pid is not None and not psutil.pid_exists(row.pid)


@pytest.mark.parametrize("how", ["exit", "stop"])
def test_grandchildren_left_in_the_group_are_killed(tmp_path: Path, marker: str, how: str) -> None:
    sup = Supervisor(tmp_path)
    spec = ServiceSpec(
        "parent", py(PARENT_OF_STUBBORN, marker, how), restart=RestartPolicy(max_restarts=0)
    )
    sup.add(spec)
    sup.start_all()
    log = status_of(sup, "parent").log_path
    assert wait_for(lambda: log_has(log, "ready"))

    if how == "exit":
        poll_until(sup, lambda: status_of(sup, "parent").state == "failed")
    else:
        sup.stop_all()

    assert wait_for(lambda: not marked(marker), timeout=3.0)
    sup.stop_all()


def test_another_supervisor_instance_stops_recorded_processes(tmp_path: Path, marker: str) -> None:
    first = Supervisor(tmp_path)
    first.add(ServiceSpec("learner", py(SLEEPER, marker), stop_timeout=2.0))
    first.start_all()
    pid = status_of(first, "learner").pid
    recorded = json.loads((tmp_path / STATE_FILE).read_text())["services"]
    assert [(r["name"], r["pid"], r["stop_timeout"]) for r in recorded] == [("learner", pid, 2.0)]

    second = Supervisor(tmp_path)
    assert [(s.name, s.pid, s.state) for s in second.status()] == [("learner", pid, "running")]
    second.add(ServiceSpec("learner", py(SLEEPER, marker)))
    with pytest.raises(SupervisorError, match=f"still running \\(learner pid {pid}\\)"):
        second.start_all()
    with pytest.raises(SupervisorError, match="stop them first"):
        second.run()  # a second `lorafeed up` must not stop the first one's services
    assert pid is not None and psutil.pid_exists(pid)

    assert [str(e) for e in Supervisor(tmp_path).stop_all()] == [f"learner stopped (pid {pid})"]

    assert not psutil.pid_exists(pid)
    assert Supervisor(tmp_path).status() == []
    first.stop_all()  # its child is already gone: nothing to do, nothing raised


@pytest.mark.parametrize("handles_signals", [True, False])
def test_stop_from_another_process_stops_the_running_supervisor_first(
    tmp_path: Path, marker: str, handles_signals: bool
) -> None:
    argv = py(OWNER, marker, str(tmp_path), str(handles_signals))
    with subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, text=True) as owner:
        try:
            assert wait_for(lambda: any(s.name == "worker" for s in Supervisor(tmp_path).status()))
            worker = status_of(Supervisor(tmp_path), "worker").pid
            assert worker is not None

            events = [str(e) for e in Supervisor(tmp_path).stop_all()]

            assert gone(worker)
            if handles_signals:  # the owner stopped its worker itself and exited cleanly
                assert events == []
                assert owner.wait(timeout=5) == 0
                assert owner.stdout is not None and owner.stdout.read() == "owner done\n"
            else:  # SIGTERM killed the owner; the worker was stopped by its recorded pid
                assert events == [f"worker stopped (pid {worker})"]
                assert owner.wait(timeout=5) == -signal.SIGTERM
        finally:
            owner.kill()


def test_start_all_fails_loudly_and_stops_what_it_started(tmp_path: Path, marker: str) -> None:
    sup = Supervisor(tmp_path)
    sup.add(ServiceSpec("fine", py(SLEEPER, marker)))
    sup.add(ServiceSpec("missing", ["/nonexistent/lorafeed-binary"]))

    with pytest.raises(SupervisorError, match="cannot start services.*/nonexistent/lorafeed-bin"):
        sup.start_all()

    assert [(s.name, s.state, s.pid) for s in sup.status()] == [
        ("fine", "stopped", None),
        ("missing", "stopped", None),
    ]


def test_a_service_that_cannot_be_restarted_backs_off_like_a_crash(
    tmp_path: Path, marker: str
) -> None:
    script = tmp_path / "service.sh"
    script.write_text(f"#!/bin/sh\n# {marker}\nexit 3\n")
    script.chmod(0o755)
    now = [0.0]
    sup = Supervisor(tmp_path, clock=lambda: now[0])
    policy = RestartPolicy(max_restarts=5, backoff_initial=1.0, backoff_max=8.0)
    sup.add(ServiceSpec("vanishing", [str(script)], restart=policy))
    sup.start_all()
    poll_until(sup, lambda: status_of(sup, "vanishing").state == "backoff")
    script.unlink()

    now[0] = 1.0
    events = [(e.kind, e.exit_code, e.retry_in) for e in sup.poll()]

    assert events == [("exited", None, 2.0)]
    row = status_of(sup, "vanishing")
    assert (row.state, row.restarts, row.exit_code) == ("backoff", 1, None)
    assert "cannot start vanishing" in row.log_path.read_text()


def test_stale_records_are_ignored(tmp_path: Path, marker: str) -> None:
    # A live process whose start time differs from the record: its pid was recycled.
    stranger = subprocess.Popen(py(SLEEPER, marker), stdout=subprocess.DEVNULL)
    try:
        born = psutil.Process(stranger.pid).create_time()
        stale = [
            {"name": "recycled", "pid": stranger.pid, "create_time": born - 100.0},
            {"name": "gone", "pid": 2**22 + 1, "create_time": 1.0},
        ]
        for row in stale:
            row.update(log_path=str(tmp_path / "x.log"), stop_timeout=1.0)
        (tmp_path / STATE_FILE).write_text(json.dumps({"version": 1, "services": stale}))

        sup = Supervisor(tmp_path)

        assert sup.status() == []
        assert sup.stop_all() == []
        assert stranger.poll() is None
        assert json.loads((tmp_path / STATE_FILE).read_text())["services"] == []
    finally:
        stranger.kill()
        stranger.wait()


def test_corrupt_state_file_fails_loudly(tmp_path: Path) -> None:
    (tmp_path / STATE_FILE).write_text("{not json")
    with pytest.raises(SupervisorError, match="cannot read supervisor state"):
        Supervisor(tmp_path)


def test_sigterm_makes_run_leave_its_loop_and_stop_everything(tmp_path: Path, marker: str) -> None:
    sup = Supervisor(tmp_path)
    sup.add(ServiceSpec("serve", py(SLEEPER, marker)))
    calls: list[int] = []
    seen: list[str] = []

    def until() -> bool:
        calls.append(1)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGTERM)
        return len(calls) > 50  # only if the signal was ignored: then the asserts fail

    before = signal.getsignal(signal.SIGTERM)
    restore = sup.install_signal_handlers()
    try:
        sup.run(until, interval=0.02, on_event=lambda e: seen.append(str(e)))
    finally:
        restore()

    assert len(calls) == 3
    assert seen[0].startswith("serve started (pid ") and seen[-1].startswith("serve stopped")
    assert status_of(sup, "serve").state == "stopped"
    assert signal.getsignal(signal.SIGTERM) is before


def test_run_with_injected_clock_restarts_when_backoff_elapses(tmp_path: Path, marker: str) -> None:
    now = [0.0]
    sup = Supervisor(tmp_path, clock=lambda: now[0], sleep=lambda s: None)
    policy = RestartPolicy(max_restarts=5, backoff_initial=5.0, backoff_max=5.0)
    sup.add(ServiceSpec("crasher", py("raise SystemExit(3)", marker), restart=policy))
    sup.start_all()
    poll_until(sup, lambda: status_of(sup, "crasher").state == "backoff")

    for _ in range(5):  # the fake clock stands still: no restart however often we poll
        assert sup.poll() == []
    assert status_of(sup, "crasher").retry_in == 5.0
    now[0] = 5.0
    assert [e.kind for e in sup.poll()] == ["started"]
    sup.stop_all()
