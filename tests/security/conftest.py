"""The security suite's own embedded stack (free ports, own state dir, topic prefix and Redis;
never a developer's) and the world of real service processes on it, shared by the whole run."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.security.world import SecureWorld
from tests.support.stack import RunningStack, isolated_stack


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    with isolated_stack(tmp_path_factory.mktemp("stack")) as running:
        yield running


@pytest.fixture(scope="session")
def world(stack: RunningStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureWorld]:
    built = SecureWorld.create(stack, tmp_path_factory.mktemp("secure"))
    try:
        built.start()
        yield built
    finally:
        built.stop()
