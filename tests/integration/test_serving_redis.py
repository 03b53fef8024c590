"""Serving's Redis state on a real Redis: contexts with TTL (stored pseudonymized), the feedback
claim scripts under racing requests, and the shared per-key rate limit window."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest
import redis.asyncio as aioredis

from lorafeed.privacy import Pseudonymizer
from schemas.feedback import ChatMessage
from serving.contexts import (
    ClaimConflict,
    ClaimInProgress,
    ClaimNew,
    ClaimSame,
    ContextStore,
    ServedContext,
)
from serving.http_errors import StoreUnavailable
from serving.ratelimit import RedisRateLimiter
from tests.support.stack import RunningStack

pytestmark = pytest.mark.integration
NOW = datetime(2025, 1, 1, tzinfo=UTC)
SHA, OTHER = "a" * 64, "b" * 64


def store(stack: RunningStack, client: aioredis.Redis, pending_ttl_s: float = 60) -> ContextStore:
    prefix = f"{stack.prefix}serving:{uuid.uuid4().hex[:8]}:"
    return ContextStore(client, Pseudonymizer(b"k" * 32), prefix=prefix,
                        pending_ttl_s=pending_ttl_s)


def test_contexts_are_stored_pseudonymized_with_a_ttl(stack: RunningStack) -> None:
    async def main() -> None:
        client = aioredis.Redis.from_url(stack.redis_url)
        contexts = store(stack, client)
        served = ServedContext(task="support", kind="chat", adapter_version="1.0.0",
                               served_at=NOW, output="ok",
                               input=[ChatMessage(role="user", content="I am ann@example.com")])
        await contexts.put("req-1", served, ttl_s=30)
        raw = await client.get(f"{contexts.prefix}ctx:req-1")
        assert raw is not None and b"ann@example.com" not in raw
        assert 0 < await client.ttl(f"{contexts.prefix}ctx:req-1") <= 30
        found = await contexts.get("req-1")
        assert found is not None and found.output == "ok" and found.served_at == NOW
        assert await contexts.get("req-unknown") is None
        assert await contexts.ping() == ""
        await client.aclose()

    asyncio.run(main())


def test_claims_have_one_winner_and_replay_the_original_answer(stack: RunningStack) -> None:
    async def main() -> None:
        client = aioredis.Redis.from_url(stack.redis_url)
        contexts = store(stack, client)
        key = ("req-1", "rating", "agent")
        outcomes = await asyncio.gather(*(contexts.claim(*key, SHA) for _ in range(20)))
        assert sum(isinstance(o, ClaimNew) for o in outcomes) == 1
        assert all(isinstance(o, ClaimNew | ClaimInProgress) for o in outcomes)
        assert isinstance(await contexts.claim(*key, OTHER), ClaimConflict)
        await contexts.release(*key, OTHER)  # not the owner's digest: nothing happens
        assert isinstance(await contexts.claim(*key, SHA), ClaimInProgress)
        await contexts.complete(*key, SHA, {"status": "accepted"}, ttl_s=60)
        assert await contexts.claim(*key, SHA) == ClaimSame({"status": "accepted"})
        await contexts.release(*key, SHA)  # done records are never released
        assert await contexts.claim(*key, SHA) == ClaimSame({"status": "accepted"})
        assert isinstance(await contexts.claim(*key, OTHER), ClaimConflict)
        await client.aclose()

    asyncio.run(main())


def test_a_released_or_expired_pending_claim_can_be_claimed_again(stack: RunningStack) -> None:
    async def main() -> None:
        client = aioredis.Redis.from_url(stack.redis_url)
        contexts = store(stack, client, pending_ttl_s=0.2)
        assert isinstance(await contexts.claim("r", "label", None, SHA), ClaimNew)
        await contexts.release("r", "label", None, SHA)
        assert isinstance(await contexts.claim("r", "label", None, OTHER), ClaimNew)
        await asyncio.sleep(0.4)  # the owner crashed: its pending claim expires
        assert isinstance(await contexts.claim("r", "label", None, SHA), ClaimNew)
        await client.aclose()

    asyncio.run(main())


def test_rate_limit_window_is_shared_and_expires(stack: RunningStack) -> None:
    async def main() -> None:
        client = aioredis.Redis.from_url(stack.redis_url)
        prefix = f"{stack.prefix}rl-test:{uuid.uuid4().hex[:8]}:"
        node_a = RedisRateLimiter(client, limit=3, window_s=0.5, prefix=prefix)
        node_b = RedisRateLimiter(client, limit=3, window_s=0.5, prefix=prefix)
        decisions = [await limiter.hit("app") for limiter in (node_a, node_b, node_a, node_b)]
        assert [d.allowed for d in decisions] == [True, True, True, False]
        assert decisions[-1].retry_after_s == 1
        assert (await node_a.hit("other-key")).allowed
        await asyncio.sleep(0.6)
        assert (await node_b.hit("app")).allowed
        await client.aclose()

    asyncio.run(main())


def test_redis_down_is_store_unavailable() -> None:
    async def main() -> None:
        client = aioredis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
        contexts = ContextStore(client, Pseudonymizer(b"k" * 32))
        with pytest.raises(StoreUnavailable, match="Redis failed"):
            await contexts.get("r")
        assert (await contexts.ping()).startswith("redis:")
        with pytest.raises(StoreUnavailable):
            await RedisRateLimiter(client, limit=1).hit("app")
        await client.aclose()

    asyncio.run(main())
