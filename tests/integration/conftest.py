"""The test run's own embedded stack: started once per session on free ports with its own state
dir and topic prefix, never a developer's running stack, and stopped by pid at the end."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.stack import RunningStack, isolated_stack


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    with isolated_stack(tmp_path_factory.mktemp("stack")) as running:
        yield running
