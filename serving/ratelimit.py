"""Per-key request limits: a fixed window counter in Redis shared by every serving node. One Lua
call increments the counter, starts the window on the first hit and returns the count and the
milliseconds left, so nodes never race on the expiry.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from serving.http_errors import StoreUnavailable

_HIT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 or redis.call('PTTL', KEYS[1]) < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return {count, redis.call('PTTL', KEYS[1])}
"""


@dataclass(frozen=True)
class RateDecision:
    """Whether a request may pass; ``retry_after_s`` is meaningful only when it may not."""

    allowed: bool
    limit: int
    remaining: int
    retry_after_s: int


def retry_after_seconds(milliseconds: float) -> int:
    """Whole seconds to wait, at least 1 (Retry-After takes integers)."""
    return max(1, math.ceil(milliseconds / 1000))


def decide(count: int, window_left_ms: int, limit: int, window_ms: int) -> RateDecision:
    """The decision for the ``count``-th request of a window with ``window_left_ms`` to go."""
    left = window_left_ms if window_left_ms > 0 else window_ms
    return RateDecision(
        allowed=count <= limit,
        limit=limit,
        remaining=max(0, limit - count),
        retry_after_s=retry_after_seconds(left),
    )


class RateLimiter(Protocol):
    """Counts one request of ``name`` and decides whether it may pass."""

    async def hit(self, name: str) -> RateDecision: ...


class RedisRateLimiter:
    """``limit`` requests per key per ``window_s``, counted in Redis under ``prefix``."""

    def __init__(
        self, client: aioredis.Redis, *, limit: int, window_s: float = 60.0, prefix: str = ""
    ) -> None:
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit!r}")
        if window_s <= 0:
            raise ValueError(f"window_s must be > 0, got {window_s!r}")
        self.client = client
        self.limit = limit
        self.window_ms = int(window_s * 1000)
        self.prefix = prefix
        self._script = client.register_script(_HIT)

    def key(self, name: str) -> str:
        # hashed: key names are free text, Redis keys should stay short and printable
        return f"{self.prefix}rl:{hashlib.sha256(name.encode()).hexdigest()[:32]}"

    async def hit(self, name: str) -> RateDecision:
        try:
            count, left = await self._script(keys=[self.key(name)], args=[self.window_ms])
        except RedisError as exc:
            raise StoreUnavailable(f"rate limiter: Redis failed: {exc}") from exc
        return decide(int(count), int(left), self.limit, self.window_ms)
