"""Every service binds to 127.0.0.1 by default in the embedded stack: the settings defaults say so
(and the embedded stack refuses any other host), and every listening socket of every running
process (the stack's broker, Redis and Milvus; the streams worker, learner, serving node, scorer
and the dashboard, with their children) is on a loopback address."""

from __future__ import annotations

import ipaddress
import sys
from pathlib import Path

import psutil
import pytest

from learner.settings import LearnerSettings
from lorafeed import procs
from lorafeed.dashboard_settings import DashboardSettings
from lorafeed.settings import StackSettings
from serving.settings import ServingSettings
from streams.settings import StreamsSettings
from tests.security.world import SecureWorld
from tests.support.workers import ROOT, wait_for

pytestmark = pytest.mark.integration


def _loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def test_every_default_bind_address_is_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LORAFEED_STACK_HOST", "SERVING_HOST", "LORAFEED_DASHBOARD_HOST",
                 "LEARNER_METRICS_HOST", "STREAMS_METRICS_HOST"):
        monkeypatch.delenv(name, raising=False)
    defaults = {
        "stack": StackSettings().host,
        "serving": ServingSettings().host,
        "dashboard": DashboardSettings().host,
        "learner metrics": LearnerSettings().metrics_host,
        "streams metrics": StreamsSettings().metrics_host,
    }
    assert {name: _loopback(host) for name, host in defaults.items()} == dict.fromkeys(
        defaults, True), defaults
    for host in ("0.0.0.0", "::", "10.0.0.1", "example.com"):
        with pytest.raises(ValueError, match="loopback"):
            StackSettings(host=host)


def _listening(pid: int) -> list[tuple[str, int]]:
    """(address, port) of every listening TCP socket of `pid` and its descendants."""
    process = psutil.Process(pid)
    found = []
    for member in [process, *process.children(recursive=True)]:
        try:
            found += [(c.laddr.ip, c.laddr.port) for c in member.net_connections(kind="inet")
                      if c.status == psutil.CONN_LISTEN]
        except psutil.NoSuchProcess:
            continue
    return found


def test_every_running_process_listens_on_loopback_only(world: SecureWorld,
                                                        tmp_path: Path) -> None:
    stack = world.serving.scenario.stack
    pids = {name: c.pid for name, c in stack.state.components.items() if c.pid is not None}
    pids |= {name: handle.pid for name, (handle, _popen) in world.processes.items()}
    port = procs.free_port()
    handle, popen = procs.spawn_child(  # the dashboard, with default settings (no --host)
        "dashboard-bind", [sys.executable, "-m", "lorafeed", "dashboard", "--port", str(port)],
        tmp_path / "dashboard.log", env=world.env(LORAFEED_DASHBOARD_ACCESS_KEY=""), cwd=ROOT)
    try:
        wait_for(lambda: _listening(handle.pid) or popen.poll() is not None, 120,
                 "the dashboard listening")
        pids["dashboard"] = handle.pid
        sockets = {name: _listening(pid) for name, pid in pids.items()}
    finally:
        procs.stop(handle, timeout=20)
    for name in ("broker", "redis", "milvus", "node", "streams", "learner", "dashboard"):
        assert sockets.get(name), f"{name} listens nowhere: the check would prove nothing"
    exposed = {name: [s for s in found if not _loopback(s[0])] for name, found in sockets.items()}
    assert {name: found for name, found in exposed.items() if found} == {}, sockets
