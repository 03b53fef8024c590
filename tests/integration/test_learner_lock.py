"""TaskLock on real Redis: one owner at a time, owner-checked renew/release, takeover on expiry."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from learner.errors import LockLost
from learner.lock import TaskLock
from lorafeed.stores import make_redis
from tests.support.stack import RunningStack

pytestmark = pytest.mark.integration


def locks(stack: RunningStack, ttl: float, owners: int = 2) -> list[TaskLock]:
    prefix = f"{stack.prefix}lock:{uuid.uuid4().hex}:"
    return [
        TaskLock(make_redis(stack.redis_url), "qa", f"learner-{i}", ttl, prefix=prefix)
        for i in range(owners)
    ]


def test_second_owner_waits_until_release(stack: RunningStack) -> None:
    first, second = locks(stack, ttl=30)
    assert first.acquire()
    assert first.acquire()  # re-entrant for the same owner (a renew)
    assert not second.acquire()
    assert first.is_held() and not second.is_held()
    assert second.holder() == "learner-0"
    assert not second.release()  # cannot delete another owner's lock
    assert not second.renew()
    assert first.holder() == "learner-0"
    assert first.release()
    assert second.acquire() and second.is_held()
    assert not first.release()
    second.release()


def test_expired_lock_is_taken_over_and_the_old_owner_cannot_touch_it(
    stack: RunningStack,
) -> None:
    first, second = locks(stack, ttl=0.3)
    assert first.acquire()
    assert not second.acquire()
    time.sleep(0.45)
    assert second.acquire()
    assert not first.renew()
    assert not first.release()
    with pytest.raises(LockLost, match="learner-1"):
        first.ensure()
    assert second.holder() == "learner-1"
    second.release()


def test_renew_extends_the_ttl(stack: RunningStack) -> None:
    first, second = locks(stack, ttl=0.4)
    assert first.acquire()
    for _ in range(4):
        time.sleep(0.2)
        first.ensure()
    assert not second.acquire()  # 0.8 s later, still held thanks to renewals
    client = make_redis(stack.redis_url)
    assert 0 < client.pttl(first.key) <= 400
    first.release()
    assert client.exists(first.key) == 0


def test_racing_owners_have_exactly_one_winner(stack: RunningStack) -> None:
    contenders = locks(stack, ttl=30, owners=8)
    barrier = threading.Barrier(len(contenders))
    winners: list[str] = []
    guard = threading.Lock()

    def race(lock: TaskLock) -> None:
        barrier.wait()
        if lock.acquire():
            with guard:
                winners.append(lock.owner)

    threads = [threading.Thread(target=race, args=(lock,)) for lock in contenders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(winners) == 1
    assert contenders[0].holder() == winners[0]
    assert [lock.owner for lock in contenders if lock.is_held()] == winners


def test_bad_arguments_are_rejected(stack: RunningStack) -> None:
    client = make_redis(stack.redis_url)
    with pytest.raises(ValueError, match="ttl_seconds 0"):
        TaskLock(client, "qa", "me", 0)
    with pytest.raises(ValueError, match="owner"):
        TaskLock(client, "qa", "", 10)
