"""Index one batch of raw records: decode, prepare, dedup, chunk, embed, upsert; report outcomes.

Called by the faust agent (in an executor thread) with the batch's raw messages; returns the
events to publish (cleaned records, indexed outcomes, dead letters). Bad records become dead
letters and the batch goes on; an outage of Redis or Milvus raises `Unavailable`, so the agent
retries the whole batch and acknowledges nothing meanwhile. Every step is idempotent, so a
retried or redelivered batch leaves the index exactly as one clean pass would.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import redis

from lorafeed import failpoints
from lorafeed.embedder import Embedder
from lorafeed.knowledge import ChunkRow, KnowledgeBase
from lorafeed.knowledge_errors import KnowledgeUnavailable
from lorafeed.privacy import Pseudonymizer
from schemas import (
    DeadLettered,
    DeadLetterReason,
    RecordCleaned,
    RecordIndexed,
    RecordIngested,
    SchemaError,
    Topic,
    dead_letter,
    decode,
    encode,
)
from streams import metrics
from streams.chunking import Chunk, ChunkConfig, chunk_text
from streams.dedup import estimated_jaccard
from streams.dedup_store import DedupStore
from streams.prepare import (
    PrepareConfig,
    Prepared,
    Rejected,
    fingerprint,
    prepare,
    signature_from_bytes,
)

log = logging.getLogger(__name__)

AFTER_DEDUP = failpoints.declare("streams.after_dedup", "dedup keys claimed, nothing upserted")
MID_BATCH = failpoints.declare("streams.mid_batch", "first record of a batch upserted, not all")
AFTER_UPSERT = failpoints.declare("streams.after_upsert", "chunks upserted, offsets not committed")


class Unavailable(RuntimeError):
    """Redis, Milvus or the broker is down: retry the batch later, commit nothing."""


INFRA_ERRORS: tuple[type[BaseException], ...] = (
    redis.ConnectionError,
    redis.TimeoutError,
    redis.BusyLoadingError,
    KnowledgeUnavailable,
)


@dataclass(frozen=True)
class Incoming:
    """One raw message as the broker delivered it."""

    value: bytes
    key: bytes | None
    partition: int
    offset: int
    timestamp_s: float | None = None


@dataclass
class Outcome:
    """What a batch produced, to publish before its offsets are committed."""

    clean: list[RecordCleaned] = field(default_factory=list)
    indexed: list[RecordIndexed] = field(default_factory=list)
    dead: list[DeadLettered] = field(default_factory=list)


@dataclass(frozen=True)
class IndexerConfig:
    """collection: the Milvus collection name (the knowledge base) recorded in outcomes."""

    collection: str = "knowledge"
    prepare: PrepareConfig = field(default_factory=PrepareConfig)
    chunking: ChunkConfig = field(default_factory=ChunkConfig)


@dataclass
class _Pending:
    prepared: Prepared
    chunks: list[Chunk]


class Indexer:
    """Turns batches of raw messages into index writes and outcome events."""

    def __init__(
        self,
        *,
        dedup: DedupStore,
        knowledge: KnowledgeBase,
        embedder: Embedder,
        pseudonymizer: Pseudonymizer,
        config: IndexerConfig,
        source_topic: str,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.dedup = dedup
        self.kb = knowledge
        self.embedder = embedder
        self.pseudonymizer = pseudonymizer
        self.config = config
        self.source_topic = source_topic
        self.clock = clock

    def process(self, batch: Sequence[Incoming]) -> Outcome:
        """Index ``batch``; raises :class:`Unavailable` when infrastructure is down."""
        try:
            return self._process(batch)
        except INFRA_ERRORS as exc:
            raise Unavailable(f"{type(exc).__name__}: {exc}") from exc

    def _process(self, batch: Sequence[Incoming]) -> Outcome:
        outcome, pending = Outcome(), {}
        for msg in batch:
            metrics.RECORDS_IN.inc()
            try:
                record = decode(Topic.RECORDS_RAW, msg.value)
            except SchemaError as exc:
                outcome.dead.append(self._dead(msg, exc.reason, str(exc)))
                continue
            if record.record_id in pending:  # keep per-record order: index what came first
                self._index(pending, outcome)
            try:
                self._route(record, msg, outcome, pending)
            except INFRA_ERRORS:
                raise
            except Exception as exc:  # a bug on one odd record must not stop the pipeline
                log.exception("record %s failed", record.record_id)
                outcome.dead.append(
                    self._dead(
                        msg, DeadLetterReason.PROCESSING_ERROR, f"{type(exc).__name__}: {exc}"
                    )
                )
        failpoints.failpoint(AFTER_DEDUP)
        self._index(pending, outcome)
        if batch and batch[-1].timestamp_s:
            metrics.LAG_SECONDS.set(max(0.0, time.time() - batch[-1].timestamp_s))
        return outcome

    # --- routing ------------------------------------------------------------------------

    def _route(
        self, record: RecordIngested, msg: Incoming, outcome: Outcome, pending: dict[str, _Pending]
    ) -> None:
        if record.op == "delete":
            self._delete(record, outcome, pending)
            return
        result = prepare(record, self.pseudonymizer, self.config.prepare, self.clock())
        if isinstance(result, Rejected):
            outcome.dead.append(self._dead(msg, result.reason, result.detail))
            return
        outcome.clean.append(result.cleaned)
        self._place(result, outcome, pending)

    def _place(self, prepared: Prepared, outcome: Outcome, pending: dict[str, _Pending]) -> None:
        """Claim ``prepared``'s content: index it, or record it as an alias of its twin."""
        record_id = prepared.cleaned.record_id
        previous_sha = self.dedup.owned_sha(record_id)
        if previous_sha is not None and previous_sha != prepared.sha:
            self._requeue(self.dedup.release(record_id), outcome, pending)
        self.dedup.drop_alias(record_id)
        claim = self.dedup.claim(record_id, prepared.sha, prepared.bands, prepared.signature)
        twin = claim.owners[0] if claim.kind == "exact" else None
        if claim.kind == "near":
            twin = self._closest(prepared, claim.owners)
            if twin is None:
                self.dedup.claim(
                    record_id, prepared.sha, prepared.bands, prepared.signature, force=True
                )
        if twin is None:
            chunks = chunk_text(
                prepared.cleaned.text, self.embedder.tokenizer, self.config.chunking
            )
            pending[record_id] = _Pending(prepared, chunks)
            return
        metrics.RECORDS_DEDUPED.labels(claim.kind).inc()
        self.dedup.add_alias(record_id, twin, encode(prepared.cleaned))
        deleted = self.kb.delete_record(record_id) if previous_sha is not None else []
        outcome.indexed.append(self._indexed(record_id, [], deleted, duplicate_of=twin))

    def _closest(self, prepared: Prepared, owners: Sequence[str]) -> str | None:
        """The most similar owner at or above the threshold (ties: smallest id), if any."""
        threshold = self.config.prepare.near_dup.threshold
        mine = signature_from_bytes(prepared.signature)
        scored = [
            (estimated_jaccard(mine, signature_from_bytes(sig)), owner)
            for owner, sig in self.dedup.signatures(list(owners)).items()
        ]
        best = sorted((-score, owner) for score, owner in scored if score >= threshold)
        return best[0][1] if best else None

    def _delete(
        self, record: RecordIngested, outcome: Outcome, pending: dict[str, _Pending]
    ) -> None:
        record_id = record.record_id
        if self.dedup.drop_alias(record_id) is not None:
            outcome.indexed.append(self._indexed(record_id, [], []))
        else:
            deleted = self.kb.delete_record(record_id)
            aliases = self.dedup.release(record_id)
            outcome.indexed.append(self._indexed(record_id, [], deleted))
            self._requeue(aliases, outcome, pending)
        outcome.clean.append(
            RecordCleaned(
                schema_version=1,
                record_id=record_id,
                op="delete",
                source=record.source,
                content_type=record.content_type,
                text="",
                metadata={},
                occurred_at=record.occurred_at,
                content_sha256=_EMPTY_SHA,
                cleaned_at=self.clock(),
            )
        )

    def _requeue(
        self, aliases: Sequence[str], outcome: Outcome, pending: dict[str, _Pending]
    ) -> None:
        """Index the aliases of a record that left, from their stored cleaned form."""
        for alias in aliases:
            doc = self.dedup.alias_doc(alias)
            self.dedup.drop_alias(alias)
            if doc is None:
                log.warning("alias %s has no stored document (expired); not re-indexed", alias)
                continue
            cleaned = decode(Topic.RECORDS_CLEAN, doc)
            self._place(fingerprint(cleaned, self.config.prepare.near_dup), outcome, pending)

    # --- writing ------------------------------------------------------------------------

    def _index(self, pending: dict[str, _Pending], outcome: Outcome) -> None:
        """Embed every pending chunk in one call, then write the records in two halves (a
        batched upsert each; the crash window between them is the mid-batch failpoint)."""
        if not pending:
            return
        items = list(pending.values())
        pending.clear()
        texts = [chunk.text for item in items for chunk in item.chunks]
        began = time.perf_counter()
        vectors = iter(self.embedder.embed(texts))
        metrics.EMBED_SECONDS.observe(time.perf_counter() - began)
        metrics.EMBED_BATCH.observe(len(texts))
        now_ms = int(self.clock().timestamp() * 1000)
        rows = {item.prepared.cleaned.record_id: _rows(item, vectors, now_ms) for item in items}
        half = (len(rows) + 1) // 2
        for n, part in enumerate(
            (dict(list(rows.items())[:half]), dict(list(rows.items())[half:]))
        ):
            if n == 1 and part:
                failpoints.failpoint(MID_BATCH)
            deleted = self.kb.upsert_records(part) if part else {}
            for record_id, record_rows in part.items():
                metrics.RECORDS_INDEXED.inc()
                metrics.CHUNKS_INDEXED.inc(len(record_rows))
                outcome.indexed.append(
                    self._indexed(record_id, [row.pk for row in record_rows], deleted[record_id])
                )
        self.kb.flush()
        failpoints.failpoint(AFTER_UPSERT)

    # --- events -------------------------------------------------------------------------

    def _indexed(
        self,
        record_id: str,
        chunk_ids: list[str],
        deleted: list[str],
        duplicate_of: str | None = None,
    ) -> RecordIndexed:
        return RecordIndexed(
            schema_version=1,
            record_id=record_id,
            collection=self.config.collection,
            chunk_count=len(chunk_ids),
            chunk_ids=chunk_ids,
            deleted_chunk_ids=deleted,
            duplicate_of=duplicate_of,
            indexed_at=self.clock(),
        )

    def _dead(self, msg: Incoming, reason: DeadLetterReason, detail: str) -> DeadLettered:
        metrics.RECORDS_DLQ.labels(reason.value).inc()
        key = msg.key.decode("utf-8", "replace") if msg.key is not None else None
        return dead_letter(
            msg.value,
            reason,
            self.pseudonymizer.pseudonymize(detail).text,
            source_topic=self.source_topic,
            partition=msg.partition,
            offset=msg.offset,
            key=None if key is None else self.pseudonymizer.pseudonymize(key).text,
            now=self.clock(),
        )


def _rows(item: _Pending, vectors: Iterator[np.ndarray], now_ms: int) -> list[ChunkRow]:
    """The Milvus rows of one record, taking its chunks' vectors in order from ``vectors``."""
    cleaned = item.prepared.cleaned
    return [
        ChunkRow(
            record_id=cleaned.record_id,
            chunk_index=chunk.index,
            text=chunk.text,
            dense=next(vectors),
            source=cleaned.source,
            metadata=dict(cleaned.metadata),
            start_char=chunk.start_char,
            end_char=chunk.end_char,
            occurred_at=int(cleaned.occurred_at.timestamp() * 1000),
            indexed_at=now_ms,
        )
        for chunk in item.chunks
    ]


_EMPTY_SHA = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
