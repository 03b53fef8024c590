"""The packaged SmolLM2 GGUF converts once into a cached safetensors dir that reloads offline and
answers a chat prompt; a second prepare returns the cached dir at once."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from lorafeed import models


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path, float]]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setenv("TRANSFORMERS_OFFLINE", "1")
        cache = tmp_path_factory.mktemp("model-cache")
        started = time.monotonic()
        path = models.prepare_smollm2(cache, progress=print)
        yield cache, path, time.monotonic() - started


@pytest.mark.slow
def test_prepare_converts_once_and_returns_the_cached_dir(
    prepared: tuple[Path, Path, float],
) -> None:
    cache, path, first_seconds = prepared
    print(f"conversion took {first_seconds:.1f} s")
    assert path == cache / models.SMOLLM2_DIRNAME
    assert (path / "model.safetensors").stat().st_size > 400_000_000  # fp32, not Q4 blocks
    sha = models.file_sha256(models.smollm2_gguf_path())
    assert models.check_prepared(path, sha, hashes=True) is None
    started = time.monotonic()
    again = models.prepare_smollm2(cache, convert=_must_not_convert)
    assert again == path and time.monotonic() - started < 5
    assert sorted(p.name for p in cache.iterdir() if not p.name.endswith(".lock")) == [path.name]


@pytest.mark.slow
def test_prepared_model_reloads_and_answers(prepared: tuple[Path, Path, float]) -> None:
    _cache, path, _seconds = prepared
    started = time.monotonic()
    model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    print(f"reload took {time.monotonic() - started:.1f} s")
    assert model.dtype == torch.float32 and model.config.model_type == "llama"
    assert getattr(model.config, "quantization_config", None) is None
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.chat_template
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    inputs: Any = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    output = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    answer = tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    print(f"answer: {answer!r}")
    assert answer.strip()
    assert "Paris" in answer


def _must_not_convert(source: Path, out_dir: Path) -> None:
    raise AssertionError(f"converted {source} again into {out_dir}")
