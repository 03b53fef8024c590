"""Exact and near-duplicate claims in Redis, shared by every streams worker.

A record claims its content hash and its LSH band keys in one Lua script, so of two workers
racing on a pair exactly one owns the keys and the other sees it. The values are owning record
ids: a record redelivered after a crash finds its own id and proceeds. Aliases (duplicates of an
indexed record) are remembered with their cleaned form, so deleting the canonical record can
index an alias in its place.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import redis

_CLAIM = """
-- KEYS: owner hash, exact key, sig key, band keys...   ARGV: record id, ttl, sig, sha, bands json
local id, ttl = ARGV[1], tonumber(ARGV[2])
local exact = redis.call('GET', KEYS[2])
if exact and exact ~= id then return {'exact', exact} end
local others = {}
for i = 4, #KEYS do
  local owner = redis.call('GET', KEYS[i])
  if owner and owner ~= id then others[#others + 1] = owner end
end
if #others > 0 and ARGV[6] ~= 'force' then return {'near', unpack(others)} end
redis.call('SET', KEYS[2], id, 'NX', 'EX', ttl)
for i = 4, #KEYS do redis.call('SET', KEYS[i], id, 'NX', 'EX', ttl) end
redis.call('SET', KEYS[3], ARGV[3], 'EX', ttl)
redis.call('HSET', KEYS[1], 'sha', ARGV[4], 'bands', ARGV[5])
redis.call('EXPIRE', KEYS[1], ttl)
return {'own'}
"""

_RELEASE = """
-- KEYS: keys to delete when still owned by ARGV[1]
local n = 0
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[1] then redis.call('DEL', KEYS[i]); n = n + 1 end
end
return n
"""


@dataclass(frozen=True)
class Claim:
    """Outcome of a claim: ``own`` (index it), ``exact`` duplicate of ``owners[0]``, or
    ``near`` candidates ``owners`` whose signatures the caller compares."""

    kind: Literal["own", "exact", "near"]
    owners: tuple[str, ...] = ()


class DedupStore:
    """Redis keys under ``namespace`` (e.g. the topic prefix plus the collection name)."""

    def __init__(self, client: redis.Redis, namespace: str, ttl_s: int) -> None:
        if ttl_s <= 0:
            raise ValueError(f"dedup TTL must be > 0 seconds, got {ttl_s}")
        self._r = client
        self._ns = f"lf:{namespace}:"
        self._ttl = ttl_s
        self._claim = client.register_script(_CLAIM)
        self._release = client.register_script(_RELEASE)

    def _k(self, *parts: str) -> str:
        return self._ns + ":".join(parts)

    def claim(
        self,
        record_id: str,
        sha: str,
        bands: Sequence[str],
        signature: bytes,
        *,
        force: bool = False,
    ) -> Claim:
        """Claim the content hash and band keys for ``record_id``; see :class:`Claim`.

        ``force`` claims the free keys even when other records own some bands (the caller found
        them not similar enough); an exact duplicate is never forced.
        """
        keys = [self._k("owner", record_id), self._k("exact", sha), self._k("sig", record_id)]
        keys += [self._k("band", b) for b in bands]
        argv = [
            record_id,
            self._ttl,
            signature,
            sha,
            json.dumps(list(bands)),
            "force" if force else "",
        ]
        result = [_text(x) for x in self._claim(keys=keys, args=argv)]
        if result[0] == "own":
            return Claim("own")
        owners = tuple(dict.fromkeys(result[1:]))  # distinct, in band order
        return Claim("exact" if result[0] == "exact" else "near", owners)

    def signatures(self, record_ids: Sequence[str]) -> dict[str, bytes]:
        """Stored MinHash signatures of ``record_ids`` (expired ones are absent)."""
        values = self._r.mget([self._k("sig", rid) for rid in record_ids]) if record_ids else []
        return {rid: v for rid, v in zip(record_ids, values, strict=True) if v is not None}

    def owned_sha(self, record_id: str) -> str | None:
        value = self._r.hget(self._k("owner", record_id), "sha")
        return None if value is None else _text(value)

    def release(self, record_id: str) -> list[str]:
        """Give up everything ``record_id`` owns; returns its aliases (now without a canonical)."""
        owner = self._r.hgetall(self._k("owner", record_id))
        keys = [self._k("sig", record_id)]
        if owner:
            keys.append(self._k("exact", _text(owner[b"sha"])))
            keys += [self._k("band", b) for b in json.loads(owner[b"bands"])]
        self._release(keys=keys, args=[record_id])
        self._r.delete(self._k("sig", record_id), self._k("owner", record_id))
        aliases_key = self._k("aliases", record_id)
        aliases = sorted(_text(a) for a in self._r.smembers(aliases_key))
        self._r.delete(aliases_key)
        return aliases

    def add_alias(self, alias_id: str, canonical_id: str, cleaned: bytes) -> None:
        """Remember ``alias_id`` as a duplicate of ``canonical_id``, with its cleaned record."""
        self.drop_alias(alias_id)
        pipe = self._r.pipeline(transaction=True)
        pipe.sadd(self._k("aliases", canonical_id), alias_id)
        pipe.set(self._k("aliasof", alias_id), canonical_id, ex=self._ttl)
        pipe.set(self._k("doc", alias_id), cleaned, ex=self._ttl)
        pipe.execute()

    def drop_alias(self, alias_id: str) -> str | None:
        """Forget that ``alias_id`` was an alias; returns the canonical it pointed to."""
        canonical = self._r.get(self._k("aliasof", alias_id))
        if canonical is None:
            return None
        pipe = self._r.pipeline(transaction=True)
        pipe.srem(self._k("aliases", _text(canonical)), alias_id)
        pipe.delete(self._k("aliasof", alias_id), self._k("doc", alias_id))
        pipe.execute()
        return _text(canonical)

    def alias_doc(self, alias_id: str) -> bytes | None:
        value = self._r.get(self._k("doc", alias_id))
        return None if value is None else bytes(value)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
