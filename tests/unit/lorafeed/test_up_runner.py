"""ServiceRunner's guard: a state dir whose services another run still runs is left alone."""

from __future__ import annotations

import json
import os
from pathlib import Path

import psutil
import pytest

from lorafeed.supervisor import STATE_FILE
from lorafeed.up import ServiceRunner, UpError


def test_a_second_up_on_the_same_state_dir_is_refused_and_stops_nothing(tmp_path: Path) -> None:
    me = psutil.Process()
    record = {"name": "node-1", "pid": me.pid, "create_time": me.create_time(),
              "log_path": str(tmp_path / "node-1.log"), "stop_timeout": 1.0}
    (tmp_path / STATE_FILE).write_text(json.dumps(
        {"version": 1, "supervisor": {"pid": 0, "create_time": 0}, "services": [record]}))
    runner = ServiceRunner(tmp_path, [], lambda event: None)
    with pytest.raises(UpError, match=rf"already runs services \(node-1 pid {os.getpid()}\)"):
        runner.refuse_if_running()
    assert runner.stop() == []  # never started: the recorded process is not ours to stop
    assert me.is_running()


def test_an_empty_state_dir_is_free(tmp_path: Path) -> None:
    ServiceRunner(tmp_path, [], lambda event: None).refuse_if_running()
