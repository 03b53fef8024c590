"""Path-safe file work behind `AdapterStore`: name checks, hashed copies with fsync, a no-replace
rename, and reading a version directory's manifest and checking its files against it.

Nothing here follows a symlink inside a source or version directory.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import os
import re
import stat
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any, Final

from pydantic import TypeAdapter, ValidationError

from lorafeed.adapter_store_errors import (
    ChecksumMismatch,
    FileSetMismatch,
    InvalidArgument,
    ManifestInvalid,
    SourceRejected,
    StoredManifestInvalid,
    UnknownVersion,
    VersionCorrupt,
    VersionExists,
)
from schemas.fields import TASK_NAME_PATTERN, cut, show
from schemas.manifest import AdapterManifest, RelativePath
from schemas.version import Version

MANIFEST_NAME: Final = "manifest.json"
MANIFEST_MAX_BYTES: Final = 16 * 1024 * 1024
_CHUNK: Final = 1024 * 1024
_LISTED: Final = 10  # names shown in a message before "..."
_TASK_RE: Final = re.compile(TASK_NAME_PATTERN)
_RELATIVE_PATH: Final = TypeAdapter(RelativePath)
_AT_FDCWD: Final = -100
_RENAME_NOREPLACE: Final = 1


def is_task_name(name: object) -> bool:
    """Whether `name` is a valid task name, hence a safe path segment."""
    return isinstance(name, str) and _TASK_RE.fullmatch(name) is not None


def check_task(task: object) -> str:
    """`task` if it is a valid task name, else InvalidArgument."""
    if not isinstance(task, str) or not is_task_name(task):
        raise InvalidArgument(f"task name {show(task)} must match {TASK_NAME_PATTERN}")
    return task


def check_version(version: object) -> str:
    """`version` if it is a strict MAJOR.MINOR.PATCH string, else InvalidArgument."""
    if not isinstance(version, str):
        raise InvalidArgument(f"version {show(version)} must be a MAJOR.MINOR.PATCH string")
    try:
        Version.parse(version)
    except ValueError as exc:
        raise InvalidArgument(str(exc)) from exc
    return version


def listed(names: list[str]) -> str:
    """Up to `_LISTED` names, comma-separated, for messages."""
    more = ", ..." if len(names) > _LISTED else ""
    return ", ".join(show(name) for name in names[:_LISTED]) + more


def manifest_fields(
    manifest: AdapterManifest | Mapping[str, Any], task: str, version: str
) -> dict[str, Any]:
    """The manifest's fields without `files`; task and version filled in or checked."""
    if isinstance(manifest, AdapterManifest):
        data = manifest.model_dump(mode="json", by_alias=True)
    elif isinstance(manifest, Mapping):
        data = dict(manifest)
    else:
        raise ManifestInvalid(
            f"manifest must be an AdapterManifest or a dict, got {show(manifest)}"
        )
    data.pop("files", None)
    for key, expected in (("task", task), ("version", version)):
        given = data.setdefault(key, expected)
        if given != expected:
            raise ManifestInvalid(
                f"manifest names {key} {show(given)}, but it is being written as {task}@{version}"
            )
    return data


def complete_manifest(data: Mapping[str, Any], files: Mapping[str, str]) -> AdapterManifest:
    """The validated manifest of `data` (from `manifest_fields`) with `files` filled in."""
    try:
        return AdapterManifest.model_validate({**data, "files": dict(files)})
    except ValidationError as exc:
        raise ManifestInvalid(
            f"manifest of {data['task']}@{data['version']} is invalid: {exc}"
        ) from exc


def fsync_dir(path: Path) -> None:
    """Make the entries of directory `path` (creations, renames, removals) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs_durable(path: Path) -> None:
    """Create `path` and missing parents, fsyncing each parent that gained an entry."""
    missing: list[Path] = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        try:
            directory.mkdir()
        except FileExistsError:  # a concurrent writer made it first
            continue
        fsync_dir(directory.parent)


def walk_files(top: Path) -> tuple[list[str], list[str]]:
    """(regular files, refused entries) below `top` as sorted relative POSIX paths.

    Symlinks and special files are refused, never followed; directories are descended.
    """
    files: list[str] = []
    refused: list[str] = []
    pending = [""]
    while pending:
        prefix = pending.pop()
        with os.scandir(top / prefix) as entries:
            for entry in entries:
                rel = prefix + entry.name
                if entry.is_symlink():
                    refused.append(f"{rel} (symlink)")
                elif entry.is_dir(follow_symlinks=False):
                    pending.append(rel + "/")
                elif entry.is_file(follow_symlinks=False):
                    files.append(rel)
                else:
                    refused.append(f"{rel} (not a regular file)")
    return sorted(files), sorted(refused)


def source_files(src: Path) -> list[str]:
    """The files of an adapter source directory, or SourceRejected saying what is wrong."""
    if src.is_symlink() or not src.is_dir():
        raise SourceRejected(f"adapter files directory {src} is not a directory (or is a symlink)")
    files, refused = walk_files(src)
    if refused:
        raise SourceRejected(f"adapter files in {src}: refused {listed(refused)}")
    if not files:
        raise SourceRejected(f"adapter files directory {src} holds no file")
    if MANIFEST_NAME in files:
        raise SourceRejected(f"{src / MANIFEST_NAME}: {MANIFEST_NAME} is written by the store")
    for rel in files:
        try:
            _RELATIVE_PATH.validate_python(rel)
        except ValidationError as exc:
            problem = exc.errors()[0]["msg"]
            raise SourceRejected(f"adapter files in {src}: {problem}") from exc
    return files


def hash_file(path: Path) -> str:
    """sha256 hex of a regular file, opened without following a final symlink."""
    digest = hashlib.sha256()
    with open(os.open(path, os.O_RDONLY | os.O_NOFOLLOW), "rb") as source:
        while chunk := source.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def copy_hashed(src: Path, dst: Path) -> str:
    """Copy `src` to a new read-only file `dst`, fsync it, and return the sha256 of the bytes."""
    digest = hashlib.sha256()
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    with (
        open(os.open(src, os.O_RDONLY | os.O_NOFOLLOW), "rb") as source,
        open(os.open(dst, flags, 0o444), "wb") as target,
    ):
        while chunk := source.read(_CHUNK):
            digest.update(chunk)
            target.write(chunk)
        target.flush()
        os.fsync(target.fileno())
    return digest.hexdigest()


def copy_tree_hashed(src: Path, dst: Path, files: list[str]) -> dict[str, str]:
    """Copy `files` (relative POSIX paths) from `src` into `dst`; {path: sha256}, all fsynced."""
    directories = {dst}
    digests: dict[str, str] = {}
    for rel in files:
        parents = [dst / parent for parent in PurePosixPath(rel).parents]
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        directories.update(parents)
        digests[rel] = copy_hashed(src / rel, dst / rel)
    for directory in sorted(directories, key=lambda path: len(path.parts), reverse=True):
        fsync_dir(directory)
    return digests


def write_new_file(path: Path, data: bytes) -> None:
    """Create `path` (it must not exist) read-only with `data`, and fsync it."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    with open(os.open(path, flags, 0o444), "wb") as target:
        target.write(data)
        target.flush()
        os.fsync(target.fileno())


