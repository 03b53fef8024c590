"""AdapterRegistry on a real AdapterStore and tiny-llama engines: swaps under load never mix
versions, broken or incompatible versions are refused before the model is touched and the old
one keeps serving, stale events are no-ops, leases keep their version, memory stays flat."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import psutil
import pytest

from lorafeed.adapter_store import AdapterStore
from lorafeed.task_models import load_base, open_adapter
from schemas.manifest import AdapterManifest, manifest_sha256
from schemas.model_events import (
    AdapterActivated,
    AdapterLoadFailed,
    AdapterPromoted,
    AdapterRejected,
    AdapterRolledBack,
    ModelEventBase,
)
from schemas.tasks import LoraSettings, TaskConfig
from serving.engine import EngineConfig, TaskEngine
from serving.errors import AdapterRefused, InvalidRequest, UnknownTask, UnknownVersion
from serving.microbatch import MicroBatchConfig
from serving.registry import BASE, AdapterRegistry, RegistryConfig
from tests.support.adapters import (
    add_version,
    build_adapter,
    classification_task,
    generation_task,
    tiny_base_dir,
    version_dir,
)

T = TypeVar("T")
CLS = classification_task()
GEN = generation_task()
TEXTS = ["where is my parcel", "refund for the invoice please", "hello there", "Lyon warehouse"]
NOW = datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_base_dir(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def files(base_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Adapter files by seed name: cls1..cls3, nan, gen1, gen2."""
    root = tmp_path_factory.mktemp("adapters")
    built = {f"cls{n}": build_adapter(CLS, base_dir, root / f"c{n}", seed=n) for n in (1, 2, 3)}
    built["nan"] = build_adapter(CLS, base_dir, root / "nan", seed=4, poison=True)
    for n in (1, 2):
        built[f"gen{n}"] = build_adapter(GEN, base_dir, root / f"g{n}", seed=n, scale=0.5)
    return built


@dataclass
class Node:
    """A registry over one classification and one generation engine, recording its events."""

    store: AdapterStore
    base_dir: Path
    registry: AdapterRegistry
    engines: dict[str, TaskEngine]
    published: list[ModelEventBase] = field(default_factory=list)

    def put(self, task: str, version: str, files: Path, **kwargs: Any) -> AdapterManifest:
        config = self.engines[task].task
        return add_version(self.store, config, version, self.base_dir, files, **kwargs)

    async def promote(self, task: str, version: str) -> Any:
        """Move the pointer like the learner does, then deliver the event."""
        await asyncio.to_thread(self.store.set_champion, task, version, force=True)
        return await self.registry.on_event(promoted(self.store, task, version))

    def events(self, kind: type[ModelEventBase]) -> list[Any]:
        return [e for e in self.published if isinstance(e, kind)]

    async def close(self) -> None:
        await self.registry.close()
        for engine in self.engines.values():
            await engine.close()


def promoted(store: AdapterStore, task: str, version: str) -> AdapterPromoted:
    return AdapterPromoted(
        schema_version=1,
        event_id=uuid.uuid4().hex,
        task=task,
        occurred_at=NOW,
        version=version,
        manifest_sha256=manifest_sha256(store.read_manifest(task, version)),
    )


def make_node(
    tmp_path: Path,
    base_dir: Path,
    engine_cls: type[TaskEngine] = TaskEngine,
    tasks: tuple[TaskConfig, ...] = (CLS, GEN),
    **config: Any,
) -> Node:
    store = AdapterStore(tmp_path / "adapters")
    batch = EngineConfig(score_batch=MicroBatchConfig(max_batch=8, max_wait_ms=2))
    engines = {t.name: engine_cls.load(t, base_dir, config=batch) for t in tasks}
    published: list[ModelEventBase] = []

    async def publish(event: ModelEventBase) -> None:
        published.append(event)

    registry = AdapterRegistry(
        store, engines, "node-1", publish, config=RegistryConfig(**config), clock=lambda: NOW
    )
    return Node(store, base_dir, registry, engines, published)


