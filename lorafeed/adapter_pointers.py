"""A task's mutable files in the adapter store (the champion pointer and the pin), its locks,
and the removal of temp files left by crashed writers.

Pointers are canonical JSON replaced atomically (temp file, fsync, os.replace, fsync of the
directory); `AdapterStore` serialises their writers with `task_lock`.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final, Self, TypeVar

from pydantic import ValidationError, model_validator

from lorafeed.adapter_manifest_io import fsync_dir, make_dirs_durable
from lorafeed.adapter_store_errors import PointerInvalid
from schemas.base import Contract, canonical_json
from schemas.fields import Identifier, Sha256Hex, Text, UtcDatetime, cut
from schemas.version import SemVer

CHAMPION_NAME: Final = "champion.json"
PIN_NAME: Final = "pin.json"
LOCK_NAME: Final = ".lock"
POINTER_TMP_SUFFIX: Final = ".tmp"
TMP_PREFIX: Final = ".tmp-"  # version directories being written
_POINTER_MAX_BYTES: Final = 64 * 1024

PointerT = TypeVar("PointerT", bound=Contract)


class Champion(Contract):
    """The version serving a task and its manifest digest (model events carry the same digest)."""

    version: SemVer
    manifest_sha256: Sha256Hex
    updated_at: UtcDatetime


class ChampionFile(Contract):
    """`champion.json`: a champion, or version and digest both null for the base model."""

    version: SemVer | None
    manifest_sha256: Sha256Hex | None
    updated_at: UtcDatetime

    @model_validator(mode="after")
    def _both_or_neither(self) -> Self:
        if (self.version is None) != (self.manifest_sha256 is None):
            raise ValueError(
                f"version {self.version!r} and manifest_sha256 {self.manifest_sha256!r} "
                "must both be set or both be null"
            )
        return self

    def champion(self) -> Champion | None:
        """The champion it names, or None for the base model."""
        if self.version is None or self.manifest_sha256 is None:
            return None
        return Champion(
            version=self.version, manifest_sha256=self.manifest_sha256, updated_at=self.updated_at
        )


class Pin(Contract):
    """`pin.json`: the task's champion is held at `version` (None = base model) until unpinned."""

    version: SemVer | None
    actor: Identifier
    reason: Text
    at: UtcDatetime


def read_pointer(path: Path, model: type[PointerT]) -> PointerT | None:
    """The pointer file at `path` parsed as `model`, None if absent; PointerInvalid if bad."""
    try:
        with open(os.open(path, os.O_RDONLY | os.O_NOFOLLOW), "rb") as file:
            data = file.read(_POINTER_MAX_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise PointerInvalid(f"cannot read {path}: {exc}") from exc
    if len(data) > _POINTER_MAX_BYTES:
        raise PointerInvalid(f"{path} exceeds {_POINTER_MAX_BYTES} bytes")
    try:
        return model.model_validate_json(data, strict=True)
    except ValidationError as exc:
        raise PointerInvalid(f"{path} is invalid: {cut(str(exc), 400)}") from exc


def write_pointer(path: Path, value: Contract) -> None:
    """Replace `path` atomically with `value`'s canonical JSON; durable when this returns."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=POINTER_TMP_SUFFIX, dir=path.parent)
    try:
        with open(fd, "wb") as file:
            file.write(canonical_json(value))
            file.flush()
            os.fchmod(file.fileno(), 0o644)
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def remove_pointer(path: Path) -> None:
    """Remove `path` durably; nothing happens if it is absent."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
        fsync_dir(path.parent)


@contextlib.contextmanager
def task_lock(task_dir: Path) -> Iterator[None]:
    """Hold the exclusive lock of a task's pointers (flock: across threads and processes)."""
    make_dirs_durable(task_dir)
    fd = os.open(task_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def dir_lock(directory: Path, *, blocking: bool = True) -> Iterator[bool]:
    """flock `directory` itself; yields False (when not `blocking`) if another holder has it."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def _remove_stale_dir(tmp: Path, min_age_s: float) -> bool:
    if tmp.is_symlink() or not tmp.is_dir() or time.time() - tmp.stat().st_mtime < min_age_s:
        return False
    with dir_lock(tmp, blocking=False) as unused:  # a live writer holds its temp dir's lock
        if unused:
            shutil.rmtree(tmp)
        return unused


def remove_temps(task_dir: Path, min_age_s: float) -> list[Path]:
    """Remove `task_dir`'s abandoned version temp dirs (unlocked, at least `min_age_s` old)
    and pointer temp files; return what was removed."""
    removed = [
        entry
        for entry in sorted(task_dir.glob(f"{TMP_PREFIX}*"))
        if _remove_stale_dir(entry, min_age_s)
    ]
    with task_lock(task_dir):  # pointer writers hold it while their temp file exists
        for entry in sorted(task_dir.glob(f".*{POINTER_TMP_SUFFIX}")):
            if not entry.name.startswith(TMP_PREFIX):
                entry.unlink()
                removed.append(entry)
    return removed
