"""The fault suite's own embedded stack (isolated ports, dir, prefix and Redis, stopped by pid at
the end), the world of services running on it, and a closing table of every scenario's numbers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from lorafeed.embedder import SentenceEmbedder
from tests.faults.history import History
from tests.faults.results import REPORTS
from tests.faults.world import FaultWorld
from tests.support.stack import RunningStack, isolated_stack


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    with isolated_stack(tmp_path_factory.mktemp("stack")) as running:
        yield running


@pytest.fixture(scope="module")
def world(stack: RunningStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultWorld]:
    root: Path = tmp_path_factory.mktemp("faults")
    built = FaultWorld(stack, root, tmp_path_factory.mktemp("models"))
    try:
        built.start_all()
        yield built
    finally:
        built.stop_all()
        for service in built.services.values():
            assert not service.alive(), f"{service.name} survived the suite"


@pytest.fixture(scope="module")
def history() -> History:
    return History(SentenceEmbedder())


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """One line per scenario: what it added (records, requests, feedback) and the duplicates
    and losses the checker found over everything sent so far."""
    if not REPORTS:
        return
    write = terminalreporter.write_line
    write("")
    write(f"{'fault scenario':<46}{'verdict':>8}{'records':>9}{'requests':>10}{'feedback':>10}"
          f"{'dupl.':>7}{'losses':>8}")
    before = {"records": 0, "requests": 0, "feedback": 0}
    for report in REPORTS:
        s = report.summary()
        added = {k: s[k] - before[k] for k in before}
        before = {k: s[k] for k in before}
        write(f"{report.scenario:<46}{'PASS' if report.ok else 'FAIL':>8}{added['records']:>9}"
              f"{added['requests']:>10}{added['feedback']:>10}{s['duplicates']:>7}"
              f"{s['losses']:>8}")
