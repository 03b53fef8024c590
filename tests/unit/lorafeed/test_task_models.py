"""The shared model layer: base models resolve by name, load per task kind, adapters save
byte-stable and reopen, and incompatible adapters are explained."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import torch
from peft import PeftModel

from lorafeed import task_models as tm
from lorafeed.models import ModelError, file_sha256
from schemas import AdapterManifest, GateDecision, LoraSettings
from schemas.tasks import TaskConfig

GEN = TaskConfig(name="faq", kind="generation", base_model="tiny-llama")
CLS = TaskConfig(
    name="intent", kind="classification", base_model="tiny-qwen2", labels=["a", "b", "c"]
)
MINI = TaskConfig(
    name="mini", kind="classification", base_model="all-minilm-l6-v2", labels=["x", "y"]
)


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


def file_hashes(directory: Path) -> dict[str, str]:
    return {name: file_sha256(directory / name) for name in tm.ADAPTER_FILES}


# --- resolving base models ---------------------------------------------------------------------


def test_tiny_models_are_generated_once(models_dir: Path) -> None:
    first = tm.resolve_base_model("tiny-llama", models_dir)
    stamp = (first / "config.json").stat().st_mtime_ns
    assert first == models_dir / "tiny-llama"
    assert tm.resolve_base_model("tiny-llama", models_dir) == first
    assert (first / "config.json").stat().st_mtime_ns == stamp


def test_unknown_names_list_the_known_ones(models_dir: Path) -> None:
    with pytest.raises(ModelError, match=r"unknown base model 'gpt-9'.*smollm2-135m-instruct"):
        tm.resolve_base_model("gpt-9", models_dir)


def test_an_override_wins_and_must_be_a_model_dir(models_dir: Path, tmp_path: Path) -> None:
    tiny = tm.resolve_base_model("tiny-llama", models_dir)
    assert tm.resolve_base_model("tiny-qwen2", models_dir, {"tiny-qwen2": tiny}) == tiny
    with pytest.raises(ModelError, match="has no config.json"):
        tm.resolve_base_model("deepseek", models_dir, {"deepseek": tmp_path})


def test_minilm_resolves_to_the_packaged_dir(models_dir: Path) -> None:
    assert (tm.resolve_base_model("all-minilm-l6-v2", models_dir) / "config.json").is_file()


def test_an_unprepared_smollm2_names_the_prepare_command(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="lorafeed models prepare"):
        tm.resolve_base_model("smollm2-135m-instruct", tmp_path)


def test_base_model_sha256_covers_names_and_contents(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.json").write_text("{}")
    (tmp_path / "sub" / "b.bin").write_bytes(b"\x00\x01")
    expected = hashlib.sha256()
    for name in ("a.json", "sub/b.bin"):
        expected.update(f"{name}\0{file_sha256(tmp_path / name)}\n".encode())
    assert tm.base_model_sha256(tmp_path) == expected.hexdigest()
    (tmp_path / "sub" / "b.bin").write_bytes(b"\x00\x02")
    assert tm.base_model_sha256(tmp_path) != expected.hexdigest()
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="has no files"):
        tm.base_model_sha256(tmp_path / "empty")


# --- loading and LoRA --------------------------------------------------------------------------


def test_classification_bases_carry_the_labels_and_a_seeded_head(models_dir: Path) -> None:
    directory = tm.resolve_base_model(CLS.base_model, models_dir)
    first, tokenizer = tm.load_base(CLS, directory)
    second, _ = tm.load_base(CLS, directory)
    assert first.config.id2label == {0: "a", 1: "b", 2: "c"}
    assert first.config.pad_token_id == tokenizer.pad_token_id is not None
    assert tm.head_name(first) == "score"
    torch.testing.assert_close(first.score.weight, second.score.weight, rtol=0, atol=0)
    assert not first.training


def test_default_targets_per_architecture(models_dir: Path) -> None:
    bert, _ = tm.load_base(MINI, tm.resolve_base_model(MINI.base_model, models_dir))
    assert tm.resolved_targets(MINI, bert) == ["query", "key", "value", "dense"]
    assert tm.head_name(bert) == "classifier"
    config = tm.lora_config(MINI, bert)
    assert config.modules_to_save == ["classifier"]
    assert config.task_type == "SEQ_CLS"
    llama, _ = tm.load_base(GEN, tm.resolve_base_model(GEN.base_model, models_dir))
    assert "q_proj" in tm.resolved_targets(GEN, llama)
    assert tm.lora_config(GEN, llama).task_type == "CAUSAL_LM"
    own = GEN.model_copy(update={"lora": LoraSettings(target_modules=["q_proj", "v_proj"])})
    assert tm.resolved_targets(own, llama) == ["q_proj", "v_proj"]
    bad = GEN.model_copy(update={"lora": LoraSettings(target_modules=["query"])})
    with pytest.raises(ModelError, match=r"\['query'\] are not modules"):
        tm.resolved_targets(bad, llama)


@pytest.mark.parametrize("task", [GEN, CLS], ids=["generation", "classification"])
def test_adapters_save_byte_stable_and_reopen(
    task: TaskConfig, models_dir: Path, tmp_path: Path
) -> None:
    directory = tm.resolve_base_model(task.base_model, models_dir)
    saved = []
    for run, seed in enumerate((3, 3, 4)):
        base, _ = tm.load_base(task, directory)
        model = tm.new_adapter(task, base, seed=seed)
        assert tm.save_adapter(model, tmp_path / str(run)) == list(tm.ADAPTER_FILES)
        saved.append(file_hashes(tmp_path / str(run)))
    assert saved[0] == saved[1]
    assert saved[0]["adapter_model.safetensors"] != saved[2]["adapter_model.safetensors"]
    config = json.loads((tmp_path / "0" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == task.base_model  # a name, not a local path
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        expected = model(input_ids=ids).logits
    base, _ = tm.load_base(task, directory)
    reopened = tm.open_adapter(task, base, tmp_path / "2", trainable=False)
    with torch.no_grad():
        torch.testing.assert_close(reopened(input_ids=ids).logits, expected)
    assert not any(p.requires_grad for p in reopened.parameters())


def test_open_adapter_adds_named_adapters_to_a_peft_model(models_dir: Path, tmp_path: Path) -> None:
    directory = tm.resolve_base_model(GEN.base_model, models_dir)
    tm.save_adapter(tm.new_adapter(GEN, tm.load_base(GEN, directory)[0], seed=1), tmp_path)
    model = tm.open_adapter(GEN, tm.load_base(GEN, directory)[0], tmp_path, trainable=True)
    assert isinstance(model, PeftModel)
    assert any(p.requires_grad for p in model.parameters())
    same = tm.open_adapter(GEN, model, tmp_path, trainable=False, adapter_name="v1_0_1")
    assert same is model and sorted(model.peft_config) == ["default", "v1_0_1"]
    assert model.active_adapter == "default"
    with pytest.raises(ModelError, match=r"lacks \['adapter_config.json'"):
        tm.open_adapter(GEN, model, tmp_path / "nowhere", trainable=False)


# --- compatibility -----------------------------------------------------------------------------


def manifest(**changes: object) -> AdapterManifest:
    fields: dict[str, object] = dict(
        schema_version=1,
        task="intent",
        version="1.0.0",
        kind="classification",
        base_model_id="tiny-qwen2",
        base_model_sha256="a" * 64,
        files={"adapter_model.safetensors": "0" * 64},
        lora=LoraSettings(r=8, alpha=16, target_modules=["q_proj", "v_proj"]),
        configs={"task": {"labels": ["a", "b", "c"]}},
        gate=GateDecision(promoted=True, reason="gain"),
        created_at=datetime(2025, 1, 1, tzinfo=UTC),
    )
    return AdapterManifest.model_validate(fields | changes)


def test_a_matching_manifest_has_no_problems() -> None:
    assert tm.compatibility_problems(manifest(), CLS, "a" * 64, ["v_proj", "q_proj"]) == []


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"base_model_sha256": "b" * 64}, "base sha256 bbbbbbbbbbbb, this base is aaaaaaaaaaaa"),
        ({"kind": "generation", "configs": {}}, "is for a generation task"),
        ({"task": "other"}, "belongs to task 'other'"),
        ({"lora": LoraSettings(target_modules=["q_proj"])}, "targets modules ['q_proj']"),
        ({"lora": LoraSettings(r=64, target_modules=["q_proj", "v_proj"])}, "rank 64"),
        ({"configs": {"task": {"labels": ["a", "b"]}}}, "trained on labels ['a', 'b']"),
        ({"configs": {}}, "records no label set"),
    ],
)
def test_each_incompatibility_is_named(changes: dict[str, object], expected: str) -> None:
    problems = tm.compatibility_problems(
        manifest(**changes), CLS, "a" * 64, ["q_proj", "v_proj"], max_rank=32
    )
    assert any(expected in problem for problem in problems), problems


def test_the_adapter_config_must_agree_with_the_manifest(tmp_path: Path) -> None:
    config = {"r": 16, "lora_alpha": 16, "target_modules": ["q_proj", "v_proj"]}
    (tmp_path / "adapter_config.json").write_text(json.dumps(config))
    problems = tm.compatibility_problems(
        manifest(), CLS, "a" * 64, ["q_proj", "v_proj"], adapter_dir=tmp_path
    )
    assert problems == [
        "adapter intent 1.0.0: manifest says r=8 alpha=16, adapter_config.json says r=16 alpha=16"
    ]
    (tmp_path / "adapter_config.json").write_text("{")
    problems = tm.compatibility_problems(
        manifest(), CLS, "a" * 64, ["q_proj", "v_proj"], adapter_dir=tmp_path
    )
    assert "is unreadable" in problems[0]
