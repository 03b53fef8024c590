"""Task configs: documented defaults, label rules by kind, and range checks naming the value."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from schemas.tasks import EwcSettings, TaskConfig


def _config(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "fraud",
        "kind": "classification",
        "base_model": "minilm",
        "labels": ["fraud", "legit"],
    }
    data.update(changes)
    return data


def test_defaults() -> None:
    config = TaskConfig.model_validate(_config())
    assert (config.lora.r, config.lora.alpha, config.lora.dropout) == (8, 16, 0.05)
    assert config.lora.target_modules is None
    assert (config.ewc.fisher_samples, config.ewc.decay) == (64, 0.9)
    assert config.ewc.lambda_ > 0
    assert (config.replay.capacity, config.replay.ratio) == (2000, 0.25)
    assert (config.trigger.min_examples, config.trigger.max_wait_seconds) == (32, 600)
    assert (config.gate.min_gain, config.gate.max_forgetting) == (0.0, 0.02)
    assert config.gate.bootstrap_samples == 1000
    assert config.max_seq_len == 384
    assert config.knowledge_sources == []


def test_generation_task_without_labels() -> None:
    config = TaskConfig.model_validate(_config(name="support", kind="generation", labels=None))
    assert config.labels is None


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"labels": None}, "classification task 'fraud' needs labels"),
        ({"labels": ["fraud"]}, r"needs at least 2 labels, got \['fraud'\]"),
        ({"labels": ["a", "b", "a"]}, r"repeats labels \['a'\]"),
        ({"kind": "generation"}, r"generation task 'fraud' must not define labels"),
        ({"name": "../etc"}, r"task name '\.\./etc'"),
        ({"name": "Fraud"}, "task name 'Fraud'"),
        ({"kind": "ranking"}, "'generation' or 'classification'"),
        ({"lora": {"r": 0}}, "input_value=0"),
        ({"lora": {"dropout": 1.0}}, "input_value=1.0"),
        ({"lora": {"target_modules": []}}, "target_modules"),
        ({"lora": {"target_modules": ["q_proj", "bad module"]}}, "target_modules.1"),
        ({"ewc": {"lambda": -1.0}}, "input_value=-1.0"),
        ({"ewc": {"decay": 1.5}}, "input_value=1.5"),
        ({"replay": {"ratio": 1.0}}, "input_value=1.0"),
        ({"trigger": {"min_examples": 0}}, "input_value=0"),
        ({"gate": {"max_forgetting": float("nan")}}, "max_forgetting"),
        ({"max_seq_len": 4}, "input_value=4"),
        ({"retries": 3}, "retries"),
    ],
)
def test_invalid_configs_name_the_bad_value(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        TaskConfig.model_validate(_config(**changes))


def test_ewc_lambda_is_spelled_lambda_in_files() -> None:
    assert EwcSettings.model_validate({"lambda": 5.0}).lambda_ == 5.0
    assert EwcSettings(lambda_=7.0).lambda_ == 7.0
    dumped = EwcSettings(lambda_=7.0).model_dump(by_alias=True)
    assert dumped["lambda"] == 7.0
    assert "lambda_" not in dumped


def test_json_round_trip() -> None:
    config = TaskConfig.model_validate(_config(ewc={"lambda": 250.0}, knowledge_sources=["faq"]))
    again = TaskConfig.model_validate_json(config.model_dump_json(by_alias=True))
    assert again == config
    assert again.ewc.lambda_ == 250.0
