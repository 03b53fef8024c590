"""Micro-batching for model calls: merges concurrent `submit` calls on one event loop into
batched calls of a synchronous ``fn`` that runs on a single model-owner thread.

Contract: a group is sent when it holds ``max_batch`` items or ``max_wait_ms`` after its first
item was queued; ``fn(items)`` returns one result per item, in order; batches never run
concurrently (one worker thread, shareable with other model work such as adapter swaps); an
exception from ``fn`` fails exactly that batch's submitters; a full queue raises `QueueFull` at
once; a cancelled submitter is skipped. Create, use and close a batcher on a single loop.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

In = TypeVar("In")
Out = TypeVar("Out")


class MicroBatchError(RuntimeError):
    """Base error of the micro-batcher."""


class QueueFull(MicroBatchError):
    """Too many items are waiting; serving answers 503 with Retry-After."""


class BatcherClosed(MicroBatchError):
    """`submit` after `close`, or the item was cancelled by a non-draining close."""


class BatchSizeMismatch(MicroBatchError):
    """``fn`` returned a different number of results than it was given items."""


@dataclass(frozen=True)
class MicroBatchConfig:
    """Knobs of the micro-batcher.

    max_batch: items per ``fn`` call at most (default 16).
    max_wait_ms: how long the first item of a group waits for company (default 4 ms).
    max_queue: items waiting (not yet sent to ``fn``) before `submit` raises QueueFull (1024).
    """

    max_batch: int = 16
    max_wait_ms: float = 4.0
    max_queue: int = 1024

    def __post_init__(self) -> None:
        if self.max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {self.max_batch!r}")
        if not 0 <= self.max_wait_ms <= 10_000:
            raise ValueError(f"max_wait_ms must be in [0, 10000], got {self.max_wait_ms!r}")
        if self.max_queue < 1:
            raise ValueError(f"max_queue must be >= 1, got {self.max_queue!r}")


@dataclass
class _Job(Generic[In, Out]):
    item: In
    future: asyncio.Future[Out]
    queued_at: float


class MicroBatcher(Generic[In, Out]):
    """Batches ``submit(item)`` calls into ``fn(items)`` calls on one worker thread.

    ``executor`` may be shared with other work that must not overlap a forward pass (it should
    have a single thread); a batcher only shuts down the executor it created itself.
    """

    def __init__(
        self,
        fn: Callable[[list[In]], list[Out]],
        config: MicroBatchConfig | None = None,
        *,
        executor: Executor | None = None,
    ) -> None:
        self.fn = fn
        self.config = config or MicroBatchConfig()
        self._owns_executor = executor is None
        self._executor = executor or ThreadPoolExecutor(1, thread_name_prefix="model-owner")
        self._pending: collections.deque[_Job[In, Out]] = collections.deque()
        self._inflight: list[_Job[In, Out]] = []
        self._wakeup = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    @property
    def pending(self) -> int:
        """Items queued and not yet sent to ``fn`` (a gauge for metrics)."""
        return len(self._pending)

    async def submit(self, item: In) -> Out:
        """``fn``'s result for ``item``, computed in a batch with concurrent submissions."""
        loop = self._bind_loop()
        if self._closed:
            raise BatcherClosed("the micro-batcher is closed")
        if len(self._pending) >= self.config.max_queue:
            raise QueueFull(
                f"micro-batch queue is full: {len(self._pending)} items waiting, "
                f"max_queue={self.config.max_queue}"
            )
        job: _Job[In, Out] = _Job(item, loop.create_future(), loop.time())
        self._pending.append(job)
        self._wakeup.set()
        if self._worker is None:
            self._worker = loop.create_task(self._run(), name="micro-batcher")
        return await job.future

    async def close(self, *, drain: bool = True) -> None:
        """Stops accepting items; with ``drain`` runs what is queued, else cancels it (and the
        batch in flight, whose ``fn`` call still finishes on its thread)."""
        self._closed = True
        self._wakeup.set()
        if not drain and self._worker is not None:
            self._worker.cancel()
        if self._worker is not None:
            await asyncio.gather(self._worker, return_exceptions=True)
        for job in [*self._inflight, *self._pending]:
            if not job.future.done():
                job.future.set_exception(BatcherClosed("the micro-batcher closed before this ran"))
        self._pending.clear()
        if self._owns_executor:
            self._executor.shutdown(wait=drain, cancel_futures=True)

    async def __aenter__(self) -> MicroBatcher[In, Out]:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def _bind_loop(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        elif self._loop is not loop:
            raise MicroBatchError("a micro-batcher is bound to the event loop it first ran on")
        return loop

    async def _run(self) -> None:
        """The worker: waits for a group to fill or time out, then runs it; exits when closed
        and drained."""
        while self._pending or not self._closed:
            if not self._pending:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            await self._gather_group()
            batch = self._take_batch()
            if batch:
                await self._run_batch(batch)

    async def _gather_group(self) -> None:
        """Returns once ``max_batch`` items wait, the first one's wait is over, or on close."""
        loop = asyncio.get_running_loop()
        deadline = self._pending[0].queued_at + self.config.max_wait_ms / 1000
        while len(self._pending) < self.config.max_batch and not self._closed:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except TimeoutError:
                return

    def _take_batch(self) -> list[_Job[In, Out]]:
        batch: list[_Job[In, Out]] = []
        while self._pending and len(batch) < self.config.max_batch:
            job = self._pending.popleft()
            if not job.future.done():  # a cancelled submitter costs the model nothing
                batch.append(job)
        return batch

    async def _run_batch(self, batch: list[_Job[In, Out]]) -> None:
        loop = asyncio.get_running_loop()
        self._inflight = batch
        try:
            results = await loop.run_in_executor(self._executor, self.fn, [j.item for j in batch])
            if len(results) != len(batch):
                raise BatchSizeMismatch(
                    f"fn returned {len(results)} results for a batch of {len(batch)} items"
                )
        except Exception as exc:  # the batch's callers get the error; the worker lives on
            self._inflight = []
            for job in batch:
                if not job.future.done():
                    job.future.set_exception(exc)
            return
        # on cancellation (non-draining close) _inflight stays set so close() can fail it
        self._inflight = []
        for job, result in zip(batch, results, strict=True):
            if not job.future.done():
                job.future.set_result(result)
