"""`lorafeed demo` end to end, as a newcomer runs it, on its own ports, state dir and Redis:
every topic served, malformed input refused with typed errors, the knowledge base indexed by a
real streams worker and searched, and nothing left running afterwards."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from lorafeed.procs import free_port
from schemas import Topic

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def test_demo_runs_the_main_job_and_leaves_nothing_running(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    env = {
        **os.environ,
        "LORAFEED_STACK_KAFKA_PORT": "0",
        "LORAFEED_STACK_MILVUS_PORT": "0",
        "LORAFEED_STACK_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "COLUMNS": "200",
    }
    result = subprocess.run(
        [sys.executable, "-m", "lorafeed", "demo", "--state-dir", str(state_dir)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    out = result.stdout
    assert result.returncode == 0, out[-4000:] + result.stderr[-4000:]
    for topic in Topic:
        assert re.search(rf"{re.escape(topic.value)}\s.*│\s+\d+\s+│", out), topic
    for error in (
        "NotUtf8",
        "NotJson",
        "SchemaVersionError",
        "UnknownFieldError",
        "InvalidFieldError",
        "NestingTooDeep",
        "PayloadTooLarge",
    ):
        assert error in out
    assert "accepted" not in out.split("malformed input")[1].split("knowledge")[0]
    indexed, chunks, aliases, dead = map(
        int,
        re.search(
            r"│\s+(\d+)\s+│\s+(\d+)\s+│\s+(\d+)\s+│\s+(\d+)\s+│",
            out.split("records.indexed / records.dlq")[1],
        ).groups(),
    )
    assert indexed + aliases + dead == 60 and aliases > 0 and chunks >= indexed
    assert out.count("lorafeed search") == 2
    assert "stopped what the demo started" in out
    assert not (state_dir / "stack.json").exists()
    leftovers = [
        p.pid
        for p in psutil.process_iter(["cmdline"])
        if str(state_dir) in " ".join(p.info["cmdline"] or [])
    ]
    assert leftovers == []
