"""TaskEngine on a tiny Llama: scoring per version, streamed greedy generation equal to
transformers' own, adapters loaded aside, smoke-checked, unloaded, and refused when broken."""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
import torch

from lorafeed.models import ModelError
from lorafeed.task_models import load_base, open_adapter
from schemas.tasks import TaskConfig
from serving.adapter_slots import AdapterSlots, check_weights_file
from serving.engine import EngineConfig, TaskEngine
from serving.errors import AdapterRefused, InvalidRequest, UnknownVersion, WrongTaskKind
from serving.microbatch import MicroBatchConfig
from tests.support.adapters import (
    build_adapter,
    classification_task,
    generation_task,
    tiny_base_dir,
)

T = TypeVar("T")
TEXTS = ["where is my parcel", "refund for the invoice please", "hello", "the warehouse in Lyon"]
CLS = classification_task()
GEN = generation_task()

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_base_dir(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def cls_files(base_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cls-adapters")
    built = {
        f"1.0.{seed}": build_adapter(CLS, base_dir, root / str(seed), seed=seed) for seed in (1, 2)
    }
    built["nan"] = build_adapter(CLS, base_dir, root / "nan", seed=3, poison=True)
    return built


@pytest.fixture(scope="module")
def gen_files(base_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("gen-adapters")
    return {"1.0.1": build_adapter(GEN, base_dir, root / "1", seed=1, scale=0.5)}


def run(factory: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(factory())


def reference_probabilities(
    task: TaskConfig, base_dir: Path, adapter: Path | None, texts: list[str]
) -> list[list[float]]:
    """Each text alone through a separately loaded model: what the engine must reproduce."""
    model, tokenizer = load_base(task, base_dir)
    if adapter is not None:
        model = open_adapter(task, model, adapter, trainable=False).eval()
    rows = []
    with torch.inference_mode():
        for text in texts:
            logits = model(**tokenizer([text], return_tensors="pt")).logits
            rows.append(torch.softmax(logits, dim=-1)[0].tolist())
    return rows


def test_scores_match_a_separately_loaded_model_per_version(
    base_dir: Path, cls_files: dict[str, Path]
) -> None:
    config = EngineConfig(score_batch=MicroBatchConfig(max_batch=16, max_wait_ms=20))
    engine = TaskEngine.load(CLS, base_dir, config=config)

    async def main() -> dict[str | None, list[Any]]:
        for version in ("1.0.1", "1.0.2"):
            await engine.load_adapter_aside(version, cls_files[version])
            await engine.smoke_check(version)
        versions: list[str | None] = [None, "1.0.1", "1.0.2"]
        # concurrent calls of three versions share micro-batches
        results = await asyncio.gather(*(engine.score(TEXTS, v) for v in versions))
        await engine.close()
        return dict(zip(versions, results, strict=True))

    results = run(main)
    for version, scored in results.items():
        adapter = None if version is None else cls_files[version]
        references = reference_probabilities(CLS, base_dir, adapter, TEXTS)
        for expected, result in zip(references, scored, strict=True):
            assert result.version == version
            assert list(result.probabilities) == CLS.labels
            assert list(result.probabilities.values()) == pytest.approx(expected, abs=1e-5)
            assert result.label == CLS.labels[max(range(3), key=expected.__getitem__)]
            top = sorted(expected, reverse=True)
            assert result.low_margin == (top[0] - top[1] < CLS.low_margin)
    first = [r.probabilities for r in results["1.0.1"]]
    second = [r.probabilities for r in results["1.0.2"]]
    assert first != second  # the versions really differ, so mixing would show


def test_score_refuses_bad_requests(base_dir: Path) -> None:
    classification = TaskEngine.load(CLS, base_dir)
    generation = TaskEngine.load(GEN, base_dir)

    async def main() -> None:
        with pytest.raises(UnknownVersion, match="9.9.9"):
            await classification.score(["hi"], "9.9.9")
        with pytest.raises(InvalidRequest, match="empty"):
            await classification.score([], None)
        with pytest.raises(WrongTaskKind, match="generation"):
            await generation.score(["hi"], None)
        with pytest.raises(WrongTaskKind):
            classification.generate([1, 2], max_tokens=2, version=None)
        await classification.close()
        await generation.close()

    run(main)


def hf_greedy(
    task: TaskConfig, base_dir: Path, adapter: Path | None, ids: list[int], n: int
) -> str:
    model, tokenizer = load_base(task, base_dir)
    if adapter is not None:
        model = open_adapter(task, model, adapter, trainable=False).eval()
    with torch.inference_mode():
        out = model.generate(
            torch.tensor([ids]), max_new_tokens=n, do_sample=False, min_new_tokens=n,
            pad_token_id=tokenizer.pad_token_id,
        )  # fmt: skip
    return str(tokenizer.decode(out[0, len(ids) :], skip_special_tokens=True))


def test_greedy_generation_streams_what_transformers_generates(
    base_dir: Path, gen_files: dict[str, Path]
) -> None:
    engine = TaskEngine.load(GEN, base_dir)
    messages = [{"role": "user", "content": "When will the parcel ship?"}]
    ids = engine.tokenizer.apply_chat_template(messages, add_generation_prompt=True)["input_ids"]

    async def main() -> dict[str | None, tuple[list[str], Any]]:
        await engine.load_adapter_aside("1.0.1", gen_files["1.0.1"])
        out = {}
        for version in (None, "1.0.1"):
            stream = engine.generate(ids, max_tokens=12, version=version)
            pieces = [piece async for piece in stream]
            out[version] = (pieces, stream)
        await engine.close()
        return out

    eos = engine.tokenizer.eos_token_id
    for version, (pieces, stream) in run(main).items():
        adapter = None if version is None else gen_files[version]
        expected = hf_greedy(GEN, base_dir, adapter, ids, stream.completion_tokens)
        assert "".join(pieces) == expected.rstrip("\ufffd")
        assert stream.prompt_tokens == len(ids)
        if stream.finish_reason == "length":
            assert stream.completion_tokens == 12
        else:
            assert stream.finish_reason == "stop" and eos is not None


def test_generation_stops_at_a_stop_string_and_never_sends_it(base_dir: Path) -> None:
    engine = TaskEngine.load(GEN, base_dir)
    ids = engine.tokenizer("The customer ordered three")["input_ids"]

    async def main() -> tuple[str, str, str | None]:
        free = await engine.generate(ids, max_tokens=16, version=None).complete()
        stop = free.text[3:6]
        stopped = await engine.generate(ids, max_tokens=16, stop=[stop], version=None).complete()
        await engine.close()
        return free.text, stopped.text, stopped.finish_reason

    free, stopped, reason = run(main)
    assert len(free) > 6
    assert stopped == free[: free.index(free[3:6])]
    assert reason == "stop"


def test_sampling_is_reproducible_with_a_seed(base_dir: Path) -> None:
    engine = TaskEngine.load(GEN, base_dir)

    async def main() -> list[str]:
        texts = []
        for _ in range(2):
            stream = engine.generate([5, 6, 7], max_tokens=8, temperature=0.9, seed=7, version=None)
            texts.append((await stream.complete()).text)
        with pytest.raises(InvalidRequest, match="temperature"):
            engine.generate([5], max_tokens=8, temperature=-1.0, version=None)
        with pytest.raises(InvalidRequest, match="max_tokens"):
            engine.generate([5], max_tokens=0, version=None)
        with pytest.raises(InvalidRequest, match="ints"):
            engine.generate(["x"], max_tokens=1, version=None)  # type: ignore[list-item]
        await engine.close()
        return texts

    first, second = run(main)
    assert first == second


def test_nan_weights_are_refused_before_the_model_is_touched(
    base_dir: Path, cls_files: dict[str, Path]
) -> None:
    with pytest.raises(AdapterRefused, match="NaN/Inf"):
        check_weights_file("intent", "1.0.3", cls_files["nan"])
    engine = TaskEngine.load(CLS, base_dir)

    async def main() -> None:
        with pytest.raises(AdapterRefused, match="NaN/Inf") as caught:
            await engine.load_adapter_aside("1.0.3", cls_files["nan"])
        assert caught.value.version == "1.0.3"
        assert engine.loaded_versions == frozenset()
        await engine.close()

    run(main)


def test_smoke_check_refuses_non_finite_weights_in_the_model(
    base_dir: Path, cls_files: dict[str, Path]
) -> None:
    model, tokenizer = load_base(CLS, base_dir)
    slots = AdapterSlots(CLS, model)
    slots.load("1.0.1", cls_files["1.0.1"])
    probe = dict(tokenizer(["probe text"], return_tensors="pt"))
    slots.smoke("1.0.1", probe)
    with torch.no_grad():
        weight = next(p for n, p in model.named_parameters() if "lora_A.v1_0_1" in n)
        weight.view(-1)[0] = float("inf")
    with pytest.raises(AdapterRefused, match="NaN/Inf"):
        slots.smoke("1.0.1", probe)


def test_unload_and_reload_keep_every_version_exact(
    base_dir: Path, cls_files: dict[str, Path]
) -> None:
    engine = TaskEngine.load(CLS, base_dir)

    async def main() -> None:
        base = await engine.score(TEXTS, None)
        await engine.load_adapter_aside("1.0.1", cls_files["1.0.1"])
        first = await engine.score(TEXTS, "1.0.1")
        await engine.unload("1.0.1")  # the last adapter: peft keeps it, retired
        assert engine.loaded_versions == frozenset()
        with pytest.raises(UnknownVersion):
            await engine.score(TEXTS, "1.0.1")
        assert await engine.score(TEXTS, None) == base
        await engine.load_adapter_aside("1.0.2", cls_files["1.0.2"])
        await engine.load_adapter_aside("1.0.1", cls_files["1.0.1"])
        assert engine.loaded_versions == {"1.0.1", "1.0.2"}
        again = await engine.score(TEXTS, "1.0.1")
        assert [r.probabilities for r in again] == [r.probabilities for r in first]
        await engine.unload("1.0.2")
        assert await engine.score(TEXTS, None) == base
        await engine.close()

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no peft warning about deleting the active adapter
        run(main)


def test_a_bfloat16_engine_scores_and_generates_with_adapters(
    base_dir: Path, cls_files: dict[str, Path], gen_files: dict[str, Path]
) -> None:
    classification = TaskEngine.load(CLS, base_dir, dtype="bfloat16")
    generation = TaskEngine.load(GEN, base_dir, dtype="bfloat16")
    assert {p.dtype for p in classification._model.parameters()} >= {torch.bfloat16}

    async def main() -> tuple[list[Any], str]:
        await classification.load_adapter_aside("1.0.1", cls_files["1.0.1"])
        await classification.smoke_check("1.0.1")
        scored = await classification.score(TEXTS, "1.0.1")
        await generation.load_adapter_aside("1.0.1", gen_files["1.0.1"])
        await generation.smoke_check("1.0.1")
        answer = await generation.generate([5, 6, 7], max_tokens=6, version="1.0.1").complete()
        await classification.close()
        await generation.close()
        return scored, answer.text

    scored, text = run(main)
    references = reference_probabilities(CLS, base_dir, cls_files["1.0.1"], TEXTS)
    for expected, result in zip(references, scored, strict=True):
        assert result.version == "1.0.1"
        assert sum(result.probabilities.values()) == pytest.approx(1.0, abs=1e-6)  # float32 sums
        assert list(result.probabilities.values()) == pytest.approx(expected, abs=0.05)
    assert isinstance(text, str)
    with pytest.raises(ModelError, match="dtype .float8. is not one of"):
        TaskEngine.load(CLS, base_dir, dtype="float8")


def test_a_text_with_no_tokens_is_refused_alone_and_never_crashes_the_batch(
    base_dir: Path,
) -> None:
    engine = TaskEngine.load(CLS, base_dir)  # the tiny tokenizer adds no special tokens

    async def main() -> tuple[list[Any], list[Any]]:
        mixed = await engine.score_each(["", "where is my parcel", ""], None)
        alone = await engine.score_each([""], None)  # the forward of an all-empty batch fails
        with pytest.raises(InvalidRequest, match="no tokens"):
            await engine.score([""], None)
        await engine.close()
        return mixed, alone

    mixed, alone = run(main)
    assert [type(r).__name__ for r in mixed] == ["InvalidRequest", "ScoreResult", "InvalidRequest"]
    assert isinstance(alone[0], InvalidRequest) and "no tokens" in str(alone[0])
    reference = reference_probabilities(CLS, base_dir, None, ["where is my parcel"])[0]
    assert list(mixed[1].probabilities.values()) == pytest.approx(reference, abs=1e-5)
