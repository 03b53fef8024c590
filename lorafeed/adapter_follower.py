"""The serving side of the adapter store across machines: champion pointers come from the
bucket, and the versions they name are pulled (every file's sha256 checked, written aside,
renamed) into the local store before the pointer is copied; explicitly requested versions are
pulled the same way. Chosen by `adapter_store_s3.open_adapter_store(role="follower")`."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from lorafeed.adapter_bucket import Bucket, RemoteUnavailable
from lorafeed.adapter_mirror import MirroredStore, utc_now
from lorafeed.adapter_pointers import Champion
from lorafeed.adapter_store_errors import ManifestInvalid, UnknownVersion, VersionCorrupt
from schemas.manifest import AdapterManifest, manifest_sha256

log = logging.getLogger("lorafeed.adapter_store_s3")  # one logger for the remote store


class FollowingStore(MirroredStore):
    """An `AdapterStore` whose champion pointers come from `bucket` (a serving node's side)."""

    def __init__(
        self,
        root: Path,
        bucket: Bucket,
        *,
        miss_ttl_s: float = 10.0,
        refused_ttl_s: float = 300.0,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        super().__init__(root, bucket, clock=clock)
        self._miss_ttl_s, self._refused_ttl_s = miss_ttl_s, refused_ttl_s
        self._misses: dict[tuple[str, str], float] = {}  # versions the bucket lacked, when
        self._refused: dict[tuple[str, str, str], float] = {}  # corrupt (task, version, digest)

    def champion(self, task: str) -> Champion | None:
        """The bucket's champion once its version is local and verified; the local champion
        while the bucket is unreachable or names a version not uploaded yet (not followed).
        A corrupt remote version is returned unpulled, so loading it fails loudly."""
        try:
            remote, pin = self.mirror.remote_champion(task), self.mirror.remote_pin(task)
        except RemoteUnavailable as exc:
            log.warning("adapter store: %s unreachable, keeping the local pointer: %s",
                        self.mirror.bucket.url, exc)
            return super().champion(task)
        if remote is None:
            return super().champion(task)
        if remote.version is not None and remote.manifest_sha256 is not None:
            refused = self._refused.get((task, remote.version, remote.manifest_sha256))
            if refused is not None and time.monotonic() - refused < self._refused_ttl_s:
                return remote.champion()  # not downloaded again on every poll
            try:
                self._pull_if_missing(task, remote.version, remote.manifest_sha256)
            except (UnknownVersion, RemoteUnavailable) as exc:
                log.warning("adapter store: not following %s's pointer to %s yet: %s",
                            task, remote.version, exc)
                return super().champion(task)
            except (VersionCorrupt, ManifestInvalid) as exc:
                log.error("adapter store: %s@%s refused: %s", task, remote.version, exc)
                self._refused[(task, remote.version, remote.manifest_sha256)] = time.monotonic()
                return remote.champion()
        if self.mirror.copy_pointers_in(task, remote, pin):
            log.info("adapter store: %s champion is now %s (from %s)", task,
                     remote.version or "the base model", self.mirror.bucket.url)
        return super().champion(task)

    def _pull_if_missing(self, task: str, version: str, digest: str) -> None:
        try:
            local = super().read_manifest(task, version)
        except UnknownVersion:
            self.mirror.pull_version(task, version, digest)
            return
        if manifest_sha256(local) != digest:
            raise ManifestInvalid(
                f"adapter {task}@{version}: the local copy has manifest sha256 "
                f"{manifest_sha256(local)}, the remote pointer says {digest}"
            )

    def verify(self, task: str, version: str) -> AdapterManifest:
        """The local version, verified; pulled from the bucket first if it is not local."""
        try:
            return super().verify(task, version)
        except UnknownVersion as missing:
            missed = self._misses.get((task, version))
            if missed is not None and time.monotonic() - missed < self._miss_ttl_s:
                raise
            try:
                return self.mirror.pull_version(task, version, None)
            except UnknownVersion:
                self._misses[(task, version)] = time.monotonic()
                raise missing from None
            except RemoteUnavailable as exc:
                log.warning("adapter store: cannot pull %s@%s: %s", task, version, exc)
                raise missing from exc
