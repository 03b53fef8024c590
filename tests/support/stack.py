"""Helpers for tests that need their own embedded stack (isolated ports, dirs, prefix, Redis)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from lorafeed.procs import free_port
from lorafeed.settings import StackSettings
from lorafeed.stack import Stack, StackState


@dataclass(frozen=True)
class RunningStack:
    settings: StackSettings
    state: StackState

    @property
    def bootstrap(self) -> str:
        assert self.state.bootstrap_servers
        return self.state.bootstrap_servers

    @property
    def redis_url(self) -> str:
        url = self.state.url("redis")
        assert url
        return url

    @property
    def milvus_uri(self) -> str:
        url = self.state.url("milvus")
        assert url
        return url

    @property
    def prefix(self) -> str:
        return self.settings.topic_prefix


def isolated_stack_settings(state_dir: Path) -> StackSettings:
    """Settings that share nothing with a developer's stack: own ports, dir, prefix, Redis."""
    return StackSettings(
        state_dir=state_dir,
        kafka_port=0,
        milvus_port=0,
        redis_url=f"redis://127.0.0.1:{free_port()}/0",
        topic_prefix=f"t{uuid.uuid4().hex[:8]}.",
        health_timeout_s=60,
    )


@contextlib.contextmanager
def isolated_stack(state_dir: Path) -> Iterator[RunningStack]:
    """An embedded stack on `isolated_stack_settings(state_dir)`, stopped by pid on exit; then
    nothing it started may still be alive (tests clean up after themselves)."""
    settings = isolated_stack_settings(state_dir)
    embedded = Stack(settings)
    try:
        yield RunningStack(settings, embedded.up())
    finally:
        recorded = embedded.state()
        embedded.down()
    for component in recorded.components.values() if recorded else []:
        if component.pid is not None:
            assert not component.process_alive(), f"{component.name} pid {component.pid} survived"
