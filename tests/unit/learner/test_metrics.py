"""The learner's /metrics: pending examples and champions read at scrape time, updates counted
by decision, tick durations, a store failure that does not break the scrape, and the HTTP
server on a free port."""

from __future__ import annotations

import urllib.request
from pathlib import Path

from learner.cycle import CycleResult
from learner.metrics import LearnerMetrics
from lorafeed.adapter_store import AdapterStore
from lorafeed.dashboard_metrics import by_label, parse_samples, total
from tests.support.adapters import store_with_versions

NOW = 1_780_000_000.0


def test_scrape_reads_pending_and_the_store(tmp_path: Path) -> None:
    pending = {"chat": (5, NOW - 30.0), "intent": (0, None)}
    metrics = LearnerMetrics(["intent", "chat"], pending.__getitem__,
                             store_with_versions(tmp_path / "adapters"), clock=lambda: NOW)
    samples = parse_samples(metrics.render().decode())
    assert by_label(samples, "lorafeed_learner_pending_examples", "task") == {
        "chat": 5.0, "intent": 0.0}
    assert by_label(samples, "lorafeed_learner_oldest_pending_seconds", "task") == {
        "chat": 30.0, "intent": 0.0}
    champions = {(s.labels["task"], s.labels["version"]) for s in samples
                 if s.name == "lorafeed_learner_champion"}
    assert champions == {("chat", "1.0.0"), ("intent", "base")}
    stored = {(s.labels["task"], s.labels["decision"]): s.value for s in samples
              if s.name == "lorafeed_learner_stored_versions"}
    assert stored[("chat", "promoted")] == 1 and stored[("chat", "rejected")] == 1


def test_results_and_ticks_are_counted(tmp_path: Path) -> None:
    metrics = LearnerMetrics(["chat"], lambda task: (0, None), AdapterStore(tmp_path),
                             clock=lambda: NOW)
    metrics.on_result(CycleResult("chat", "1.0.1", True, "better", 12, 3.5))
    metrics.on_result(CycleResult("chat", "1.0.2", False, "forgot", 8, 2.0))
    metrics.on_result(CycleResult("chat", "1.0.3", True, "better", 9, 4.0))
    tick = metrics.timed(lambda: ["done"])
    assert tick() == ["done"]
    samples = parse_samples(metrics.render().decode())
    updates = {s.labels["decision"]: s.value for s in samples
               if s.name == "lorafeed_learner_updates_total"}
    assert updates == {"promoted": 2.0, "rejected": 1.0}
    assert total(samples, "lorafeed_learner_last_update_seconds") == 4.0
    assert total(samples, "lorafeed_learner_last_update_examples") == 9.0
    assert total(samples, "lorafeed_learner_last_update_timestamp_seconds") == NOW
    assert total(samples, "lorafeed_learner_tick_seconds_count") == 1.0


def test_a_failing_read_skips_the_task_and_counts_an_error(tmp_path: Path) -> None:
    def broken(task: str) -> tuple[int, float | None]:
        raise OSError("disk I/O error")

    metrics = LearnerMetrics(["chat"], broken, AdapterStore(tmp_path))
    samples = parse_samples(metrics.render().decode())
    assert total(samples, "lorafeed_learner_pending_examples") is None
    assert total(samples, "lorafeed_learner_state_read_errors_total") == 1.0


def test_serve_on_a_free_port(tmp_path: Path) -> None:
    metrics = LearnerMetrics(["chat"], lambda task: (3, NOW), AdapterStore(tmp_path))
    port = metrics.serve("127.0.0.1", 0)
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
    assert b'lorafeed_learner_pending_examples{task="chat"} 3.0' in body