def _renameat2(src: Path, dst: Path) -> bool:
    """rename(2) with RENAME_NOREPLACE; False if this libc or filesystem lacks it."""
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    result = function(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), _RENAME_NOREPLACE)
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL):
        return False
    raise OSError(code, os.strerror(code), str(dst))


def rename_no_replace(src: Path, dst: Path, what: str) -> None:
    """Rename directory `src` to `dst`; VersionExists (naming `what`) if `dst` exists."""
    try:
        # Plain rename(2) would silently replace an empty directory at `dst`.
        if not _renameat2(src, dst):
            os.rename(src, dst)
    except OSError as exc:
        if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
            raise VersionExists(
                f"adapter {what} already exists; versions are never reused"
            ) from exc
        raise


def _read_manifest_bytes(version_dir: Path, where: str) -> bytes:
    try:
        if not stat.S_ISDIR(os.lstat(version_dir).st_mode):
            raise UnknownVersion(f"adapter {where}: {version_dir} is not a directory")
        with open(os.open(version_dir / MANIFEST_NAME, os.O_RDONLY | os.O_NOFOLLOW), "rb") as file:
            data = file.read(MANIFEST_MAX_BYTES + 1)
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise UnknownVersion(f"adapter {where} does not exist (no {exc.filename})") from exc
    except OSError as exc:
        raise StoredManifestInvalid(f"adapter {where}: cannot read {MANIFEST_NAME}: {exc}") from exc
    if len(data) > MANIFEST_MAX_BYTES:
        raise StoredManifestInvalid(
            f"adapter {where}: {MANIFEST_NAME} exceeds {MANIFEST_MAX_BYTES} bytes"
        )
    return data


def load_manifest(version_dir: Path, task: str, version: str) -> AdapterManifest:
    """The valid manifest of `version_dir`, which must name `task`@`version` and whose files
    must resolve inside it; UnknownVersion (or its StoredManifestInvalid) otherwise."""
    where = f"{task}@{version}"
    data = _read_manifest_bytes(version_dir, where)
    try:
        manifest = AdapterManifest.model_validate_json(data, strict=True)
    except ValidationError as exc:
        raise StoredManifestInvalid(
            f"adapter {where}: {MANIFEST_NAME} is invalid: {cut(str(exc), 400)}"
        ) from exc
    if (manifest.task, manifest.version) != (task, version):
        raise StoredManifestInvalid(
            f"adapter {where}: {MANIFEST_NAME} describes {manifest.task}@{manifest.version}"
        )
    inside = version_dir.resolve()
    for rel in manifest.files:
        if not (version_dir / rel).resolve().is_relative_to(inside):
            raise StoredManifestInvalid(
                f"adapter {where}: manifest file {show(rel)} resolves outside {version_dir}"
            )
    return manifest


def check_files(version_dir: Path, manifest: AdapterManifest) -> None:
    """Raise FileSetMismatch or ChecksumMismatch unless the directory's files are exactly the
    manifest's (plus the manifest itself) with the recorded sha256 digests."""
    where = f"{manifest.task}@{manifest.version}"
    files, refused = walk_files(version_dir)
    expected = {*manifest.files, MANIFEST_NAME}
    missing = sorted(expected.difference(files))
    extra = sorted(set(files).difference(expected))
    if missing or extra or refused:
        raise FileSetMismatch(
            f"adapter {where}: files differ from the manifest: missing [{listed(missing)}], "
            f"extra [{listed(extra)}], refused [{listed(refused)}]"
        )
    for rel, expected_digest in sorted(manifest.files.items()):
        try:
            actual = hash_file(version_dir / rel)
        except OSError as exc:
            raise VersionCorrupt(f"adapter {where}: cannot read {show(rel)}: {exc}") from exc
        if actual != expected_digest:
            raise ChecksumMismatch(
                f"adapter {where}: {rel} has sha256 {actual}, the manifest says {expected_digest}",
                rel,
            )
