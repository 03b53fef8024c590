"""Recompute what the streams worker must have indexed, independently of its state, and compare
with what Milvus and the outcome topics hold (the invariant check of the streams tests)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from lorafeed.embedder import Embedder
from lorafeed.knowledge import KnowledgeBase
from lorafeed.privacy import Pseudonymizer
from schemas import DeadLettered, RecordIndexed, RecordIngested
from streams.chunking import ChunkConfig, chunk_text
from streams.prepare import PrepareConfig, Prepared, prepare

TEST_PII_KEY = b"test-key-0123456789abcdef"


@dataclass(frozen=True)
class Expected:
    prepared: dict[str, Prepared]  # record id -> cleaned form, for records that pass
    chunks: dict[str, list[str]]  # record id -> chunk texts, if it is the indexed one
    rejected: dict[str, str]  # record id -> dead-letter reason


def expected_outcomes(records: Iterable[dict], embedder: Embedder) -> Expected:
    pseudonymizer = Pseudonymizer(TEST_PII_KEY)
    prepared, chunks, rejected = {}, {}, {}
    config = ChunkConfig(model_max_tokens=embedder.max_tokens)
    for raw in records:
        record = RecordIngested.model_validate(raw)
        result = prepare(record, pseudonymizer, PrepareConfig(), datetime.now(UTC))
        if isinstance(result, Prepared):
            prepared[record.record_id] = result
            chunks[record.record_id] = [
                c.text for c in chunk_text(result.cleaned.text, embedder.tokenizer, config)
            ]
        else:
            rejected[record.record_id] = result.reason.value
    return Expected(prepared, chunks, rejected)


def latest_outcomes(events: Iterable[RecordIndexed]) -> dict[str, RecordIndexed]:
    """The last outcome per record id (the topic holds every redelivery's outcome)."""
    latest: dict[str, RecordIndexed] = {}
    for event in events:
        latest[event.record_id] = event
    return latest


def indexed_texts(kb: KnowledgeBase) -> dict[str, list[str]]:
    """Record id -> its chunk texts in chunk order, as Milvus holds them."""
    rows = sorted(kb.all_chunks(), key=lambda r: (r.record_id, r.chunk_index))
    texts: dict[str, list[str]] = {}
    for row in rows:
        texts.setdefault(row.record_id, []).append(row.text)
    return texts


def dead_reasons(letters: Iterable[DeadLettered]) -> dict[str, str]:
    return {letter.key or "": letter.reason.value for letter in letters}
