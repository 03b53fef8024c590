"""Whether a stored adapter version can run for a task on this base model: the manifest (and
optionally the adapter's own config) against the task, the base's sha256 and the LoRA targets.
Called by serving before it loads a version; an empty list means compatible."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from schemas.manifest import AdapterManifest
from schemas.tasks import TaskConfig

ADAPTER_CONFIG: Final = "adapter_config.json"


def compatibility_problems(
    manifest: AdapterManifest,
    task: TaskConfig,
    base_sha256: str,
    targets: Sequence[str],
    *,
    adapter_dir: Path | None = None,
    max_rank: int | None = None,
) -> list[str]:
    """Why this adapter version cannot run for `task` on this base; empty = compatible.

    `targets` are the module names the serving side resolves for the task
    (`resolved_targets`); with `adapter_dir` the manifest is also checked against the adapter's
    own `adapter_config.json`; `max_rank` bounds the rank a server accepts.
    """
    where = f"adapter {manifest.task} {manifest.version}"
    problems: list[str] = []
    if manifest.task != task.name:
        problems.append(f"{where} belongs to task {manifest.task!r}, not {task.name!r}")
    if manifest.kind != task.kind:
        problems.append(f"{where} is for a {manifest.kind} task, {task.name!r} is {task.kind}")
    if manifest.base_model_sha256 != base_sha256:
        problems.append(
            f"{where} was trained on base sha256 {manifest.base_model_sha256[:12]}, "
            f"this base is {base_sha256[:12]}"
        )
    if manifest.lora.target_modules is not None and set(manifest.lora.target_modules) != set(
        targets
    ):
        problems.append(
            f"{where} targets modules {sorted(manifest.lora.target_modules)}, "
            f"this task resolves {sorted(targets)}"
        )
    if max_rank is not None and manifest.lora.r > max_rank:
        problems.append(f"{where} has rank {manifest.lora.r}, the maximum allowed is {max_rank}")
    problems += _label_problems(manifest, task, where)
    if adapter_dir is not None:
        problems += _adapter_config_problems(manifest, adapter_dir, targets, where)
    return problems


def _label_problems(manifest: AdapterManifest, task: TaskConfig, where: str) -> list[str]:
    task_config = manifest.configs.get("task")
    labels = task_config.get("labels") if isinstance(task_config, dict) else None
    if task.kind == "classification" and labels is None:
        return [f"{where} records no label set (configs.task.labels)"]
    if labels is not None and labels != task.labels:
        return [f"{where} was trained on labels {labels}, task {task.name!r} has {task.labels}"]
    return []


def _adapter_config_problems(
    manifest: AdapterManifest, adapter_dir: Path, targets: Sequence[str], where: str
) -> list[str]:
    path = Path(adapter_dir) / ADAPTER_CONFIG
    try:
        config = json.loads(path.read_text())
        rank, alpha = int(config["r"]), int(config["lora_alpha"])
        saved_targets = config["target_modules"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return [f"{where}: {path} is unreadable: {exc!r}"]
    problems = []
    if rank != manifest.lora.r or alpha != manifest.lora.alpha:
        problems.append(
            f"{where}: manifest says r={manifest.lora.r} alpha={manifest.lora.alpha}, "
            f"{ADAPTER_CONFIG} says r={rank} alpha={alpha}"
        )
    saved = sorted(saved_targets) if isinstance(saved_targets, list) else [str(saved_targets)]
    if saved != sorted(targets):
        problems.append(f"{where}: {ADAPTER_CONFIG} targets {saved}, expected {sorted(targets)}")
    return problems
