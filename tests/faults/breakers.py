"""The faults the suite injects into a `FaultWorld`, each recovered before it returns and
recorded as a `Window` (when the scope was down): a restart armed at a failpoint, kill -9,
SIGSTOP/SIGCONT, and kill -9 of Redis or Milvus with a restart on the same port and data dir."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

import psutil

from lorafeed.stack import Stack
from tests.faults.world import CRASH_TIMEOUT_S, READY_TIMEOUT_S, FaultWorld, Window
from tests.support.workers import wait_for


def crash_at(world: FaultWorld, name: str, point: str) -> Window:
    """Restart `name` armed at failpoint `point` ("name@N"), wait for it to SIGKILL itself
    there, then start it clean and wait until it is ready again."""
    window = world.open_window(name, f"failpoint {point}")
    world.stop(name)
    service = world.start(name, failpoint=point, wait=False)
    assert service.popen is not None
    try:
        code = service.popen.wait(CRASH_TIMEOUT_S)
    except Exception as exc:
        pins = {task: world.store.pinned(task) for task in world.tasks}
        raise AssertionError(f"{name} never reached {point} (pins: {pins}):\n"
                             f"{service.log()[-3000:]}") from exc
    tail = service.log()[-3000:]
    assert code == -signal.SIGKILL, f"{name} exited {code}, not at {point}:\n{tail}"
    assert f"failpoint {point.split('@')[0]} hit" in service.log()
    world.note(f"{name} killed itself at {point}")
    world.start(name)
    window.end = time.time()
    return window


def kill9(world: FaultWorld, name: str, restart: bool = True) -> Window:
    """SIGKILL `name` (under load, wherever it is) and start it again."""
    window = world.open_window(name, "kill -9")
    service = world.services[name]
    assert service.handle is not None and service.popen is not None
    psutil.Process(service.handle.pid).kill()
    service.popen.wait(30)
    if restart:
        world.start(name)
        window.end = time.time()
    return window


def pause(world: FaultWorld, name: str, seconds: float,
          until: Callable[[], bool] | None = None, what: str = "") -> Window:
    """SIGSTOP `name` for at least `seconds` and until `until()` holds (`what`), then
    SIGCONT."""
    service = world.services[name]
    assert service.handle is not None
    window = world.open_window(name, f"SIGSTOP {seconds:.0f} s")
    process = psutil.Process(service.handle.pid)
    process.suspend()
    world.note(f"{name} stopped (SIGSTOP)")
    try:
        time.sleep(seconds)  # the fault itself is the wall time without heartbeats
        if until is not None:
            wait_for(until, READY_TIMEOUT_S, what)
    finally:
        process.resume()
        world.note(f"{name} continued (SIGCONT)")
    window.end = time.time()
    return window


def kill_dependency(world: FaultWorld, component: str, down_s: float,
                    marker: str = "") -> Window:
    """kill -9 the stack's Redis or Milvus server, leave it down at least `down_s` and until
    a service logged `marker` once more than before (it saw the outage), restart it (same
    port and data dir) and wait until it is healthy."""
    stack = Stack(world.stack.settings)
    state = stack.state()
    assert state is not None
    pid = state.components[component].pid
    assert pid is not None
    seen = world.log_count(marker)
    window = world.open_window(component, "kill -9")
    process = psutil.Process(pid)
    process.kill()
    process.wait(30)
    time.sleep(down_s)  # the least outage the services must ride out
    if marker:
        wait_for(lambda: world.log_count(marker) > seen, READY_TIMEOUT_S,
                 f"a service logging {marker!r} in the {component} outage")
    stack.up()
    window.end = time.time()
    return window
