"""The service list of `lorafeed up` and the demo: names, ports, environments, thread budget."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from lorafeed.up_plan import (
    LEARNER,
    SCORER,
    STREAMS,
    UpPlan,
    UpPlanError,
    passed_through,
    service_specs,
    thread_budget,
)

NAMES = [STREAMS, LEARNER, "node-1", "node-2", SCORER]


def plan(tmp_path: Path, **fields: object) -> UpPlan:
    values: dict[str, object] = dict(state_dir=tmp_path / "state",
                                     tasks_file=tmp_path / "tasks.toml")
    return UpPlan(**(values | fields))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("cores", "share", "learner", "others"),
    [(2, 0.5, 1, 1), (2, 1.0, 2, 1), (8, 0.5, 4, 1), (16, 0.5, 8, 2), (1, 0.5, 1, 1),
     (12, 0.25, 3, 2)],
)
def test_thread_budget_gives_the_learner_its_share_and_splits_the_rest(
    cores: int, share: float, learner: int, others: int
) -> None:
    budget = thread_budget(cores, NAMES, share)
    assert budget[LEARNER] == learner
    assert {budget[name] for name in NAMES if name != LEARNER} == {others}
    # within the cores whenever there are enough of them for one thread each
    if cores >= len(NAMES) + learner - 1:
        assert sum(budget.values()) <= cores


def test_thread_budget_without_a_learner_splits_every_core() -> None:
    assert thread_budget(4, ["node-1", "node-2"], 0.5) == {"node-1": 2, "node-2": 2}
    with pytest.raises(UpPlanError, match="cores must be >= 1, got 0"):
        thread_budget(0, NAMES, 0.5)


def test_specs_start_every_service_with_its_settings(tmp_path: Path) -> None:
    up = plan(tmp_path, node_ports=(8101, 8102), cores=8, api_key_entries='[{"k": 1}]',
              env={"SERVING_RATE_LIMIT_PER_MINUTE": "0"})
    checked: list[str] = []

    def health(url: str) -> Callable[[], bool]:
        checked.append(url)
        return lambda: True

    specs = {s.name: s for s in service_specs(up, health)}
    assert list(specs) == NAMES
    assert checked == ["http://127.0.0.1:8101", "http://127.0.0.1:8102"]
    node = specs["node-2"]
    assert node.argv[-4:] == ("run", "serve", "--port", "8102")
    assert node.env["SERVING_NODE_ID"] == "node-2"
    assert node.env["SERVING_API_KEYS"] == '[{"k": 1}]'
    assert node.env["SERVING_TASKS_FILE"] == str((tmp_path / "tasks.toml").resolve())
    assert node.env["SERVING_RATE_LIMIT_PER_MINUTE"] == "0"
    assert node.health is not None
    assert specs[SCORER].health is None and specs[SCORER].argv[-1] == "scorer"
    assert specs[SCORER].env["SERVING_NODE_ID"] != "node-1"
    learner = specs[LEARNER]
    assert learner.env["LEARNER_TORCH_THREADS"] == learner.env["OMP_NUM_THREADS"] == "4"
    assert learner.env["LEARNER_TASKS_FILE"].endswith("tasks.toml")
    assert specs[STREAMS].env["STREAMS_TORCH_THREADS"] == "1"
    for spec in specs.values():
        assert spec.env["LORAFEED_STATE_DIR"] == str((tmp_path / "state").resolve())
        assert spec.env["HF_HUB_OFFLINE"] == "1"


def test_caller_env_wins_over_computed_values(tmp_path: Path) -> None:
    up = plan(tmp_path, env={"LEARNER_TORCH_THREADS": "7"})
    specs = {s.name: s for s in service_specs(up)}
    assert specs[LEARNER].env["LEARNER_TORCH_THREADS"] == "7"


def test_no_scorer_and_one_node(tmp_path: Path) -> None:
    up = plan(tmp_path, node_ports=(9000,), scorer=False)
    assert [s.name for s in service_specs(up)] == [STREAMS, LEARNER, "node-1"]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"node_ports": ()}, "at least one serving node"),
        ({"node_ports": (8001, 8001)}, r"distinct .*\[8001, 8001\]"),
        ({"node_ports": (0,)}, r"\[0\]"),
        ({"cores": 0}, "cores must be >= 1, got 0"),
        ({"learner_share": 1.5}, "learner_share must be in .*1.5"),
        ({"env": {"SERVING_NODE_ID": "x"}}, "SERVING_NODE_ID"),
    ],
)
def test_bad_plans_are_refused_naming_the_value(
    tmp_path: Path, fields: dict[str, object], message: str
) -> None:
    with pytest.raises(UpPlanError, match=message):
        plan(tmp_path, **fields)


def test_passed_through_keeps_service_settings_but_not_per_process_ones() -> None:
    environ = {"SERVING_DEVICE": "cpu", "SERVING_NODE_ID": "a", "SERVING_PORT": "1",
               "LEARNER_DEVICE": "cpu", "STREAMS_BATCH_MAX": "4", "HOME": "/root"}
    assert passed_through(environ) == {"SERVING_DEVICE": "cpu", "LEARNER_DEVICE": "cpu",
                                       "STREAMS_BATCH_MAX": "4"}
