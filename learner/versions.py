"""Semantic version lines per task: which part to bump, and claiming each number exactly once.

A claim is a file created with `O_CREAT | O_EXCL` at `<store>/<task>/.claims/<version>`, so two
learners (threads or processes sharing the filesystem) never write the same version. Claims are
never deleted: a number whose training or gate failed is still never reused.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Final, Literal, get_args

from pydantic import JsonValue, TypeAdapter, ValidationError

from learner.errors import InvalidLineage, InvalidTaskName, InvalidVersion, VersionTaken
from schemas.fields import TaskName
from schemas.manifest import AdapterManifest
from schemas.version import Version

BumpKind = Literal["major", "minor", "patch"]

FIRST_VERSION: Final = "1.0.0"
CLAIMS_DIRNAME: Final = ".claims"
LABEL_SET_KEY: Final = "label_set"
TOKENIZER_KEY: Final = "tokenizer_sha256"
DATA_DOMAINS_KEY: Final = "data_domains"

_TASK_NAME: Final = TypeAdapter(TaskName)


def lineage_configs(
    *,
    label_set: Sequence[str] | None,
    data_domains: Sequence[str],
    tokenizer_sha256: str | None = None,
) -> dict[str, JsonValue]:
    """The `AdapterManifest.configs` entries that `bump_kind` reads back from a parent.

    Pass cumulative data domains (the parent's plus this update's), as for
    `lineage.knowledge_sources`, so a domain seen two versions ago is not "new" again.
    """
    labels: JsonValue = None if label_set is None else [str(label) for label in label_set]
    domains: list[JsonValue] = [str(domain) for domain in sorted(set(data_domains))]
    return {LABEL_SET_KEY: labels, DATA_DOMAINS_KEY: domains, TOKENIZER_KEY: tokenizer_sha256}


def bump_kind(
    parent_manifest: AdapterManifest | None,
    *,
    base_model_sha256: str,
    label_set: Sequence[str] | None,
    knowledge_sources: Sequence[str],
    data_domains: Sequence[str],
    tokenizer_sha256: str | None = None,
) -> BumpKind:
    """MAJOR if the base model, tokenizer or label set (order included) changed vs the parent;
    MINOR if a knowledge source or data domain is new vs the parent's lineage; else PATCH.

    The first version of a task (no parent) is a MAJOR one: `next_version(None, ...)` is 1.0.0.
    A tokenizer hash is compared only when both sides know it.
    """
    if parent_manifest is None:
        return "major"
    configs = parent_manifest.configs
    parent_labels = _strings(configs.get(LABEL_SET_KEY), LABEL_SET_KEY, parent_manifest)
    parent_tokenizer = configs.get(TOKENIZER_KEY)
    if base_model_sha256 != parent_manifest.base_model_sha256:
        return "major"
    if tokenizer_sha256 is not None and parent_tokenizer not in (None, tokenizer_sha256):
        return "major"
    if parent_labels != (None if label_set is None else list(label_set)):
        return "major"
    parent_domains = _strings(configs.get(DATA_DOMAINS_KEY), DATA_DOMAINS_KEY, parent_manifest)
    if set(knowledge_sources) - set(parent_manifest.lineage.knowledge_sources):
        return "minor"
    if set(data_domains) - set(parent_domains or ()):
        return "minor"
    return "patch"


def _strings(value: JsonValue, key: str, manifest: AdapterManifest) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return [str(item) for item in value]
    raise InvalidLineage(
        f"configs[{key!r}] of {manifest.task}@{manifest.version} must be a list of strings "
        f"or null, got {value!r:.80}"
    )


def next_version(parent: str | None, kind: BumpKind) -> str:
    """The version after `parent` for a change of `kind`; 1.0.0 for a task's first version."""
    if kind not in get_args(BumpKind):
        raise InvalidVersion(f"bump kind must be one of {get_args(BumpKind)}, got {kind!r}")
    if parent is None:
        return FIRST_VERSION
    version = _parse(parent)
    try:
        if kind == "major":
            return str(version.bump_major())
        if kind == "minor":
            return str(version.bump_minor())
        return str(version.bump_patch())
    except ValueError as exc:
        raise InvalidVersion(f"cannot bump {parent} ({kind}): {exc}") from exc


def _parse(text: str) -> Version:
    try:
        return Version.parse(text)
    except ValueError as exc:
        raise InvalidVersion(str(exc)) from exc


def check_task_name(task: str) -> str:
    """`task` if it is a valid task name (also a safe path segment), else InvalidTaskName."""
    try:
        return _TASK_NAME.validate_python(task)
    except ValidationError as exc:
        problem = exc.errors()[0]["msg"]
        raise InvalidTaskName(f"task name {task!r:.80} is refused: {problem}") from exc


def claim_path(directory: Path, task: str, version: str) -> Path:
    """Where the claim of `task@version` lives in the adapter store at `directory`."""
    return directory / check_task_name(task) / CLAIMS_DIRNAME / str(_parse(version))


def claim_version(directory: Path, task: str, version: str) -> Path:
    """Claim `task@version` for this learner, atomically; VersionTaken if anyone already has.

    The claim file is fsynced with its directory, so a claim survives a crash of this machine.
    """
    path = claim_path(directory, task, version)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError as exc:
        raise VersionTaken(f"version {version} of task {task!r} is already claimed") from exc
    try:
        os.write(descriptor, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    _fsync_directory(path.parent)
    return path


def _fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def next_free_version(
    directory: Path, task: str, parent: str | None, kind: BumpKind, *, max_attempts: int = 10_000
) -> str:
    """Claim and return the first unclaimed version bumping `kind` from `parent` repeatedly.

    E.g. parent 2.3.1, patch: 2.3.2, else 2.3.3, ...; minor: 2.4.0, else 2.5.0, ...
    """
    candidate = next_version(parent, kind)
    for _ in range(max_attempts):
        try:
            claim_version(directory, task, candidate)
        except VersionTaken:
            candidate = next_version(candidate, kind)
        else:
            return candidate
    raise VersionTaken(
        f"no free {kind} version of task {task!r} after {parent} within {max_attempts} attempts"
    )
