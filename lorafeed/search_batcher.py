"""`SearchBatcher`: merges concurrent `search` calls from many threads into batched
`Retriever.search_many` calls, for serving."""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass

from lorafeed.retrieval import (
    FilterError,
    FilterSpec,
    Hit,
    Mode,
    RetrievalError,
    Retriever,
    build_filter,
)


@dataclass
class _Request:
    query: str
    top_k: int | None
    filter: FilterSpec | None
    mode: Mode | None
    future: Future[list[Hit]]


class SearchBatcher:
    """Collects `search` calls from many threads into `Retriever.search_many` calls: a
    background thread takes up to ``max_batch`` requests arriving within ``max_wait_ms`` of
    the first and sends one call per distinct (mode, filter). `close` stops the thread."""

    def __init__(self, retriever: Retriever, max_batch: int = 32, max_wait_ms: float = 5.0) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch!r}")
        if not 0 <= max_wait_ms <= 10_000:
            raise ValueError(f"max_wait_ms must be in [0, 10000], got {max_wait_ms!r}")
        self.retriever = retriever
        self.max_batch = max_batch
        self.max_wait_s = max_wait_ms / 1000
        self._queue: queue.SimpleQueue[_Request | None] = queue.SimpleQueue()
        self._closed = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="search-batcher", daemon=True)
        self._thread.start()

    def search(
        self, query: str, *, top_k: int | None = None, filter: FilterSpec | None = None,
        mode: Mode | None = None, timeout: float | None = None,
    ) -> list[Hit]:
        """Like `Retriever.search`, but batched with concurrent callers."""
        future: Future[list[Hit]] = Future()
        with self._lock:
            if self._closed:
                raise RetrievalError("the search batcher is closed")
            self._queue.put(_Request(query, top_k, filter, mode, future))
        return future.result(timeout)

    def close(self, timeout: float | None = 10.0) -> None:
        """Finish the requests already queued, then stop the thread (idempotent)."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._queue.put(None)
        self._thread.join(timeout)

    def __enter__(self) -> SearchBatcher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch, stop = self._collect(first)
            self._dispatch(batch)
            if stop:
                return

    def _collect(self, first: _Request) -> tuple[list[_Request], bool]:
        """``first`` and whatever else arrives before the wait ends or the batch is full."""
        batch, deadline = [first], time.monotonic() + self.max_wait_s
        while len(batch) < self.max_batch:
            remaining = deadline - time.monotonic()
            try:
                item = (self._queue.get(timeout=remaining) if remaining > 0
                        else self._queue.get_nowait())
            except queue.Empty:
                break
            if item is None:
                return batch, True
            batch.append(item)
        return batch, False

    def _dispatch(self, batch: list[_Request]) -> None:
        groups: dict[tuple[str, str], list[_Request]] = {}
        for request in batch:
            try:
                key = (request.mode or self.retriever.config.mode, build_filter(request.filter))
            except FilterError as exc:
                request.future.set_exception(exc)
                continue
            groups.setdefault(key, []).append(request)
        for (mode, _expr), requests in groups.items():
            k = max(r.top_k or self.retriever.config.top_k for r in requests)
            try:
                results = self.retriever.search_many(
                    [r.query for r in requests], top_k=k, filter=requests[0].filter,
                    mode=mode,  # type: ignore[arg-type]
                )
            except Exception as exc:  # every caller of the group sees the failure
                for request in requests:
                    request.future.set_exception(exc)
                continue
            for request, hits in zip(requests, results, strict=True):
                request.future.set_result(hits[: request.top_k or self.retriever.config.top_k])
