"""Micro-batcher: grouping, routing, error isolation, back-pressure, one model-owner thread."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from serving.microbatch import (
    BatcherClosed,
    BatchSizeMismatch,
    MicroBatchConfig,
    MicroBatcher,
    QueueFull,
)


class FakeModel:
    """Doubles its inputs; records batches, and how many calls overlapped."""

    def __init__(self, delay_s: float = 0.0, fail_on: int | None = None) -> None:
        self.batches: list[list[int]] = []
        self.threads: set[str] = set()
        self.max_active = 0
        self.delay_s = delay_s
        self.fail_on = fail_on
        self.release = threading.Event()
        self.release.set()
        self.started = threading.Event()
        self._active = 0
        self._lock = threading.Lock()

    def __call__(self, items: list[int]) -> list[int]:
        with self._lock:
            self._active += 1
            self.max_active = max(self.max_active, self._active)
        try:
            self.started.set()
            self.release.wait(5)
            time.sleep(self.delay_s)
            self.batches.append(list(items))
            self.threads.add(threading.current_thread().name)
            if self.fail_on is not None and self.fail_on in items:
                raise ValueError(f"bad item {self.fail_on}")
            return [2 * item for item in items]
        finally:
            with self._lock:
                self._active -= 1


def test_concurrent_submits_are_batched_and_routed() -> None:
    model = FakeModel()

    async def main() -> list[int]:
        async with MicroBatcher(model, MicroBatchConfig(max_batch=16, max_wait_ms=50)) as batcher:
            return await asyncio.gather(*(batcher.submit(i) for i in range(64)))

    assert asyncio.run(main()) == [2 * i for i in range(64)]
    assert len(model.batches) <= 5
    assert all(len(batch) <= 16 for batch in model.batches)
    assert sorted(i for batch in model.batches for i in batch) == list(range(64))


def test_a_lone_item_runs_after_max_wait_without_company() -> None:
    model = FakeModel()

    async def main() -> None:
        async with MicroBatcher(model, MicroBatchConfig(max_batch=16, max_wait_ms=2)) as batcher:
            assert await batcher.submit(1) == 2
            await asyncio.sleep(0.05)
            assert await asyncio.gather(batcher.submit(2), batcher.submit(3)) == [4, 6]

    asyncio.run(main())
    assert model.batches == [[1], [2, 3]]


def test_items_within_max_wait_share_a_batch() -> None:
    model = FakeModel()

    async def late(batcher: MicroBatcher[int, int]) -> int:
        await asyncio.sleep(0.01)
        return await batcher.submit(2)

    async def main() -> None:
        async with MicroBatcher(model, MicroBatchConfig(max_wait_ms=2_000, max_batch=2)) as b:
            assert await asyncio.gather(b.submit(1), late(b)) == [2, 4]

    asyncio.run(main())
    assert model.batches == [[1, 2]]


def test_an_fn_error_fails_only_its_own_batch() -> None:
    model = FakeModel(fail_on=5)

    async def main() -> list[int | BaseException]:
        async with MicroBatcher(model, MicroBatchConfig(max_batch=4, max_wait_ms=50)) as batcher:
            return await asyncio.gather(
                *(batcher.submit(i) for i in range(12)), return_exceptions=True
            )

    results = asyncio.run(main())
    failed_batch = next(batch for batch in model.batches if 5 in batch)
    for item, result in enumerate(results):
        if item in failed_batch:
            assert isinstance(result, ValueError) and str(result) == "bad item 5"
        else:
            assert result == 2 * item


def test_a_wrong_number_of_results_fails_the_batch() -> None:
    async def main() -> None:
        async with MicroBatcher(lambda items: items[:1], MicroBatchConfig(max_wait_ms=50)) as b:
            with pytest.raises(BatchSizeMismatch, match="1 results for a batch of 2"):
                await asyncio.gather(b.submit(1), b.submit(2))

    asyncio.run(main())


def test_a_full_queue_refuses_at_once_and_the_rest_still_complete() -> None:
    model = FakeModel()
    model.release.clear()

    async def main() -> None:
        config = MicroBatchConfig(max_batch=1, max_wait_ms=0, max_queue=3)
        async with MicroBatcher(model, config) as batcher:
            first = asyncio.ensure_future(batcher.submit(0))
            assert await asyncio.to_thread(model.started.wait, 5)  # item 0 is now in flight
            queued = [asyncio.ensure_future(batcher.submit(i)) for i in (1, 2, 3)]
            await asyncio.sleep(0)
            assert batcher.pending == 3
            with pytest.raises(QueueFull, match="3 items waiting, max_queue=3"):
                await batcher.submit(4)
            model.release.set()
            assert await asyncio.gather(first, *queued) == [0, 2, 4, 6]

    asyncio.run(main())


def test_fn_never_runs_concurrently_with_itself() -> None:
    model = FakeModel(delay_s=0.002)

    async def client(batcher: MicroBatcher[int, int], start: int) -> list[int]:
        results = []
        for i in range(start, start + 5):
            results.append(await batcher.submit(i))
            await asyncio.sleep(0.001)
        return results

    async def main() -> list[list[int]]:
        async with MicroBatcher(model, MicroBatchConfig(max_batch=4, max_wait_ms=1)) as batcher:
            return await asyncio.gather(*(client(batcher, 10 * c) for c in range(8)))

    results = asyncio.run(main())
    assert results == [[2 * i for i in range(10 * c, 10 * c + 5)] for c in range(8)]
    assert model.max_active == 1
    assert len(model.threads) == 1 and len(model.batches) > 1


def test_a_cancelled_submitter_does_not_break_the_batch() -> None:
    model = FakeModel()
    model.release.clear()

    async def main() -> None:
        async with MicroBatcher(model, MicroBatchConfig(max_batch=1, max_wait_ms=0)) as batcher:
            first = asyncio.ensure_future(batcher.submit(0))
            assert await asyncio.to_thread(model.started.wait, 5)
            queued = [asyncio.ensure_future(batcher.submit(i)) for i in (1, 2, 3)]
            await asyncio.sleep(0)
            first.cancel()  # in flight
            queued[1].cancel()  # still waiting: never reaches the model
            model.release.set()
            assert await asyncio.gather(queued[0], queued[2]) == [2, 6]
            assert await batcher.submit(4) == 8

    asyncio.run(main())
    assert model.batches == [[0], [1], [3], [4]]


def test_close_drains_queued_items_then_refuses_new_ones() -> None:
    model = FakeModel()

    async def main() -> None:
        batcher = MicroBatcher(model, MicroBatchConfig(max_batch=8, max_wait_ms=5_000))
        pending = [asyncio.ensure_future(batcher.submit(i)) for i in range(3)]
        await asyncio.sleep(0)
        await batcher.close()  # does not wait out max_wait_ms
        assert await asyncio.gather(*pending) == [0, 2, 4]
        with pytest.raises(BatcherClosed):
            await batcher.submit(9)

    asyncio.run(asyncio.wait_for(main(), 2))


def test_close_without_drain_cancels_queued_items() -> None:
    model = FakeModel()
    model.release.clear()

    async def main() -> None:
        batcher = MicroBatcher(model, MicroBatchConfig(max_batch=1, max_wait_ms=0))
        jobs = [asyncio.ensure_future(batcher.submit(i)) for i in range(3)]
        assert await asyncio.to_thread(model.started.wait, 5)
        closing = asyncio.ensure_future(batcher.close(drain=False))
        await asyncio.sleep(0.01)
        model.release.set()
        await closing
        results = await asyncio.gather(*jobs, return_exceptions=True)
        assert all(isinstance(result, BatcherClosed) for result in results)

    asyncio.run(main())
    assert model.batches == [[0]]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"max_batch": 0}, "max_batch"), ({"max_wait_ms": -1.0}, "max_wait_ms"),
     ({"max_queue": 0}, "max_queue")],
)
def test_config_is_validated(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        MicroBatchConfig(**kwargs)  # type: ignore[arg-type]
