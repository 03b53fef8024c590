"""The adapter store's error hierarchy: one base, `AdapterStoreError`, and a named subclass per
failure, each message naming the task, version, file or value involved."""

from __future__ import annotations


class AdapterStoreError(Exception):
    """Base of every adapter store failure."""


class InvalidArgument(AdapterStoreError, ValueError):
    """A task name, version, actor or reason is malformed; raised before any path is built."""


class VersionExists(AdapterStoreError):
    """The version directory already exists; versions are never overwritten or reused."""


class SourceRejected(AdapterStoreError):
    """The files handed to `write_version` hold a symlink, a special file, a bad or reserved name,
    or no file at all."""


class ManifestInvalid(AdapterStoreError):
    """A manifest does not validate or names another task or version than its place."""


class UnknownVersion(AdapterStoreError):
    """No complete version exists there: no directory, or no valid manifest in it."""


class StoredManifestInvalid(ManifestInvalid, UnknownVersion):
    """A version directory's manifest is unreadable, invalid or misplaced, so for readers the
    version does not exist (catch `UnknownVersion`); the message says what is wrong."""


class VersionCorrupt(AdapterStoreError):
    """A version's files differ from its manifest."""


class FileSetMismatch(VersionCorrupt):
    """Files are missing or extra, or an entry is a symlink or special file."""


class ChecksumMismatch(VersionCorrupt):
    """A file's sha256 differs from the one in the manifest; `path` names the file."""

    def __init__(self, message: str, path: str) -> None:
        super().__init__(message)
        self.path = path


class PointerInvalid(AdapterStoreError):
    """A champion or pin file of a task is unreadable or invalid."""


class ChampionChanged(AdapterStoreError):
    """Compare-and-set failed: the champion is not the version the caller expected."""


class PinnedTask(AdapterStoreError):
    """The task is pinned to another version; moving its champion needs `force=True`."""


class RollbackRefused(AdapterStoreError):
    """The rollback target is not earlier than the current champion."""
