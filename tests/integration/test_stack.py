"""`lorafeed stack up|down|status` on real processes: idempotent up, clean down, clear failures."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from lorafeed.stack import COMPONENTS, Stack, StackError
from lorafeed.stores import make_redis
from schemas import TOPICS, topic_name
from tests.support.stack import RunningStack, isolated_stack_settings

pytestmark = pytest.mark.integration


def _owned_pids(stack: Stack) -> dict[str, int]:
    state = stack.state()
    assert state is not None
    return {n: c.pid for n, c in state.components.items() if c.owned and c.pid}


def test_up_twice_is_harmless_and_down_leaves_nothing_alive(tmp_path: Path) -> None:
    stack = Stack(isolated_stack_settings(tmp_path / "state"))
    try:
        first = stack.up()
        pids = _owned_pids(stack)
        assert set(pids) == set(COMPONENTS)
        assert all(row.state == "healthy" for row in stack.status())
        second = stack.up()
        assert _owned_pids(stack) == pids, "a second 'up' must reuse the running components"
        assert second.topics == first.topics
        children = {
            p.pid for pid in pids.values() for p in psutil.Process(pid).children(recursive=True)
        }
    finally:
        stopped = stack.down()
    assert sorted(stopped) == sorted(COMPONENTS)
    for pid in list(pids.values()) + sorted(children):
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert not (tmp_path / "state" / "stack.json").exists()
    assert [row.state for row in stack.status()] == ["stopped"] * len(COMPONENTS)


def test_topics_are_created_with_the_table_partition_counts(stack: RunningStack) -> None:
    expected = {topic_name(t, stack.prefix): spec.partitions for t, spec in TOPICS.items()}
    assert stack.state.topics == expected


def test_an_existing_redis_is_reused_and_left_running(
    stack: RunningStack, tmp_path: Path
) -> None:
    settings = isolated_stack_settings(tmp_path / "state").model_copy(
        update={"redis_url": stack.redis_url}
    )
    other = Stack(settings)
    try:
        state = other.up()
        assert not state.components["redis"].owned
        assert state.components["redis"].pid is None
    finally:
        assert "redis" not in other.down()
    assert make_redis(stack.redis_url).ping()


def test_a_taken_port_is_named_in_the_error(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        settings = isolated_stack_settings(tmp_path / "state").model_copy(
            update={"kafka_port": port}
        )
        stack = Stack(settings)
        with pytest.raises(StackError, match=rf"127\.0\.0\.1:{port} is taken"):
            stack.up()
        # Whatever started before the failure was stopped again.
        assert stack.down() == []


def test_redis_restart_keeps_keys_because_of_appendonly(tmp_path: Path) -> None:
    stack = Stack(isolated_stack_settings(tmp_path / "state"))
    try:
        state = stack.up()
        client = make_redis(stack.settings.redis_url)
        assert client.set("dedup:abc", b"record-1", nx=True, ex=3600)
        redis_pid = state.components["redis"].pid
        assert redis_pid is not None
        os.kill(redis_pid, 9)  # a crash, not a clean shutdown that could flush on exit
        psutil.Process(redis_pid).wait(5)
        stack.up()  # notices Redis is gone and starts it again on the same port and dir
        assert make_redis(stack.settings.redis_url).get("dedup:abc") == b"record-1"
    finally:
        stack.down()


def test_cli_status_json_reports_urls_and_pids(stack: RunningStack) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "lorafeed", "stack", "status", "--json",
         "--state-dir", str(stack.settings.state_dir)],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout
    info = json.loads(out)
    assert info["bootstrap_servers"] == stack.bootstrap
    assert info["redis_url"] == stack.redis_url
    assert info["status"] == dict.fromkeys(COMPONENTS, "healthy")
    assert info["components"]["broker"]["pid"] > 0


def test_cli_status_without_a_stack_says_stopped(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "lorafeed", "stack", "status", "--json",
         "--state-dir", str(tmp_path)],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout
    assert json.loads(out)["status"] == dict.fromkeys(COMPONENTS, "stopped")


def test_corrupt_state_file_gives_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "stack.json").write_text("{not json")
    result = subprocess.run(
        [sys.executable, "-m", "lorafeed", "stack", "down", "--state-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 1
    assert "stack.json" in result.stderr and "unreadable" in result.stderr
