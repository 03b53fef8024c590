"""`lorafeed up` as an operator runs it, on its own stack (ports, Redis, state dir) with a tiny
task catalog: every service comes up (both serving nodes answer as node-1 / node-2), a killed
service is restarted with backoff, and SIGTERM stops every process by pid."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest

from lorafeed.procs import free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TASKS = """[tasks.tiny]
kind = "classification"
base_model = "tiny-llama"
labels = ["a", "b"]
"""


class Lines:
    """The process's stdout, line by line, read on a thread (so waits can time out)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.seen: list[str] = []
        self._queue: queue.Queue[str] = queue.Queue()
        assert proc.stdout is not None
        stream = proc.stdout
        threading.Thread(target=lambda: [self._queue.put(line) for line in stream],
                         daemon=True).start()

    def wait_for(self, text: str, timeout_s: float) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=0.5)
            except queue.Empty:
                continue
            self.seen.append(line)
            if text in line:
                return line
        raise AssertionError(f"no line with {text!r} in {timeout_s} s:\n{''.join(self.seen)}")

    def drain(self) -> str:
        time.sleep(0.5)
        while not self._queue.empty():
            self.seen.append(self._queue.get())
        return "".join(self.seen)


def mine(state_dir: Path) -> list[int]:
    """Pids of live processes that belong to this stack (by state dir in argv or env)."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if str(state_dir) in " ".join(proc.info["cmdline"] or []) or \
                    proc.environ().get("LORAFEED_STATE_DIR") == str(state_dir):
                found.append(proc.info["pid"])
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def test_up_runs_everything_restarts_a_crash_and_stops_all_by_pid(tmp_path: Path) -> None:
    state_dir = (tmp_path / "state").resolve()
    (tmp_path / "tasks.toml").write_text(TASKS)
    port = free_port()
    while free_port() == port + 1:  # the second node takes port + 1: make sure it is free
        port = free_port()
    env = {**os.environ, "LORAFEED_STACK_KAFKA_PORT": "0", "LORAFEED_STACK_MILVUS_PORT": "0",
           "LORAFEED_STACK_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "COLUMNS": "200"}
    for name in [k for k in env if k.startswith(("SERVING_", "LEARNER_", "STREAMS_"))]:
        del env[name]
    proc = subprocess.Popen(
        [sys.executable, "-m", "lorafeed", "up", "--state-dir", str(state_dir), "--port",
         str(port), "--tasks-file", str(tmp_path / "tasks.toml")],
        env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    lines = Lines(proc)
    try:
        lines.wait_for("API keys:", 300)
        for name in ("streams", "learner", "node-1", "node-2", "scorer"):
            assert any(f"{name} started (pid" in line for line in lines.seen), name
        for index in (1, 2):
            body = httpx.get(f"http://127.0.0.1:{port + index - 1}/healthz", timeout=5).json()
            assert body["node_id"] == f"node-{index}"
        keys = json.loads((state_dir / "serving-keys.json").read_text())
        assert (state_dir / "serving-keys.json").stat().st_mode & 0o077 == 0
        models = httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=5,
                           headers={"Authorization": f"Bearer {keys['app']}"})
        assert models.status_code == 200 and models.json()["data"][0]["id"] == "tiny"

        recorded = json.loads((state_dir / "supervisor.json").read_text())["services"]
        learner = next(row["pid"] for row in recorded if row["name"] == "learner")
        os.kill(learner, signal.SIGKILL)
        crashed = lines.wait_for("learner exited", 30)
        assert f"(pid {learner})" in crashed and "restarting in" in crashed
        restarted = lines.wait_for("learner started", 60)
        assert f"(pid {learner})" not in restarted
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    output = lines.drain()
    assert code == 0, output[-3000:]
    assert "stopping every service by pid" in output and "stopped the stack" in output
    assert not (state_dir / "stack.json").exists()
    assert json.loads((state_dir / "supervisor.json").read_text())["services"] == []
    deadline = time.monotonic() + 10
    while mine(state_dir) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert mine(state_dir) == []
