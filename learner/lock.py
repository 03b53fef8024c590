"""Per-task learner lock in Redis: one learner trains a task at a time, across processes.

SET NX PX acquires; renew and release run Lua that checks the owner first, so a learner whose
lock expired and was taken over can never extend or delete the new owner's lock.
"""

from __future__ import annotations

from typing import Final

import redis

from learner.errors import LockLost

DEFAULT_PREFIX: Final = "lorafeed:learner:lock:"

_RENEW: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""


class TaskLock:
    """The lock on `task` held as `owner` (unique per learner process) for `ttl_seconds`."""

    def __init__(
        self,
        client: redis.Redis,
        task: str,
        owner: str,
        ttl_seconds: float,
        *,
        prefix: str = DEFAULT_PREFIX,
    ) -> None:
        if ttl_seconds <= 0:
            raise ValueError(f"lock ttl_seconds {ttl_seconds!r} must be positive")
        if not owner:
            raise ValueError("lock owner must not be empty")
        self.key = f"{prefix}{task}"
        self.owner = owner
        self.ttl_ms = max(1, int(ttl_seconds * 1000))
        self._client = client
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)

    def acquire(self) -> bool:
        """Take the lock if free (True); an owner that already holds it just renews."""
        if self._client.set(self.key, self.owner.encode(), nx=True, px=self.ttl_ms):
            return True
        return self.renew()

    def renew(self) -> bool:
        """Extend the lock to a full ttl if this owner still holds it."""
        return bool(self._renew(keys=[self.key], args=[self.owner, self.ttl_ms]))

    def ensure(self) -> None:
        """Renew, or raise `LockLost` naming the current holder."""
        if not self.renew():
            raise LockLost(
                f"lock {self.key} is no longer held by {self.owner!r} (holder: {self.holder()!r})"
            )

    def release(self) -> bool:
        """Delete the lock if this owner holds it (True); never deletes another owner's lock."""
        return bool(self._release(keys=[self.key], args=[self.owner]))

    def holder(self) -> str | None:
        """The current owner, or None when free."""
        value = self._client.get(self.key)
        if value is None:
            return None
        return value.decode() if isinstance(value, bytes) else str(value)

    def is_held(self) -> bool:
        """Whether this owner holds the lock right now."""
        return self.holder() == self.owner