def run(factory: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(factory())


def reference(base_dir: Path, adapter: Path | None) -> list[dict[str, float]]:
    """TEXTS scored one by one by a separately loaded model with `adapter`."""
    import torch

    model, tokenizer = load_base(CLS, base_dir)
    if adapter is not None:
        model = open_adapter(CLS, model, adapter, trainable=False).eval()
    rows = []
    with torch.inference_mode():
        for text in TEXTS:
            logits = model(**tokenizer([text], return_tensors="pt")).logits
            probabilities = torch.softmax(logits, -1)[0].tolist()
            rows.append(dict(zip(CLS.labels or [], probabilities, strict=True)))
    return rows


def test_start_loads_each_champion_and_reports_it(
    tmp_path: Path, base_dir: Path, files: dict[str, Path]
) -> None:
    node = make_node(tmp_path, base_dir)
    manifest = node.put("intent", "1.0.0", files["cls1"])

    async def main() -> None:
        outcomes = await node.registry.start()
        await node.registry.flush()
        assert {(o.task, o.status, o.version) for o in outcomes} == {
            ("intent", "activated", "1.0.0"),
            ("chat", "unchanged", None),  # no pointer: the base model, already serving
        }
        assert node.registry.active_versions() == {"chat": None, "intent": "1.0.0"}
        view = node.registry.view("intent")
        assert view.manifest_sha256 == manifest_sha256(manifest)
        assert view.loaded == ("1.0.0",)
        [activated] = node.events(AdapterActivated)
        assert (activated.task, activated.version, activated.node) == ("intent", "1.0.0", "node-1")
        assert activated.manifest_sha256 == manifest_sha256(manifest)
        await node.close()

    run(main)


def test_swaps_under_concurrent_scoring_never_mix_versions(
    tmp_path: Path, base_dir: Path, files: dict[str, Path]
) -> None:
    node = make_node(tmp_path, base_dir)
    node.put("intent", "1.0.0", files["cls1"])
    node.put("intent", "1.0.1", files["cls2"], champion=False)
    expected = {
        "1.0.0": reference(base_dir, files["cls1"]),
        "1.0.1": reference(base_dir, files["cls2"]),
    }
    assert expected["1.0.0"][0] != pytest.approx(expected["1.0.1"][0], abs=1e-3)
    seen: list[tuple[str | None, list[Any]]] = []

    async def client(stop: asyncio.Event) -> None:
        while not stop.is_set():
            async with node.registry.lease("intent") as lease:
                seen.append((lease.version, await lease.score(TEXTS)))

    async def main() -> None:
        await node.registry.start()
        stop = asyncio.Event()
        clients = [asyncio.create_task(client(stop)) for _ in range(8)]
        for version in ["1.0.1", "1.0.0", "1.0.1", "1.0.0", "1.0.1"]:
            await asyncio.sleep(0.05)
            assert (await node.promote("intent", version)).status == "activated"
        await asyncio.sleep(0.05)
        stop.set()
        await asyncio.gather(*clients)
        await node.close()

    run(main)
    assert {version for version, _ in seen} == {"1.0.0", "1.0.1"}
    for version, results in seen:
        assert version is not None
        for result, want in zip(results, expected[version], strict=True):
            assert result.version == version
            assert result.probabilities == pytest.approx(want, abs=1e-5)
    assert len(node.events(AdapterActivated)) == 6


def test_a_corrupted_file_is_refused_and_the_old_version_keeps_serving(
    tmp_path: Path, base_dir: Path, files: dict[str, Path]
) -> None:
    node = make_node(tmp_path, base_dir)
    node.put("intent", "1.0.0", files["cls1"])
    node.put("intent", "1.0.1", files["cls2"], champion=False)

    async def main() -> None:
        await node.registry.start()
        node.store.set_champion("intent", "1.0.1")  # verified, then the file rots
        weights = version_dir(node.store, "intent", "1.0.1") / "adapter_model.safetensors"
        os.chmod(weights, 0o644)
        with open(weights, "r+b") as handle:
            handle.seek(-1, os.SEEK_END)
            last = handle.read(1)
            handle.seek(-1, os.SEEK_END)
            handle.write(b"\x01" if last == b"\x00" else b"\x00")
        outcome = await node.registry.on_event(promoted(node.store, "intent", "1.0.1"))
        assert outcome.status == "failed" and "sha256" in outcome.reason
        assert node.registry.active_versions()["intent"] == "1.0.0"
        async with node.registry.lease("intent") as lease:
            assert lease.version == "1.0.0"
            assert (await lease.score(TEXTS[:1]))[0].version == "1.0.0"
        assert (
            await node.registry.on_event(promoted(node.store, "intent", "1.0.1"))
        ).status == "failed"
        await node.registry.flush()
        [failed] = node.events(AdapterLoadFailed)  # the duplicate event is not re-reported
        assert (failed.version, failed.node) == ("1.0.1", "node-1")
        assert "adapter_model.safetensors" in failed.reason
        assert node.engines["intent"].loaded_versions == {"1.0.0"}
        await node.close()

    run(main)


class RecordingEngine(TaskEngine):
    """A real engine that records which versions anyone tried to load into it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.attempted: list[str] = []

    async def load_adapter_aside(self, version: str, version_dir: Path) -> None:
        self.attempted.append(version)
        await super().load_adapter_aside(version, version_dir)


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"lora": {"r": 8, "alpha": 8, "dropout": 0.05, "target_modules": None}}, "r=8"),
        (
            {"lora": {"r": 4, "alpha": 8, "dropout": 0.05, "target_modules": ["q_proj"]}},
            "targets modules",
        ),
        ({"base_model_sha256": "a" * 64}, "base sha256"),
        ({"kind": "generation"}, "generation task"),
    ],
    ids=["rank", "targets", "base", "kind"],
)
def test_incompatible_versions_are_refused_before_the_model_is_touched(
    tmp_path: Path, base_dir: Path, files: dict[str, Path], changes: dict[str, Any], problem: str
) -> None:
    node = make_node(tmp_path, base_dir, RecordingEngine)
    engine = node.engines["intent"]
    assert isinstance(engine, RecordingEngine)
    node.put("intent", "1.0.0", files["cls1"])
    node.put("intent", "1.0.1", files["cls2"], champion=False, manifest_changes=changes)

    async def main() -> None:
        await node.registry.start()
        outcome = await node.promote("intent", "1.0.1")
        assert outcome.status == "failed"
        assert "incompatible" in outcome.reason and problem in outcome.reason
        assert engine.attempted == ["1.0.0"]
        assert node.registry.active_versions()["intent"] == "1.0.0"
        await node.close()

    run(main)


def test_nan_weights_are_refused(tmp_path: Path, base_dir: Path, files: dict[str, Path]) -> None:
    node = make_node(tmp_path, base_dir)
    node.put("intent", "1.0.0", files["cls1"])
    node.put("intent", "1.0.1", files["nan"], champion=False)

    async def main() -> None:
        await node.registry.start()
        outcome = await node.promote("intent", "1.0.1")
        assert outcome.status == "failed" and "NaN" in outcome.reason
        assert node.registry.active_versions()["intent"] == "1.0.0"
        assert node.engines["intent"].loaded_versions == {"1.0.0"}
        await node.close()

    run(main)


def test_stale_duplicate_and_foreign_events_change_nothing(
    tmp_path: Path, base_dir: Path, files: dict[str, Path]
) -> None:
    node = make_node(tmp_path, base_dir)
    node.put("intent", "1.0.0", files["cls1"])
    node.put("intent", "1.0.1", files["cls2"])

    async def main() -> None:
        await node.registry.start()
        await node.registry.flush()
        before = len(node.published)
        duplicate = await node.registry.on_event(promoted(node.store, "intent", "1.0.1"))
        assert (duplicate.status, duplicate.reason) == ("unchanged", "already active")
        stale = await node.registry.on_event(promoted(node.store, "intent", "1.0.0"))
        assert stale.status == "unchanged" and "stale" in stale.reason
        rejected = AdapterRejected(
            schema_version=1, event_id="e", task="intent", occurred_at=NOW, version="1.0.2",
            manifest_sha256="c" * 64, reason="gate",
        )  # fmt: skip
        assert (await node.registry.on_event(rejected)).status == "ignored"
        other_task = promoted(node.store, "intent", "1.0.1").model_copy(update={"task": "other"})
        assert (await node.registry.on_event(other_task)).status == "ignored"
        malformed = AdapterPromoted.model_construct(task="../x", version="not a version")
        assert (await node.registry.on_event(malformed)).status == "ignored"
        assert (await node.registry.on_event(b"garbage")).status == "ignored"
        await node.registry.flush()
        assert len(node.published) == before
        assert node.registry.active_versions()["intent"] == "1.0.1"
        await node.close()

    run(main)


def test_rollback_event_follows_the_pointer_back_to_the_kept_previous_version(
    tmp_path: Path, base_dir: Path, files: dict[str, Path]
) -> None:
    node = make_node(tmp_path, base_dir)
    node.put("intent", "1.0.0", files["cls1"])

    async def main() -> None:
        await node.registry.start()
        node.put("intent", "1.0.1", files["cls2"])
        await node.registry.on_event(promoted(node.store, "intent", "1.0.1"))
        assert node.registry.view("intent").previous == "1.0.0"
        await asyncio.to_thread(node.store.rollback, "intent", "1.0.0", "ops", "bad answers")
        digest = promoted(node.store, "intent", "1.0.0").manifest_sha256
        event = AdapterRolledBack(
            schema_version=1, event_id="r", task="intent", occurred_at=NOW, from_version="1.0.1",
            to_version="1.0.0", manifest_sha256=digest, reason="bad answers", automatic=False,
        )  # fmt: skip
        outcome = await node.registry.on_event(event)
        assert (outcome.status, outcome.version) == ("activated", "1.0.0")
        await node.close()

    run(main)


def test_leases_keep_their_version_across_swaps_until_released(
    tmp_path: Path, base_dir: Path, files: dict[str, Path]
) -> None:
    node = make_node(tmp_path, base_dir)
    node.put("intent", "1.0.0", files["cls1"])
    node.put("intent", "1.0.1", files["cls2"], champion=False)
    node.put("intent", "1.0.2", files["cls3"], champion=False)
    engine = node.engines["intent"]

    async def main() -> None:
        await node.registry.start()
        async with node.registry.lease("intent") as held:
            await node.promote("intent", "1.0.1")
            await node.promote("intent", "1.0.2")
            await node.registry.flush()
            assert engine.loaded_versions == {"1.0.0", "1.0.1", "1.0.2"}  # 1.0.0 is leased
            assert (await held.score(TEXTS[:1]))[0].version == "1.0.0"
        await node.registry.flush()
        assert engine.loaded_versions == {"1.0.1", "1.0.2"}  # active and previous
        await node.close()

    run(main)


def test_a_streamed_answer_keeps_its_version_through_a_swap(
    tmp_path: Path, base_dir: Path, files: dict[str, Path]
) -> None:
    node = make_node(tmp_path, base_dir)
    node.put("chat", "1.0.0", files["gen1"])
    node.put("chat", "1.0.1", files["gen2"], champion=False)
    prompt = [1, 40, 41, 42, 2]

    async def main() -> tuple[str, str]:
        await node.registry.start()
        async with node.registry.lease("chat") as lease:
            stream = lease.generate(prompt, max_tokens=24)
            pieces = [await anext(stream)]
            await node.promote("chat", "1.0.1")
            pieces += [piece async for piece in stream]
        async with node.registry.lease("chat", "1.0.0") as again:
            alone = await again.generate(prompt, max_tokens=24).complete()
        await node.close()
        return "".join(pieces), alone.text

    streamed, alone = run(main)
    assert streamed == alone


def test_explicit_versions_and_the_base_model_can_be_leased(
    tmp_path: Path, base_dir: Path, files: dict[str, Path]
) -> None:
    node = make_node(tmp_path, base_dir, spare=0)
    node.put("intent", "1.0.0", files["cls1"], champion=False)
    node.put("intent", "1.0.1", files["cls2"])
    node.put("intent", "1.0.2", files["nan"], champion=False)
    expected = reference(base_dir, files["cls1"])

    async def main() -> None:
        await node.registry.start()
        async with node.registry.lease("intent", "1.0.0") as lease:
            assert lease.version == "1.0.0"
            scored = await lease.score(TEXTS)
            assert [r.probabilities for r in scored] == [
                pytest.approx(e, abs=1e-5) for e in expected
            ]
        async with node.registry.lease("intent", BASE) as base:
            assert base.version is None
            assert (await base.score(TEXTS[:1]))[0].version is None
        with pytest.raises(UnknownVersion, match="9.9.9"):
            async with node.registry.lease("intent", "9.9.9"):
                pass
        with pytest.raises(UnknownVersion, match="latest"):
            async with node.registry.lease("intent", "latest"):
                pass
        with pytest.raises(AdapterRefused, match="NaN"):
            async with node.registry.lease("intent", "1.0.2"):
                pass
        with pytest.raises(UnknownTask, match="nope"):
            async with node.registry.lease("nope"):
                pass
        await node.registry.flush()
        assert node.engines["intent"].loaded_versions == {"1.0.1"}  # spare=0: 1.0.0 unloaded
        await node.close()

    run(main)


def test_node_pin_unpin_and_rollback(
    tmp_path: Path, base_dir: Path, files: dict[str, Path]
) -> None:
    node = make_node(tmp_path, base_dir)
    node.put("intent", "1.0.0", files["cls1"])

    async def main() -> None:
        await node.registry.start()
        pinned = await node.registry.pin("intent", "1.0.0", "alice")
        assert (pinned.status, pinned.version) == ("activated", "1.0.0")
        node.put("intent", "1.0.1", files["cls2"], champion=False)
        ignored = await node.promote("intent", "1.0.1")
        assert ignored.status == "ignored" and "pinned" in ignored.reason
        assert node.registry.view("intent").pin is not None
        followed = await node.registry.unpin("intent", "alice")
        assert (followed.status, followed.version) == ("activated", "1.0.1")
        back = await node.registry.rollback("intent", actor="bob")  # to the previous version
        assert (back.status, back.version) == ("activated", "1.0.0")
        assert node.registry.view("intent").pin.actor == "bob"  # type: ignore[union-attr]
        with pytest.raises(InvalidRequest, match="not earlier"):
            await node.registry.rollback("intent", "1.0.1", "bob")
        with pytest.raises(UnknownVersion):
            await node.registry.pin("intent", "3.0.0", "bob")
        await node.close()

    run(main)


@pytest.mark.slow
def test_memory_stays_flat_over_100_swap_cycles(tmp_path: Path, base_dir: Path) -> None:
    # rank 64: ~0.4 MB per adapter, so 100 leaked versions (~40 MB) could not hide below the bound
    task = classification_task(lora=LoraSettings(r=64, alpha=64))
    node = make_node(tmp_path, base_dir, tasks=(task,))
    files = [build_adapter(task, base_dir, tmp_path / f"files{n}", seed=n) for n in range(3)]
    process = psutil.Process()

    async def swaps(first: int, count: int) -> None:
        for index in range(first, first + count):
            # every promotion is a new version: each swap loads one and unloads another
            version = f"1.{index}.0"
            await asyncio.to_thread(node.put, "intent", version, files[index % 3], champion=False)
            outcome = await node.promote("intent", version)
            assert outcome.status == "activated", outcome
            async with node.registry.lease("intent") as lease:
                await lease.score(TEXTS[:2])

    async def main() -> tuple[int, int]:
        await node.registry.start()
        await swaps(0, 15)  # warm up allocator pools
        before = process.memory_info().rss
        await swaps(15, 100)
        await node.registry.flush()
        after = process.memory_info().rss
        assert len(node.engines["intent"].loaded_versions) == 2  # active and previous
        await node.close()
        return before, after

    before, after = run(main)
    assert after - before < 15 * 2**20, f"RSS grew {(after - before) / 2**20:.1f} MiB"
