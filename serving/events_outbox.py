"""The registry's model events (AdapterActivated, AdapterLoadFailed): built here and published
in order on one background task, so a slow or failing broker never holds up an adapter swap."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime

from schemas.fields import cut
from schemas.model_events import AdapterActivated, AdapterLoadFailed, ModelEventBase

log = logging.getLogger(__name__)

Publish = Callable[[ModelEventBase], Awaitable[None]]
"""Sends one model event to `model.events` and returns once the broker has it (or raises)."""


class EventOutbox:
    """A bounded in-order queue in front of `publish`; a failed publish is logged and dropped
    (the pointer stays the truth; these events only inform)."""

    def __init__(self, publish: Publish, max_pending: int = 1000) -> None:
        self._publish = publish
        self._max_pending = max_pending
        self._queue: asyncio.Queue[ModelEventBase] | None = None
        self._worker: asyncio.Task[None] | None = None

    def put(self, event: ModelEventBase) -> None:
        """Queue `event` (call on the event loop); the oldest is dropped when the queue is full."""
        if self._queue is None:
            self._queue = asyncio.Queue()
        if self._queue.qsize() >= self._max_pending:
            dropped = self._queue.get_nowait()
            self._queue.task_done()
            kind = type(dropped).__name__
            log.error("model event outbox full: dropped %s for %s", kind, dropped.task)
        self._queue.put_nowait(event)
        if self._worker is None or self._worker.done():
            self._worker = asyncio.get_running_loop().create_task(self._run(self._queue))

    async def flush(self) -> None:
        """Wait until every queued event was published (or failed)."""
        if self._queue is not None:
            await self._queue.join()

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker

    async def _run(self, queue: asyncio.Queue[ModelEventBase]) -> None:
        while True:
            event = await queue.get()
            try:
                await self._publish(event)
            except Exception:  # informational events: log and go on
                log.exception("publishing %s for task %s failed", type(event).__name__, event.task)
            finally:
                queue.task_done()


def activated(
    task: str, node: str, version: str | None, digest: str | None, at: datetime
) -> AdapterActivated:
    """`node` now answers `task` with `version` (None: base), whose manifest has `digest`."""
    return AdapterActivated(
        schema_version=1,
        event_id=uuid.uuid4().hex,
        task=task,
        occurred_at=at,
        node=node,
        version=version,
        manifest_sha256=digest,
    )


def load_failed(
    task: str, node: str, version: str, digest: str | None, reason: str, at: datetime
) -> AdapterLoadFailed:
    """`node` refused `version` of `task` for `reason` and kept its previous version."""
    return AdapterLoadFailed(
        schema_version=1,
        event_id=uuid.uuid4().hex,
        task=task,
        occurred_at=at,
        node=node,
        version=version,
        manifest_sha256=digest,
        reason=cut(reason, 1000),
    )
