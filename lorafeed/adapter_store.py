"""The adapter store shared by the learner (writes versions, moves champions) and serving (reads
and verifies them): `root/<task>/<version>/` immutable directories with a `manifest.json`, plus
per task a `champion.json` pointer (the truth; events only notify) and an optional `pin.json`.

A version is written aside in `root/<task>/.tmp-<version>-<random>` and renamed into place, so
a crash leaves no visible partial version; a directory without a valid manifest does not exist.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from pydantic import ValidationError

from lorafeed import failpoints
from lorafeed.adapter_manifest_io import (
    MANIFEST_NAME,
    check_files,
    check_task,
    check_version,
    complete_manifest,
    copy_tree_hashed,
    fsync_dir,
    is_task_name,
    load_manifest,
    make_dirs_durable,
    manifest_fields,
    rename_no_replace,
    source_files,
    write_new_file,
)
from lorafeed.adapter_pointers import (
    CHAMPION_NAME,
    PIN_NAME,
    TMP_PREFIX,
    Champion,
    ChampionFile,
    Pin,
    dir_lock,
    read_pointer,
    remove_pointer,
    remove_temps,
    task_lock,
    write_pointer,
)
from lorafeed.adapter_store_errors import (
    AdapterStoreError,
    ChampionChanged,
    ChecksumMismatch,
    FileSetMismatch,
    InvalidArgument,
    ManifestInvalid,
    PinnedTask,
    PointerInvalid,
    RollbackRefused,
    SourceRejected,
    StoredManifestInvalid,
    UnknownVersion,
    VersionCorrupt,
    VersionExists,
)
from schemas.base import canonical_json
from schemas.fields import show
from schemas.manifest import AdapterManifest, manifest_sha256
from schemas.version import Version

__all__ = [
    "ANY",
    "AdapterStore",
    "AdapterStoreError",
    "Champion",
    "ChampionChanged",
    "ChecksumMismatch",
    "FileSetMismatch",
    "InvalidArgument",
    "ManifestInvalid",
    "Pin",
    "PinnedTask",
    "PointerInvalid",
    "RollbackRefused",
    "SourceRejected",
    "StoredManifestInvalid",
    "UnknownVersion",
    "VersionCorrupt",
    "VersionExists",
]

log = logging.getLogger(__name__)

BEFORE_RENAME: Final = failpoints.declare(
    "adapter_store.before_rename", "version written and fsynced aside, not yet renamed into place"
)
AFTER_RENAME: Final = failpoints.declare(
    "adapter_store.after_rename", "version renamed into place, nothing else updated yet"
)


class _AnyCurrent:
    def __repr__(self) -> str:
        return "ANY"


ANY: Final = _AnyCurrent()
"""`set_champion(expected_current=ANY)`: no compare-and-set on the current champion."""


def _named(version: object) -> str:
    return "the base model" if version is None else show(version)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class AdapterStore:
    """Versions, champion pointers and pins under `root`; safe for concurrent processes on one
    host (pointer updates are serialised with flock, version names claimed by a no-replace
    rename). Task and version strings are checked before any path is built from them."""

    def __init__(self, root: Path, *, clock: Callable[[], datetime] = _utc_now) -> None:
        self.root = Path(root).resolve()
        self._clock = clock

    def _task_dir(self, task: str) -> Path:
        return self.root / check_task(task)

    def _version_dir(self, task: str, version: str) -> Path:
        return self._task_dir(task) / check_version(version)

    def write_version(
        self,
        task: str,
        version: str,
        files_dir: Path,
        manifest_without_files: AdapterManifest | Mapping[str, Any],
    ) -> AdapterManifest:
        """Copy `files_dir` into the new immutable version `task`@`version` with its manifest
        (the given fields plus every file's sha256) and return that manifest.

        Raises VersionExists if the version exists (also when a concurrent writer wins),
        SourceRejected for symlinks or special files, ManifestInvalid for a bad manifest.
        """
        target = self._version_dir(task, version)
        data = manifest_fields(manifest_without_files, task, version)
        files = source_files(Path(files_dir))
        complete_manifest(data, dict.fromkeys(files, "0" * 64))  # fail before copying anything
        if os.path.lexists(target):
            raise VersionExists(
                f"adapter {task}@{version} already exists; versions are never reused"
            )
        make_dirs_durable(target.parent)
        tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{version}-", dir=target.parent))
        try:
            with dir_lock(tmp):  # held until renamed, so gc_temp leaves it alone
                manifest = self._fill(tmp, Path(files_dir), files, data)
                failpoints.failpoint(BEFORE_RENAME)
                rename_no_replace(tmp, target, f"{task}@{version}")
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        fsync_dir(target.parent)
        failpoints.failpoint(AFTER_RENAME)
        return manifest

    @staticmethod
    def _fill(tmp: Path, src: Path, files: list[str], data: Mapping[str, Any]) -> AdapterManifest:
        manifest = complete_manifest(data, copy_tree_hashed(src, tmp, files))
        write_new_file(tmp / MANIFEST_NAME, canonical_json(manifest))
        os.chmod(tmp, 0o755)  # mkdtemp made it private
        fsync_dir(tmp)
        return manifest

    def read_manifest(self, task: str, version: str) -> AdapterManifest:
        """The manifest of `task`@`version`; UnknownVersion if there is no valid one."""
        return load_manifest(self._version_dir(task, version), task, version)

    def verify(self, task: str, version: str) -> AdapterManifest:
        """The manifest, after checking the version's files are exactly the manifest's, each
        with its sha256 (FileSetMismatch, ChecksumMismatch naming the file)."""
        version_dir = self._version_dir(task, version)
        manifest = load_manifest(version_dir, task, version)
        check_files(version_dir, manifest)
        return manifest

    def _manifests(self, task: str) -> Iterator[AdapterManifest]:
        try:
            names = os.listdir(self._task_dir(task))
        except (FileNotFoundError, NotADirectoryError):
            return
        for name in names:
            try:
                yield self.read_manifest(task, name)
            except (InvalidArgument, UnknownVersion):  # temp dirs, pointers, broken versions
                continue

    def versions(self, task: str) -> list[str]:
        """`task`'s versions with a valid manifest, oldest first (files are not hashed here)."""
        return sorted((m.version for m in self._manifests(task)), key=Version.parse)

    def tasks(self) -> list[str]:
        """Tasks with at least one version or a champion or pin file, sorted by name."""
        found = []
        for task in self._task_names():
            pointers = (self.root / task / CHAMPION_NAME, self.root / task / PIN_NAME)
            if any(p.exists() for p in pointers) or next(self._manifests(task), None) is not None:
                found.append(task)
        return found

    def affected_by_record(self, record_id: str) -> list[tuple[str, str]]:
        """(task, version) of every version whose lineage lists `record_id`, sorted."""
        return [
            (task, manifest.version)
            for task in self.tasks()
            for manifest in sorted(self._manifests(task), key=lambda m: Version.parse(m.version))
            if record_id in manifest.lineage.record_ids
        ]

    def gc_temp(self, *, min_age_s: float = 60.0) -> list[Path]:
        """Remove temp directories and pointer temp files left by crashed writers; a temp
        directory still locked by its writer, or younger than `min_age_s`, is kept."""
        return [
            path
            for task in self._task_names()
            for path in remove_temps(self.root / task, min_age_s)
        ]

    def _task_names(self) -> list[str]:
        try:
            names = sorted(os.listdir(self.root))
        except (FileNotFoundError, NotADirectoryError):
            return []
        return [n for n in names if is_task_name(n) and (self.root / n).is_dir()]

    def champion(self, task: str) -> Champion | None:
        """The task's champion, or None when it serves the base model (or has no pointer)."""
        pointer = read_pointer(self._task_dir(task) / CHAMPION_NAME, ChampionFile)
        return None if pointer is None else pointer.champion()

    def pinned(self, task: str) -> Pin | None:
        """The task's pin, or None."""
        return read_pointer(self._task_dir(task) / PIN_NAME, Pin)

    def set_champion(
        self,
        task: str,
        version: str | None,
        *,
        expected_current: str | None | object = ANY,
        force: bool = False,
    ) -> Champion | None:
        """Point `task` at verified `version` (None = base model) and return the new champion.

        With `expected_current` (a version or None), raise ChampionChanged unless that is the
        current champion. Raise PinnedTask if a pin holds another version, unless `force`.
        """
        digest = self._verified_digest(task, version)
        with task_lock(self._task_dir(task)):
            current = self._current(task)
            if expected_current is not ANY and expected_current != current:
                raise ChampionChanged(
                    f"champion of {task} is {_named(current)}, expected {_named(expected_current)}"
                )
            pin = self.pinned(task)
            if pin is not None and pin.version != version and not force:
                raise PinnedTask(
                    f"task {task} is pinned to {_named(pin.version)} by {pin.actor} "
                    f"({pin.reason}); refusing to set {_named(version)} without force"
                )
            return self._point(task, version, digest)

    def pin(self, task: str, version: str | None, actor: str, reason: str) -> Pin:
        """Pin `task` at verified `version` (None = base model), making it the champion."""
        digest = self._verified_digest(task, version)
        pin = self._new_pin(version, actor, reason)
        with task_lock(self._task_dir(task)):
            self._pin_and_point(task, pin, digest)
        log.info("pinned %s at %s by %s: %s", task, version, actor, reason)
        return pin

    def unpin(self, task: str, actor: str) -> Pin | None:
        """Remove `task`'s pin and return it (None if there was none); the champion stays."""
        self._new_pin(None, actor, "unpin")  # validates actor
        task_dir = self._task_dir(task)
        with task_lock(task_dir):
            pin = self.pinned(task)
            remove_pointer(task_dir / PIN_NAME)
        log.info("unpinned %s (was %s) by %s", task, pin, actor)
        return pin

    def rollback(
        self, task: str, to_version: str | None, actor: str, reason: str
    ) -> tuple[str | None, str | None]:
        """Move `task`'s champion back to earlier verified `to_version` (None = base model)
        and pin it there, overriding any pin; return (from, to). RollbackRefused if not earlier."""
        digest = self._verified_digest(task, to_version)
        pin = self._new_pin(to_version, actor, reason)
        with task_lock(self._task_dir(task)):
            current = self._current(task)
            if current is None or (
                to_version is not None and Version.parse(to_version) >= Version.parse(current)
            ):
                raise RollbackRefused(
                    f"cannot roll {task} back from {_named(current)} to {_named(to_version)}: "
                    "not an earlier version (pin it instead)"
                )
            self._pin_and_point(task, pin, digest)
        log.info("rolled %s back from %s to %s by %s: %s", task, current, to_version, actor, reason)
        return current, to_version

    def _verified_digest(self, task: str, version: str | None) -> str | None:
        check_task(task)
        return None if version is None else manifest_sha256(self.verify(task, version))

    def _new_pin(self, version: str | None, actor: str, reason: str) -> Pin:
        try:
            return Pin(version=version, actor=actor, reason=reason, at=self._clock())
        except ValidationError as exc:
            raise InvalidArgument(f"pin of {version}: {exc}") from exc

    def _current(self, task: str) -> str | None:
        champion = self.champion(task)
        return None if champion is None else champion.version

    def _pin_and_point(self, task: str, pin: Pin, digest: str | None) -> None:
        # Pin first: after a crash in between, the pin already blocks other champions.
        write_pointer(self._task_dir(task) / PIN_NAME, pin)
        if self._current(task) != pin.version:
            self._point(task, pin.version, digest)

    def _point(self, task: str, version: str | None, digest: str | None) -> Champion | None:
        pointer = ChampionFile(version=version, manifest_sha256=digest, updated_at=self._clock())
        write_pointer(self._task_dir(task) / CHAMPION_NAME, pointer)
        return pointer.champion()
