"""Which adapter version each task serves on this node, and the swap protocol that changes it.

The champion pointer in the adapter store is the truth; `model.events` only say "look again".
A new version is verified (every file's sha256, manifest digest == pointer digest), checked for
compatibility, loaded aside and smoke-tested before `active` moves; a refused version leaves the
old one serving. Requests hold a `Lease` on one version for their whole life, so a swap never
changes a request midway; the previous version stays loaded for an instant rollback.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Final

from pydantic import TypeAdapter, ValidationError

from lorafeed import failpoints
from lorafeed.adapter_store import AdapterStore, AdapterStoreError
from lorafeed.adapter_store import UnknownVersion as StoreUnknownVersion
from schemas.fields import Identifier, cut, show
from schemas.model_events import (
    AdapterPromoted,
    AdapterRolledBack,
)
from schemas.tasks import TaskConfig
from schemas.version import Version
from serving.engine import TaskEngine
from serving.errors import AdapterRefused, InvalidRequest, ServingError, UnknownTask, UnknownVersion
from serving.events_outbox import EventOutbox, Publish, activated, load_failed
from serving.registry_types import (
    BASE,
    PREVIOUS,
    Lease,
    NodePin,
    NullObserver,
    Previous,
    RegistryConfig,
    RegistryObserver,
    SwapOutcome,
    TaskState,
    TaskView,
)
from serving.verification import verified_manifest

log = logging.getLogger(__name__)
_IDENTIFIER: Final = TypeAdapter(Identifier)
__all__ = ["BASE", "PREVIOUS", "AdapterRegistry", "Lease", "RegistryConfig", "SwapOutcome"]
BEFORE_ACTIVATE: Final = failpoints.declare(
    "serving.before_activate", "new version loaded aside and smoke-tested, not yet routed"
)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class AdapterRegistry:
    """The serving node's view of every task's versions. Call `start` once on the event loop,
    then feed `on_event` from the events follower; handlers take `lease`s."""

    def __init__(
        self,
        store: AdapterStore,
        engines: Mapping[str, TaskEngine],
        node_id: str,
        publish: Publish,
        *,
        observer: RegistryObserver | None = None,
        config: RegistryConfig | None = None,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        try:
            _IDENTIFIER.validate_python(node_id)  # it goes into every event this node sends
        except ValidationError as exc:
            raise ValueError(f"node_id {show(node_id)} is not a valid identifier") from exc
        self._store = store
        self._engines = dict(engines)
        self._node_id = node_id
        self._observer = observer or NullObserver()
        self._config = config or RegistryConfig()
        self._clock = clock
        self._outbox = EventOutbox(publish)
        self._states = {task: TaskState() for task in self._engines}
        self._background: set[asyncio.Task[None]] = set()

    @property
    def tasks(self) -> Mapping[str, TaskConfig]:
        """The tasks served here, by name."""
        return {name: self._engines[name].task for name in sorted(self._engines)}

    def active_versions(self) -> dict[str, str | None]:
        """Task -> the version new requests get (None: the base model)."""
        return {name: self._states[name].active for name in sorted(self._states)}

    def engine(self, task: str) -> TaskEngine:
        self._state(task)
        return self._engines[task]

    def view(self, task: str) -> TaskView:
        """What `task` serves on this node now (for /v1/models, admin and metrics)."""
        st = self._state(task)
        return TaskView(
            task=task,
            active=st.active,
            manifest_sha256=st.digest,
            previous=st.previous,
            loaded=tuple(sorted(st.loaded, key=Version.parse)),
            pin=st.pin,
            leases=sum(st.leases.values()),
        )

    # --- following the pointer ---------------------------------------------------------------

    async def start(self) -> list[SwapOutcome]:
        """Load every task's champion (a refused one leaves the task on the base model)."""
        return await self.sync()

    async def sync(self, task: str | None = None, *, retry: bool = False) -> list[SwapOutcome]:
        """Re-read the champion pointer of `task` (default: all) and follow it. A version refused
        before is not retried until the pointer moves, unless `retry`."""
        tasks = list(self.tasks) if task is None else [task]
        return [await self._follow(name, retry=retry) for name in tasks]

    async def on_event(self, event: object) -> SwapOutcome:
        """Handle one `model.events` value: promotions and rollbacks make the task re-read its
        pointer; anything else, or an event for a task not served here, is ignored. Never
        raises for a bad event (the consumer must keep going)."""
        task = getattr(event, "task", None)
        if not isinstance(event, AdapterPromoted | AdapterRolledBack):
            reason = f"{type(event).__name__} does not move a champion"
            return SwapOutcome(str(task), "ignored", None, reason)
        if not isinstance(task, str) or task not in self._states:
            return SwapOutcome(str(task), "ignored", None, f"task {show(task)} is not served here")
        try:
            outcome = await self._follow(task)
        except Exception as exc:  # a consumer loop must survive anything one event causes
            log.exception("task %s: handling %s failed", task, type(event).__name__)
            return SwapOutcome(task, "failed", None, f"{type(exc).__name__}: {cut(str(exc), 300)}")
        if outcome.status == "unchanged" and event.version != outcome.version:
            reason = f"stale event for {show(event.version)}; the pointer names {outcome.version}"
            return SwapOutcome(task, "unchanged", outcome.version, reason)
        return outcome

    async def _follow(self, task: str, *, retry: bool = False) -> SwapOutcome:
        st = self._state(task)
        async with st.lock:
            if st.pin is not None:
                reason = f"pinned on this node at {st.pin.version} by {st.pin.actor}"
                return SwapOutcome(task, "ignored", st.active, reason)
            try:
                champion = await asyncio.to_thread(self._store.champion, task)
            except AdapterStoreError as exc:
                log.error("task %s: unreadable champion pointer: %s", task, exc)
                return SwapOutcome(task, "failed", st.active, str(exc))
            version = None if champion is None else champion.version
            digest = None if champion is None else champion.manifest_sha256
            if (version, digest) == (st.active, st.digest):
                return SwapOutcome(task, "unchanged", version, "already active")
            if not retry and st.refused is not None and st.refused[:2] == (version, digest):
                return SwapOutcome(task, "failed", version, f"refused before: {st.refused[2]}")
            return await self._load_and_activate(task, version, digest)

    async def _load_and_activate(
        self, task: str, version: str | None, digest: str | None
    ) -> SwapOutcome:
        st = self._states[task]
        try:
            if version is not None:
                digest = await self._ensure_loaded(task, version, digest)
                failpoints.failpoint(BEFORE_ACTIVATE)
        except Exception as exc:  # any failure to load leaves the old version serving
            reason = exc.reason if isinstance(exc, AdapterRefused) else str(exc)
            if not isinstance(exc, ServingError):
                log.exception("task %s: loading %s failed unexpectedly", task, version)
            assert version is not None
            st.refused = (version, digest, reason)
            self._observer.adapter_load_failed(task, version, reason)
            event = load_failed(task, self._node_id, version, digest, reason, self._clock())
            self._outbox.put(event)
            log.warning("task %s: %s refused, serving %s: %s", task, version, st.active, reason)
            return SwapOutcome(task, "failed", version, reason)
        await self._activate(task, version, digest)
        return SwapOutcome(task, "activated", version, "")

    async def _activate(self, task: str, version: str | None, digest: str | None) -> None:
        """Point new leases at loaded `version` (caller holds the task lock)."""
        st = self._states[task]
        if st.active != version:
            st.previous = st.active
        st.active, st.digest, st.refused = version, digest, None
        self._observer.adapter_activated(task, version)
        self._outbox.put(activated(task, self._node_id, version, digest, self._clock()))
        log.info("task %s: now serving %s (previous %s)", task, version, st.previous)
        await self._collect(task)

    async def _ensure_loaded(self, task: str, version: str, expected: str | None) -> str:
        """Load verified, compatible, smoke-tested `version` if needed; its manifest digest."""
        st, engine = self._states[task], self._engines[task]
        if version in st.loaded and expected in (None, st.loaded[version]):
            return st.loaded[version]
        manifest, digest, directory = await asyncio.to_thread(
            verified_manifest, self._store, engine, version, expected, self._config.max_rank
        )
        if version in st.loaded:  # same version, other digest: the store was rewritten
            await engine.unload(version)
            del st.loaded[version]
        await engine.load_adapter_aside(version, directory)
        try:
            await engine.smoke_check(version)
        except ServingError:
            await engine.unload(version)
            raise
        st.loaded[version] = digest
        log.info("task %s: loaded %s (%s files verified)", task, version, len(manifest.files))
        return digest

    async def _collect(self, task: str) -> None:
        """Unload versions nobody needs: not active, previous, pinned, leased or spare."""
        st = self._states[task]
        keep = {st.active, st.previous, *st.spare}
        keep |= {v for v, n in st.leases.items() if n > 0}
        if st.pin is not None:
            keep.add(st.pin.version)
        for version in [v for v in st.loaded if v not in keep]:
            del st.loaded[version]
            await self._engines[task].unload(version)
            log.info("task %s: unloaded %s", task, version)

    # --- requests ----------------------------------------------------------------------------

    @asynccontextmanager
    async def lease(self, task: str, version: str | None = None) -> AsyncIterator[Lease]:
        """Hold a version of `task` for one request: the active one (`version` None), the base
        model (`BASE`), or an explicit version, loaded (verified) from the store if needed."""
        st = self._state(task)
        if version is None:
            chosen = st.active
            st.leases[chosen] += 1  # no await since reading `active`: a swap cannot slip in
        elif version == BASE:
            chosen = None
            st.leases[chosen] += 1
        else:
            chosen = await self._lease_explicit(task, version)
        try:
            yield Lease(task, chosen, self._engines[task])
        finally:
            st.leases[chosen] -= 1
            if st.leases[chosen] <= 0:
                del st.leases[chosen]
                if chosen in st.loaded and chosen not in (st.active, st.previous):
                    self._spawn(self._collect_locked(task))

    async def _load_named(self, task: str, version: str) -> str:
        """`_ensure_loaded` for a version a caller named (task lock held): UnknownVersion if it
        is malformed or not in the store. Its manifest digest."""
        try:
            Version.parse(version)
        except (TypeError, ValueError) as exc:
            raise UnknownVersion(task, version, "not a MAJOR.MINOR.PATCH version") from exc
        try:
            return await self._ensure_loaded(task, version, None)
        except StoreUnknownVersion as exc:
            log.info("task %s: version %s requested, not in the store: %s", task, version, exc)
            # the store's message names server paths; the caller only learns it is not there
            raise UnknownVersion(task, version, "it is not in the adapter store") from exc

    async def _lease_explicit(self, task: str, version: str) -> str:
        st = self._state(task)
        async with st.lock:
            await self._load_named(task, version)
            if version in st.spare:
                st.spare.remove(version)
            st.spare.append(version)
            del st.spare[: len(st.spare) - self._config.spare]
            st.leases[version] += 1
        return version

    async def _collect_locked(self, task: str) -> None:
        async with self._states[task].lock:
            await self._collect(task)

    # --- node-local operator controls ---------------------------------------------------------

    async def pin(self, task: str, version: str | None, actor: str = "operator") -> SwapOutcome:
        """Serve `version` (None: base) on this node until `unpin`, ignoring the pointer.
        UnknownVersion / AdapterRefused if it cannot be loaded (nothing changes then)."""
        st = self._state(task)
        async with st.lock:
            digest = None if version is None else await self._load_named(task, version)
            st.pin = NodePin(version=version, actor=actor, at=self._clock())
            if (version, digest) != (st.active, st.digest):
                await self._activate(task, version, digest)
            return SwapOutcome(task, "activated", version, f"pinned by {actor}")

    async def unpin(self, task: str, actor: str = "operator") -> SwapOutcome:
        """Drop this node's pin of `task` and follow the champion pointer again."""
        st = self._state(task)
        if st.pin is not None:
            log.info("task %s: unpinned by %s (was %s)", task, actor, st.pin.version)
        st.pin = None
        return await self._follow(task, retry=True)

    async def rollback(
        self, task: str, to_version: str | None | Previous = PREVIOUS, actor: str = "operator"
    ) -> SwapOutcome:
        """Pin this node to an earlier version (None: base) than the active one; by default
        the previous one, still loaded, so the switch is instant."""
        st = self._state(task)
        active = st.active
        if isinstance(to_version, Previous):
            to_version = st.previous
        if active is None or (
            to_version is not None and Version.parse(to_version) >= Version.parse(active)
        ):
            raise InvalidRequest(
                f"cannot roll task {task!r} back from {active} to {to_version}: not earlier"
            )
        return await self.pin(task, to_version, actor)

    # --- lifecycle -----------------------------------------------------------------------------

    async def flush(self) -> None:
        """Wait until queued model events are published and unloads are done (tests, shutdown)."""
        while self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        await self._outbox.flush()

    async def close(self) -> None:
        await self.flush()
        await self._outbox.close()

    def _state(self, task: str) -> TaskState:
        try:
            return self._states[task]
        except (KeyError, TypeError):
            raise UnknownTask(task, list(self.tasks)) from None

    def _spawn(self, work: Awaitable[None]) -> None:
        future = asyncio.ensure_future(work)
        self._background.add(future)
        future.add_done_callback(self._background.discard)
