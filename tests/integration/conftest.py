"""The test run's own embedded stack: started once per session on free ports with its own state
dir and topic prefix, never a developer's running stack, and stopped by pid at the end."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lorafeed.stack import Stack
from tests.support.stack import RunningStack, isolated_stack_settings


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    settings = isolated_stack_settings(tmp_path_factory.mktemp("stack"))
    embedded = Stack(settings)
    try:
        state = embedded.up()
        yield RunningStack(settings, state)
    finally:
        recorded = embedded.state()
        embedded.down()
    # Tests clean up after themselves: nothing this run started may outlive it.
    for component in recorded.components.values() if recorded else []:
        if component.pid is not None:
            assert not component.process_alive(), f"{component.name} pid {component.pid} survived"
