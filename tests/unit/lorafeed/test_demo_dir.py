"""The demo's own directory and stack settings, and what `lorafeed up` prints about threads."""

from __future__ import annotations

from pathlib import Path

import pytest

from lorafeed.demo import MARKER, DemoError, demo_stack_settings, prepare_dir
from lorafeed.up import budget_line, serving_keys
from lorafeed.up_plan import UpPlan


def test_a_previous_demo_dir_is_wiped_and_marked(tmp_path: Path) -> None:
    demo = tmp_path / "demo"
    assert prepare_dir(demo) == demo.resolve()
    (demo / "adapters").mkdir()
    (demo / "report.html").write_text("old")
    prepare_dir(demo)
    assert sorted(p.name for p in demo.iterdir()) == [MARKER]


def test_someone_elses_dir_is_never_wiped(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(DemoError, match="not empty and was not made by `lorafeed demo`"):
        prepare_dir(tmp_path)
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_the_demo_stack_shares_no_port_with_a_default_stack(tmp_path: Path) -> None:
    settings = demo_stack_settings(tmp_path)
    assert settings.kafka_port == 0 and settings.milvus_port == 0
    assert settings.redis_url != "redis://127.0.0.1:6379/0" and settings.state_dir == tmp_path


def test_serving_keys_are_created_once_private_and_reused(tmp_path: Path) -> None:
    first = serving_keys(tmp_path)
    assert first.path.stat().st_mode & 0o777 == 0o600
    assert first.app not in first.entries and first.admin not in first.entries  # digests only
    assert serving_keys(tmp_path) == first


def test_budget_line_names_every_service(tmp_path: Path) -> None:
    plan = UpPlan(tmp_path, tmp_path / "tasks.toml", cores=2, learner_share=1.0)
    assert budget_line(plan) == ("torch threads for 2 cores: learner 2, streams 1, node-1 1, "
                                 "node-2 1, scorer 1")
