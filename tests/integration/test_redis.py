"""Redis through the client factory: SET NX dedup with TTL, including racing writers."""

from __future__ import annotations

import threading
import uuid

import pytest

from lorafeed.stores import make_redis
from tests.support.stack import RunningStack

pytestmark = pytest.mark.integration


def test_set_nx_dedup_keeps_the_first_owner_with_a_ttl(stack: RunningStack) -> None:
    client = make_redis(stack.redis_url)
    key = f"{stack.prefix}dedup:{uuid.uuid4().hex}"
    assert client.set(key, b"record-1", nx=True, ex=60)
    assert not client.set(key, b"record-2", nx=True, ex=60)
    assert client.get(key) == b"record-1"
    assert 0 < client.ttl(key) <= 60


def test_racing_writers_have_exactly_one_winner(stack: RunningStack) -> None:
    key = f"{stack.prefix}dedup:{uuid.uuid4().hex}"
    barrier = threading.Barrier(8)
    winners: list[str] = []
    lock = threading.Lock()

    def claim(owner: str) -> None:
        client = make_redis(stack.redis_url)
        barrier.wait()
        if client.set(key, owner.encode(), nx=True, ex=60):
            with lock:
                winners.append(owner)

    threads = [threading.Thread(target=claim, args=(f"worker-{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(winners) == 1
    assert make_redis(stack.redis_url).get(key) == winners[0].encode()


def test_an_expired_key_can_be_claimed_again(stack: RunningStack) -> None:
    client = make_redis(stack.redis_url)
    key = f"{stack.prefix}dedup:{uuid.uuid4().hex}"
    assert client.set(key, b"a", nx=True, px=50)
    client.pexpire(key, 1)
    # Redis expires lazily: a read after the TTL sees no key.
    import time

    time.sleep(0.05)
    assert client.get(key) is None
    assert client.set(key, b"b", nx=True, ex=60)
