"""The security suite's own embedded stack (free ports, own state dir, topic prefix and Redis;
never a developer's) and the world of real service processes on it, shared by the whole run."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lorafeed.stack import Stack
from tests.security.world import SecureWorld
from tests.support.stack import RunningStack, isolated_stack_settings


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    settings = isolated_stack_settings(tmp_path_factory.mktemp("stack"))
    embedded = Stack(settings)
    try:
        yield RunningStack(settings, embedded.up())
    finally:
        recorded = embedded.state()
        embedded.down()
    for component in recorded.components.values() if recorded else []:
        if component.pid is not None:
            assert not component.process_alive(), f"{component.name} pid {component.pid} survived"


@pytest.fixture(scope="session")
def world(stack: RunningStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureWorld]:
    built = SecureWorld.create(stack, tmp_path_factory.mktemp("secure"))
    try:
        built.start()
        yield built
    finally:
        built.stop()
