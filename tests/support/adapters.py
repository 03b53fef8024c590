"""Adapter versions for tests: tiny-llama tasks (generation and classification), seeded LoRA
adapters whose weights really differ between seeds, written into an `AdapterStore` with a
complete manifest and optionally made champion.

A fresh peft adapter is the identity (lora_B = 0, head copied), so `build_adapter` fills lora_B
and the classification head with seeded noise: two versions then give clearly different outputs.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lorafeed.adapter_store import AdapterStore
from lorafeed.task_models import (
    base_model_sha256,
    load_base,
    new_adapter,
    resolve_base_model,
    resolved_targets,
    save_adapter,
)
from schemas.manifest import AdapterManifest, GateDecision
from schemas.tasks import LoraSettings, TaskConfig

TINY_BASE = "tiny-llama"
CREATED_AT = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


def generation_task(name: str = "chat", **changes: Any) -> TaskConfig:
    """A generation task on the tiny Llama (LoRA r=4 on the default targets)."""
    fields: dict[str, Any] = dict(
        name=name, kind="generation", base_model=TINY_BASE, lora=LoraSettings(r=4, alpha=8)
    )
    return TaskConfig(**(fields | changes))


def classification_task(name: str = "intent", **changes: Any) -> TaskConfig:
    """A three-label classification task on the tiny Llama (sequence-classification head)."""
    fields: dict[str, Any] = dict(
        name=name,
        kind="classification",
        base_model=TINY_BASE,
        labels=["billing", "shipping", "other"],
        lora=LoraSettings(r=4, alpha=8),
    )
    return TaskConfig(**(fields | changes))


def tiny_base_dir(models_dir: Path) -> Path:
    """The tiny-llama directory under `models_dir` (generated once, seed 0)."""
    return resolve_base_model(TINY_BASE, models_dir)


def build_adapter(
    task: TaskConfig,
    base_dir: Path,
    out_dir: Path,
    *,
    seed: int,
    scale: float = 0.3,
    poison: bool = False,
) -> Path:
    """Write adapter files for `task` into `out_dir`: lora_B and head drawn from N(0, scale)
    with `seed`; with `poison`, one lora_B tensor holds a NaN."""
    import torch

    base, _tokenizer = load_base(task, base_dir)
    model = new_adapter(task, base, seed)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in sorted(model.named_parameters()):
            if "lora_B" in name or "modules_to_save" in name:
                noise = torch.randn(parameter.shape, generator=generator) * scale
                parameter.copy_(noise)
        if poison:
            first = next(p for n, p in sorted(model.named_parameters()) if "lora_B" in n)
            first.view(-1)[0] = float("nan")
    save_adapter(model, out_dir)
    return out_dir


@functools.lru_cache(maxsize=16)
def _targets(task_json: str, base_dir: Path) -> tuple[str, ...]:
    task = TaskConfig.model_validate_json(task_json)
    base, _tokenizer = load_base(task, base_dir)
    return tuple(resolved_targets(task, base))


def manifest_fields(
    task: TaskConfig, version: str, base_dir: Path, **changes: Any
) -> dict[str, Any]:
    """Manifest fields (everything but `files`) the learner would write for this adapter."""
    targets = list(_targets(task.model_dump_json(by_alias=True), Path(base_dir)))
    lora = task.lora.model_copy(update={"target_modules": targets})
    fields: dict[str, Any] = dict(
        schema_version=1,
        task=task.name,
        version=version,
        kind=task.kind,
        base_model_id=task.base_model,
        base_model_sha256=base_model_sha256(base_dir),
        lora=lora.model_dump(mode="json"),
        configs={"task": task.model_dump(mode="json", by_alias=True)},
        metrics={},
        gate={"promoted": True, "reason": "test fixture", "numbers": {}},
        created_at=CREATED_AT,
    )
    return fields | changes


def add_version(
    store: AdapterStore,
    task: TaskConfig,
    version: str,
    base_dir: Path,
    files: Path,
    *,
    champion: bool = True,
    manifest_changes: dict[str, Any] | None = None,
) -> AdapterManifest:
    """Store adapter `files` (from `build_adapter`) as `task`@`version` and by default make it
    the champion; returns its manifest."""
    fields = manifest_fields(task, version, base_dir, **(manifest_changes or {}))
    manifest = store.write_version(task.name, version, files, fields)
    if champion:
        store.set_champion(task.name, version, force=True)
    return manifest


def version_dir(store: AdapterStore, task: str, version: str) -> Path:
    """Where the store keeps `task`@`version` (tests corrupt files there)."""
    return store.root / task / version


def store_with_versions(root: Path) -> AdapterStore:
    """Task `chat`: 1.0.0 promoted (champion), 1.1.0 rejected."""
    store = AdapterStore(root)
    files = root.parent / "files"
    files.mkdir()
    (files / "adapter_model.safetensors").write_bytes(b"weights")
    for version, promoted in (("1.0.0", True), ("1.1.0", False)):
        fields = AdapterManifest(
            schema_version=1, task="chat", version=version, kind="generation",
            base_model_id="tiny", base_model_sha256="b" * 64, files={"x": "0" * 64},
            lora=LoraSettings(r=4, alpha=8, target_modules=["q_proj"]),
            gate=GateDecision(promoted=promoted, reason="test"),
            created_at=CREATED_AT,
        ).model_dump(mode="json")
        del fields["files"]
        store.write_version("chat", version, files, fields)
    store.set_champion("chat", "1.0.0")
    return store
