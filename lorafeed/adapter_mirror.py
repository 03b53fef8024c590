"""Copies between a local adapter store and its remote bucket, in the orders that keep both
consistent for readers.

Push (the learner's side): a version's files first, its `manifest.json` last and create-only
(a version is complete remotely once its manifest is there; a different version under the same
name is refused, never overwritten), then the task's `pin.json`, then `champion.json`, whose
version is uploaded before it.
Pull (a serving node's side): the manifest, whose sha256 must equal the champion pointer's, then
every file into a temp directory with its sha256 checked against the manifest as it arrives;
only a complete, verified copy is renamed into the local store, so nothing unverified is ever
visible there. A pointer is copied only once the version it names is local.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Final

from pydantic import ValidationError

from lorafeed.adapter_bucket import Bucket, RemoteConflict
from lorafeed.adapter_manifest_io import (
    MANIFEST_MAX_BYTES,
    MANIFEST_NAME,
    check_task,
    check_version,
    fsync_dir,
    is_task_name,
    make_dirs_durable,
    rename_no_replace,
    write_new_file,
)
from lorafeed.adapter_pointers import (
    CHAMPION_NAME,
    PIN_NAME,
    TMP_PREFIX,
    ChampionFile,
    Pin,
    PointerT,
    dir_lock,
    read_pointer,
    remove_pointer,
    task_lock,
    write_pointer,
)
from lorafeed.adapter_store import AdapterStore
from lorafeed.adapter_store_errors import (
    ChecksumMismatch,
    FileSetMismatch,
    ManifestInvalid,
    PointerInvalid,
    UnknownVersion,
    VersionExists,
)
from schemas.base import canonical_json
from schemas.fields import cut
from schemas.manifest import AdapterManifest, manifest_sha256
from schemas.version import Version

_POINTER_MAX_BYTES: Final = 64 * 1024


def utc_now() -> datetime:
    return datetime.now(UTC)


class AdapterMirror:
    """Push and pull between `store` (used for its plain local behaviour) and `bucket`."""

    def __init__(self, store: AdapterStore, bucket: Bucket) -> None:
        self.store = store
        self.bucket = bucket

    def _key(self, task: str, *parts: str) -> str:
        return self.bucket.url.key(check_task(task), *parts)

    def _where(self, task: str, *parts: str) -> str:
        return f"s3://{self.bucket.url.bucket}/{self._key(task, *parts)}"

    # --- what the remote holds -----------------------------------------------------------------

    def remote_tasks(self) -> list[str]:
        """Tasks with at least one object remotely, sorted."""
        root = self.bucket.url.prefix + "/" if self.bucket.url.prefix else ""
        names = {key[len(root):].split("/", 1)[0] for key in self.bucket.keys(root)}
        return sorted(name for name in names if is_task_name(name))

    def remote_versions(self, task: str) -> list[str]:
        """Versions of `task` whose manifest is uploaded (so complete), oldest first."""
        prefix = self._key(task) + "/"
        found = []
        for key in self.bucket.keys(prefix):
            parts = key[len(prefix):].split("/")
            if len(parts) == 2 and parts[1] == MANIFEST_NAME and _is_version(parts[0]):
                found.append(parts[0])
        return sorted(found, key=Version.parse)

    def remote_manifest(self, task: str, version: str) -> bytes | None:
        key = self._key(task, check_version(version), MANIFEST_NAME)
        return self.bucket.get(key, MANIFEST_MAX_BYTES)

    def remote_champion(self, task: str) -> ChampionFile | None:
        return self._remote_pointer(task, CHAMPION_NAME, ChampionFile)

    def remote_pin(self, task: str) -> Pin | None:
        return self._remote_pointer(task, PIN_NAME, Pin)

    def _remote_pointer(self, task: str, name: str, model: type[PointerT]) -> PointerT | None:
        data = self.bucket.get(self._key(task, name), _POINTER_MAX_BYTES)
        if data is None:
            return None
        try:
            return model.model_validate_json(data, strict=True)
        except ValidationError as exc:
            problem = cut(str(exc), 400)
            raise PointerInvalid(f"{self._where(task, name)} is invalid: {problem}") from exc

    # --- push ----------------------------------------------------------------------------------

    def push_version(self, task: str, version: str) -> bool:
        """Upload verified local `task`@`version` unless it is there already; True if uploaded
        now. RemoteConflict if the remote holds a different manifest under that name."""
        manifest = self.store.verify(task, version)  # never spread a corrupt copy
        data = canonical_json(manifest)
        if self._same_remote(task, version, data):
            return False
        directory = self.store.root / task / version
        for rel, digest in sorted(manifest.files.items()):
            self.bucket.put_file(self._key(task, version, rel), directory / rel, digest)
        created = self.bucket.put_bytes(
            self._key(task, version, MANIFEST_NAME), data, create_only=True
        )
        if not created:
            self._same_remote(task, version, data)  # another writer won: same bytes, or conflict
            return False
        return True

    def _same_remote(self, task: str, version: str, data: bytes) -> bool:
        remote = self.remote_manifest(task, version)
        if remote is None:
            return False
        if remote != data:
            ours, theirs = hashlib.sha256(data).hexdigest(), hashlib.sha256(remote).hexdigest()
            raise RemoteConflict(
                f"adapter {task}@{version} in {self._where(task, version)} has manifest sha256 "
                f"{theirs}, the local one {ours}; versions are never reused, nothing is overwritten"
            )
        return True

    def local_pointers(self, task: str) -> tuple[ChampionFile | None, Pin | None]:
        """The task's local champion pointer and pin (None where absent)."""
        task_dir = self.store.root / check_task(task)
        return read_pointer(task_dir / CHAMPION_NAME, ChampionFile), read_pointer(
            task_dir / PIN_NAME, Pin
        )

    def push_pointers(self, task: str) -> None:
        """Upload the task's pin (or remove the remote one), then its champion pointer, after
        the version the champion names. The local pointers are read under the task lock, so
        the last push always carries the latest local state."""
        with task_lock(self.store.root / check_task(task)):
            champion, pin = self.local_pointers(task)
            if champion is not None and champion.version is not None:
                self.push_version(task, champion.version)
            if pin is None:
                self.bucket.delete(self._key(task, PIN_NAME))
            else:
                self.bucket.put_bytes(self._key(task, PIN_NAME), canonical_json(pin))
            if champion is not None:
                self.bucket.put_bytes(self._key(task, CHAMPION_NAME), canonical_json(champion))

    def push_task(self, task: str) -> list[str]:
        """Upload every local version missing remotely, then the pointers; what was uploaded."""
        remote = set(self.remote_versions(task))
        pushed = [
            version
            for version in self.store.versions(task)
            if version not in remote and self.push_version(task, version)
        ]
        self.push_pointers(task)
        return pushed

    # --- pull ----------------------------------------------------------------------------------

    def pull_version(self, task: str, version: str, expected_sha256: str | None) -> AdapterManifest:
        """Copy remote `task`@`version` into the local store, verified; its manifest.

        UnknownVersion if its manifest is not uploaded; ChecksumMismatch (naming the file and
        both digests) if the manifest differs from `expected_sha256` or a file from the
        manifest; FileSetMismatch if a file is missing; nothing is left behind on failure.
        """
        check_version(version)
        data = self.remote_manifest(task, version)
        if data is None:
            raise UnknownVersion(
                f"adapter {task}@{version} is not in {self._where(task)} (no manifest uploaded)"
            )
        manifest = self._parse_manifest(task, version, data, expected_sha256)
        task_dir = self.store.root / task
        make_dirs_durable(task_dir)
        tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{version}-", dir=task_dir))
        try:
            with dir_lock(tmp):  # held until renamed, so gc_temp leaves it alone
                self._download_files(task, manifest, tmp)
                write_new_file(tmp / MANIFEST_NAME, data)
                os.chmod(tmp, 0o755)
                fsync_dir(tmp)
                rename_no_replace(tmp, task_dir / version, f"{task}@{version}")
        except VersionExists:  # a concurrent pull finished first; theirs is checked below
            shutil.rmtree(tmp, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        fsync_dir(task_dir)
        return self.store.verify(task, version)

    def _parse_manifest(
        self, task: str, version: str, data: bytes, expected: str | None
    ) -> AdapterManifest:
        where = self._where(task, version, MANIFEST_NAME)
        digest = hashlib.sha256(data).hexdigest()
        if expected is not None and digest != expected:
            raise ChecksumMismatch(
                f"adapter {task}@{version}: {where} has sha256 {digest}, the champion pointer "
                f"says {expected}",
                MANIFEST_NAME,
            )
        try:
            manifest = AdapterManifest.model_validate_json(data, strict=True)
        except ValidationError as exc:
            raise ManifestInvalid(f"{where} is invalid: {cut(str(exc), 400)}") from exc
        if (manifest.task, manifest.version) != (task, version):
            raise ManifestInvalid(f"{where} describes {manifest.task}@{manifest.version}")
        if manifest_sha256(manifest) != digest:  # the store's readers hash the canonical form
            raise ManifestInvalid(f"{where} is not in canonical JSON form")
        return manifest

    def _download_files(self, task: str, manifest: AdapterManifest, tmp: Path) -> None:
        inside = tmp.resolve()
        for rel, expected in sorted(manifest.files.items()):
            target = tmp / rel
            if not target.resolve().is_relative_to(inside) or rel == MANIFEST_NAME:
                raise ManifestInvalid(f"adapter {task}@{manifest.version}: bad file name {rel!r}")
            target.parent.mkdir(parents=True, exist_ok=True)
            key = self._key(task, manifest.version, rel)
            actual = self.bucket.download(key, target)
            if actual is None:
                raise FileSetMismatch(
                    f"adapter {task}@{manifest.version}: {rel} is missing from "
                    f"{self._where(task, manifest.version)}"
                )
            if actual != expected:
                raise ChecksumMismatch(
                    f"adapter {task}@{manifest.version}: {rel} downloaded from "
                    f"{self._where(task, manifest.version, rel)} has sha256 {actual}, the "
                    f"manifest says {expected}",
                    rel,
                )
        directories = {tmp / up for rel in manifest.files for up in PurePosixPath(rel).parents}
        for directory in sorted(directories, key=lambda path: len(path.parts), reverse=True):
            fsync_dir(directory)

    def copy_pointers_in(self, task: str, champion: ChampionFile | None, pin: Pin | None) -> bool:
        """Make the local pointers equal `champion` (left alone if None) and `pin` (removed
        if None); the champion's version must be local already. True if anything changed."""
        task_dir = self.store.root / check_task(task)
        if champion is not None and champion.version is not None:
            self.store.read_manifest(task, champion.version)  # UnknownVersion if not local
        changed = False
        with task_lock(task_dir):
            if read_pointer(task_dir / PIN_NAME, Pin) != pin:
                if pin is None:
                    remove_pointer(task_dir / PIN_NAME)
                else:
                    write_pointer(task_dir / PIN_NAME, pin)
                changed = True
            current = read_pointer(task_dir / CHAMPION_NAME, ChampionFile)
            if champion is not None and current != champion:
                write_pointer(task_dir / CHAMPION_NAME, champion)
                changed = True
        return changed


def _is_version(name: str) -> bool:
    try:
        return check_version(name) == name
    except ValueError:
        return False


class MirroredStore(AdapterStore):
    """Base of the stores that mirror a bucket: `mirror` copies between the two."""

    def __init__(
        self, root: Path, bucket: Bucket, *, clock: Callable[[], datetime] = utc_now
    ) -> None:
        super().__init__(root, clock=clock)
        self.mirror = AdapterMirror(AdapterStore(root, clock=clock), bucket)

    def _current(self, task: str) -> str | None:
        # The base class reads the current champion while it holds the task lock: that read
        # must be the plain local one, never a sync (which would take the lock again).
        champion = AdapterStore.champion(self, task)
        return None if champion is None else champion.version
