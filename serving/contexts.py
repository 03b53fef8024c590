"""What was served, pseudonymized in Redis by request id for later feedback, and the feedback
idempotency records: a claim is pending while its event is published (short TTL, so a crash
cannot wedge the key), then done with the original response, or released on failure.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Literal

import redis.asyncio as aioredis
from pydantic import Field, ValidationError
from redis.exceptions import RedisError

from lorafeed.privacy import Pseudonymizer
from schemas.base import Contract
from schemas.feedback import ChatMessage
from schemas.fields import Identifier, TaskName, UtcDatetime
from schemas.version import SemVer
from serving.http_errors import StoreUnavailable

ContextKind = Literal["chat", "score"]

_CLAIM = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.call('HMGET', KEYS[1], 'sha256', 'state', 'response')
end
redis.call('HSET', KEYS[1], 'sha256', ARGV[1], 'state', 'pending')
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return false
"""
_COMPLETE = """
if redis.call('HGET', KEYS[1], 'sha256') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'state', 'done', 'response', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""
_RELEASE = """
if redis.call('HGET', KEYS[1], 'sha256') == ARGV[1]
   and redis.call('HGET', KEYS[1], 'state') == 'pending' then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class ServedContext(Contract):
    """One served answer: the task, its input (chat messages or scored text), the output (answer
    or label), the passages cited, the adapter version (None: base model) and when."""

    task: TaskName
    kind: ContextKind
    input: list[ChatMessage] | str
    output: str
    passage_ids: list[Identifier] = Field(default_factory=list)
    adapter_version: SemVer | None
    served_at: UtcDatetime


def pseudonymize_context(context: ServedContext, pseudonymizer: Pseudonymizer) -> ServedContext:
    """``context`` with PII in every message, the scored text and the output replaced."""

    def clean(text: str) -> str:
        return pseudonymizer.pseudonymize(text).text

    cleaned_input: list[ChatMessage] | str = (
        clean(context.input)
        if isinstance(context.input, str)
        else [ChatMessage(role=m.role, content=clean(m.content)) for m in context.input]
    )
    return context.model_copy(update={"input": cleaned_input, "output": clean(context.output)})


@dataclass(frozen=True)
class ClaimNew:
    """This caller owns the feedback key: publish, then `complete` or `release`."""


@dataclass(frozen=True)
class ClaimSame:
    """The same payload was accepted before: answer with ``response`` again."""

    response: dict[str, Any]


@dataclass(frozen=True)
class ClaimConflict:
    """A different payload was sent under this key."""


@dataclass(frozen=True)
class ClaimInProgress:
    """The same payload is being published by another request right now."""


Claim = ClaimNew | ClaimSame | ClaimConflict | ClaimInProgress


def classify_claim(existing: list[bytes | None] | None, payload_sha256: str) -> Claim:
    """The claim outcome from the record found (sha256, state, response), or None if the
    claim created it."""
    if existing is None:
        return ClaimNew()
    sha, state, response = existing
    if sha is None or sha.decode() != payload_sha256:
        return ClaimConflict()
    if state != b"done" or response is None:
        return ClaimInProgress()
    return ClaimSame(json.loads(response))


def feedback_key(request_id: str, kind: str, annotator: str | None) -> str:
    """A short stable digest of the idempotency key (request, kind, annotator)."""
    parts = json.dumps([request_id, kind, annotator], ensure_ascii=False)
    return hashlib.sha256(parts.encode("utf-8", "surrogatepass")).hexdigest()


class ContextStore:
    """Served contexts (``<prefix>ctx:<request_id>``) and feedback idempotency records
    (``<prefix>fb:<digest>``) in Redis; Redis failures raise `StoreUnavailable`."""

    def __init__(
        self,
        client: aioredis.Redis,
        pseudonymizer: Pseudonymizer,
        *,
        prefix: str = "",
        pending_ttl_s: float = 60.0,
    ) -> None:
        self.client = client
        self.pseudonymizer = pseudonymizer
        self.prefix = prefix
        self.pending_ttl_ms = int(pending_ttl_s * 1000)
        self._claim = client.register_script(_CLAIM)
        self._complete = client.register_script(_COMPLETE)
        self._release = client.register_script(_RELEASE)

    async def put(self, request_id: str, context: ServedContext, ttl_s: int) -> ServedContext:
        """Stores ``context`` pseudonymized for ``ttl_s`` seconds; returns what was stored."""
        stored = await asyncio.to_thread(pseudonymize_context, context, self.pseudonymizer)
        await self._call(self.client.set(self._ctx(request_id), stored.model_dump_json(), ex=ttl_s))
        return stored

    async def get(self, request_id: str) -> ServedContext | None:
        """The stored (pseudonymized) context, or None if unknown or expired."""
        raw = await self._call(self.client.get(self._ctx(request_id)))
        if raw is None:
            return None
        try:
            return ServedContext.model_validate_json(raw)
        except ValidationError as exc:
            raise StoreUnavailable(f"context of {request_id!r} is unreadable: {exc}") from exc

    async def claim(
        self, request_id: str, kind: str, annotator: str | None, payload_sha256: str
    ) -> Claim:
        keys = [self._fb(request_id, kind, annotator)]
        found = await self._call(self._claim(keys=keys, args=[payload_sha256,
                                                             self.pending_ttl_ms]))
        return classify_claim(found, payload_sha256)

    async def complete(
        self, request_id: str, kind: str, annotator: str | None, payload_sha256: str,
        response: dict[str, Any], ttl_s: int,
    ) -> None:
        """Marks the claim done with ``response`` (kept ``ttl_s`` for identical retries)."""
        body = json.dumps(response, ensure_ascii=False, sort_keys=True)
        keys = [self._fb(request_id, kind, annotator)]
        await self._call(self._complete(keys=keys, args=[payload_sha256, body, ttl_s * 1000]))

    async def release(
        self, request_id: str, kind: str, annotator: str | None, payload_sha256: str
    ) -> None:
        """Drops a pending claim after a failed publish, so a retry can claim it again."""
        keys = [self._fb(request_id, kind, annotator)]
        await self._call(self._release(keys=keys, args=[payload_sha256]))

    async def ping(self) -> str:
        """"" when Redis answers, else what is wrong (for /readyz)."""
        try:
            await self.client.ping()
        except RedisError as exc:
            return f"redis: {exc}"
        return ""

    def _ctx(self, request_id: str) -> str:
        return f"{self.prefix}ctx:{request_id}"

    def _fb(self, request_id: str, kind: str, annotator: str | None) -> str:
        return f"{self.prefix}fb:{feedback_key(request_id, kind, annotator)}"

    async def _call(self, pending: Any) -> Any:
        try:
            return await pending
        except RedisError as exc:
            raise StoreUnavailable(f"Redis failed: {exc}") from exc
