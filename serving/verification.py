"""The checks a stored adapter version passes before serving touches the model with it: every
file's sha256 against its manifest, the manifest digest against the champion pointer's, and
compatibility with the task and the loaded base model. Blocking (file hashing): run in a thread.
"""

from __future__ import annotations

from pathlib import Path

from lorafeed.adapter_store import AdapterStore, AdapterStoreError
from lorafeed.adapter_store import UnknownVersion as StoreUnknownVersion
from lorafeed.task_models import compatibility_problems
from schemas.manifest import AdapterManifest, manifest_sha256
from serving.engine import TaskEngine
from serving.errors import AdapterRefused


def verified_manifest(
    store: AdapterStore,
    engine: TaskEngine,
    version: str,
    expected_sha256: str | None,
    max_rank: int | None = None,
) -> tuple[AdapterManifest, str, Path]:
    """(manifest, its sha256, version directory) of `version` of the engine's task.

    Raises the store's UnknownVersion when there is no such version, AdapterRefused (reason
    naming the check) when files, digest or compatibility are wrong.
    """
    task = engine.task.name
    try:
        manifest = store.verify(task, version)
    except StoreUnknownVersion:
        raise
    except AdapterStoreError as exc:
        raise AdapterRefused(task, version, f"verification failed: {exc}") from exc
    digest = manifest_sha256(manifest)
    if expected_sha256 is not None and digest != expected_sha256:
        raise AdapterRefused(
            task,
            version,
            f"manifest sha256 {digest} differs from the champion pointer's {expected_sha256}",
        )
    directory = store.root / task / version  # the names were checked by `verify`
    problems = compatibility_problems(
        manifest,
        engine.task,
        engine.base_sha256,
        engine.targets,
        adapter_dir=directory,
        max_rank=max_rank,
    )
    if problems:
        raise AdapterRefused(task, version, "incompatible: " + "; ".join(problems))
    return manifest, digest, directory
