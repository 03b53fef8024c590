"""The adapter store across machines: the local `AdapterStore` stays the working copy, and an
S3-compatible bucket (`LORAFEED_ADAPTER_STORE_URL=s3://bucket/prefix`) carries it between them.

`PublishingStore` (the learner, the operator CLI beside it) pushes after every change it makes:
a version once renamed into place, the pointers after every champion, pin, unpin or rollback.
The local change stands whatever the bucket says: a failed push is logged and retried, and at
start it restores versions missing locally (a lost volume) and uploads what the bucket lacks.
`FollowingStore` (serving nodes, the scorer) reads the champion pointer from the bucket, pulls
the version it names into the local store (every file's sha256 checked, written aside, renamed)
and only then copies the pointer; explicitly requested versions are pulled the same way.
Composition roots choose with `open_adapter_store`; nothing else knows the bucket exists.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from lorafeed.adapter_bucket import (
    Bucket,
    RemoteConflict,
    RemoteUnavailable,
    S3Config,
    parse_store_url,
)
from lorafeed.adapter_follower import FollowingStore
from lorafeed.adapter_mirror import MirroredStore, utc_now
from lorafeed.adapter_pointers import CHAMPION_NAME, Champion, ChampionFile, Pin
from lorafeed.adapter_store import ANY, AdapterStore
from lorafeed.adapter_store_errors import AdapterStoreError
from lorafeed.settings import PlatformSettings
from schemas.manifest import AdapterManifest

__all__ = [
    "FollowingStore",
    "PublishingStore",
    "RemoteConflict",
    "RemoteUnavailable",
    "follow_remote",
    "open_adapter_store",
    "s3_config",
]

log = logging.getLogger(__name__)
Role = Literal["publisher", "follower"]
OnRestored = Callable[[str, str], None]


class PublishingStore(MirroredStore):
    """An `AdapterStore` that pushes each change to `bucket` (the learner's side)."""

    def __init__(
        self,
        root: Path,
        bucket: Bucket,
        *,
        retry_s: float = 30.0,
        on_restored: OnRestored | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        super().__init__(root, bucket, clock=clock)
        self._retry_s = retry_s
        self._on_restored = on_restored or (lambda task, version: None)
        self._failed: dict[str, float] = {}  # task -> monotonic time of its last failed push
        self._pushed: dict[str, tuple[ChampionFile | None, Pin | None]] = {}  # last pointers up
        self._guard = threading.Lock()

    def write_version(
        self,
        task: str,
        version: str,
        files_dir: Path,
        manifest_without_files: AdapterManifest | Mapping[str, Any],
    ) -> AdapterManifest:
        manifest = super().write_version(task, version, files_dir, manifest_without_files)
        self._publish(task, version)
        return manifest

    def set_champion(
        self,
        task: str,
        version: str | None,
        *,
        expected_current: str | None | object = ANY,
        force: bool = False,
    ) -> Champion | None:
        champion = super().set_champion(
            task, version, expected_current=expected_current, force=force
        )
        self._publish(task)
        return champion

    def pin(self, task: str, version: str | None, actor: str, reason: str) -> Pin:
        pin = super().pin(task, version, actor, reason)
        self._publish(task)
        return pin

    def unpin(self, task: str, actor: str) -> Pin | None:
        pin = super().unpin(task, actor)
        self._publish(task)
        return pin

    def rollback(
        self, task: str, to_version: str | None, actor: str, reason: str
    ) -> tuple[str | None, str | None]:
        moved = super().rollback(task, to_version, actor, reason)
        self._publish(task)
        return moved

    def catch_up(self) -> list[str]:
        """Push the tasks whose pointers changed behind this store's back (`lorafeed adapters
        rollback` run beside the learner) and retry failed pushes once `retry_s` passed; the
        tasks pushed. The learner's scheduler calls it every few seconds."""
        done = []
        for task in sorted(set(self.tasks()) | set(self.unpublished())):
            with self._guard:
                failed, pushed = self._failed.get(task), self._pushed.get(task, (None, None))
            if failed is None:
                due = self.mirror.local_pointers(task) != pushed
            else:
                due = time.monotonic() - failed >= self._retry_s
            if due:
                self._publish(task)
                done.append(task)
        return done

    def unpublished(self) -> list[str]:
        """Tasks whose last push failed (retried by `catch_up`)."""
        with self._guard:
            return sorted(self._failed)

    def _publish(self, task: str, version: str | None = None, *, restore: bool = False) -> None:
        """Push `version` (if given) and the task's pointers; everything the bucket lacks when
        an earlier push failed; with `restore`, first pull what this store lacks."""
        with self._guard:
            behind = task in self._failed
        state = self.mirror.local_pointers(task)  # read first: a later change is pushed again
        try:
            if restore:
                self._restore(task)
            if behind or restore:
                self.mirror.push_task(task)
            else:
                if version is not None:
                    self.mirror.push_version(task, version)
                self.mirror.push_pointers(task)
        except (AdapterStoreError, OSError) as exc:  # the local change stands; retried later
            log.error("adapter store: %s not yet published to %s: %s (retried every %.0f s)",
                      task, self.mirror.bucket.url, exc, self._retry_s)
            with self._guard:
                self._failed[task] = time.monotonic()
            return
        with self._guard:
            self._failed.pop(task, None)
            self._pushed[task] = state

    def sync(self) -> None:
        """At start: pull remote versions missing here (and the pointers where none exist
        locally), then upload whatever the bucket lacks. Failures are logged and retried."""
        try:
            tasks = sorted(set(self.tasks()) | set(self.mirror.remote_tasks()))
        except AdapterStoreError as exc:
            log.error("adapter store: cannot list %s: %s", self.mirror.bucket.url, exc)
            with self._guard:
                self._failed.update(dict.fromkeys(self.tasks(), time.monotonic()))
            return
        for task in tasks:
            self._publish(task, restore=True)

    def _restore(self, task: str) -> None:
        local = set(self.versions(task))
        for version in self.mirror.remote_versions(task):
            if version not in local:
                self.mirror.pull_version(task, version, None)
                self._on_restored(task, version)
                log.info("adapter store: restored %s@%s from %s", task, version,
                         self.mirror.bucket.url)
        remote = self.mirror.remote_champion(task)
        if remote is not None and not (self.root / task / CHAMPION_NAME).exists():
            self.mirror.copy_pointers_in(task, remote, self.mirror.remote_pin(task))


def s3_config(platform: PlatformSettings) -> S3Config:
    """The bucket settings of `platform` (which must name an adapter store URL)."""
    if platform.adapter_store_url is None:
        raise ValueError("LORAFEED_ADAPTER_STORE_URL is not set")

    def secret(value: Any) -> str | None:
        return None if value is None else str(value.get_secret_value())

    return S3Config(
        url=parse_store_url(platform.adapter_store_url),
        endpoint_url=platform.s3_endpoint_url,
        access_key_id=secret(platform.s3_access_key_id),
        secret_access_key=secret(platform.s3_secret_access_key),
        region=platform.s3_region,
    )


def open_adapter_store(
    platform: PlatformSettings,
    root: Path | None = None,
    *,
    role: Role,
    on_restored: OnRestored | None = None,
) -> AdapterStore:
    """The store a composition root uses: local only without `adapter_store_url`; else a
    `PublishingStore` (synced once now) or a `FollowingStore` over the bucket."""
    root = root or platform.adapter_store_root()
    if platform.adapter_store_url is None:
        return AdapterStore(root)
    bucket = Bucket.connect(s3_config(platform))
    if role == "follower":
        follower = FollowingStore(root, bucket)
        follower.gc_temp()  # pulls that died mid-way
        return follower
    publisher = PublishingStore(root, bucket, retry_s=platform.adapter_poll_s,
                                on_restored=on_restored)
    publisher.sync()
    return publisher


async def follow_remote(
    sync: Callable[[], Awaitable[object]], interval_s: float, stop: asyncio.Event
) -> None:
    """Call `sync` every `interval_s` until `stop` (a serving node re-reading the pointers, for
    changes whose model event came before their upload finished)."""
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), timeout=interval_s)
        except TimeoutError:
            try:
                await sync()
            except Exception:  # the poll must outlive any one failure
                log.exception("adapter store: periodic pointer sync failed")
