"""The pure part of indexing one raw record: clean, pseudonymize, check quality, fingerprint.

`prepare` turns a decoded `RecordIngested` into either a `Prepared` record (the cleaned,
pseudonymized `RecordCleaned` plus its dedup fingerprints) or a `Rejected` verdict with a
dead-letter reason. No I/O: the indexer feeds it and acts on the result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from lorafeed.privacy import Pseudonymizer
from schemas import DeadLetterReason, RecordCleaned, RecordIngested
from streams.cleaning import CleaningError, clean
from streams.dedup import NearDupConfig, band_keys, content_sha256, minhash
from streams.quality import QualityConfig, check_quality


@dataclass(frozen=True)
class PrepareConfig:
    """Knobs of the pure steps; ``quality`` and ``near_dup`` document their own defaults.

    max_raw_chars: raw content longer than this is refused before parsing (default 1,000,000;
        cleaning is linear but a hostile page must not hold a worker for minutes).
    max_markdown_chars: the same for Markdown, whose parser is the slowest on hostile input
        (default 200,000: a few seconds at worst).
    """

    quality: QualityConfig = field(default_factory=QualityConfig)
    near_dup: NearDupConfig = field(default_factory=NearDupConfig)
    max_raw_chars: int = 1_000_000
    max_markdown_chars: int = 200_000

    def __post_init__(self) -> None:
        for name in ("max_raw_chars", "max_markdown_chars"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")


@dataclass(frozen=True)
class Prepared:
    """A record ready for dedup and indexing. ``signature`` is the MinHash as uint32 bytes."""

    cleaned: RecordCleaned
    sha: str
    signature: bytes
    bands: tuple[str, ...]


@dataclass(frozen=True)
class Rejected:
    """Why a record is not indexed; ``detail`` is already free of raw PII."""

    reason: DeadLetterReason
    detail: str


def prepare(
    record: RecordIngested, pseudonymizer: Pseudonymizer, config: PrepareConfig, now: datetime
) -> Prepared | Rejected:
    """Clean, pseudonymize, check and fingerprint an upsert (deletes never come here)."""
    limit = (
        config.max_markdown_chars
        if record.content_type == "text/markdown"
        else config.max_raw_chars
    )
    if len(record.content) > limit:
        return Rejected(
            DeadLetterReason.QUALITY_TOO_LONG,
            f"raw {record.content_type} content has {len(record.content)} characters > {limit}",
        )
    try:
        text = clean(record.content, record.content_type)
    except CleaningError as exc:
        return Rejected(exc.reason, pseudonymizer.pseudonymize(str(exc)).text)
    private = pseudonymizer.pseudonymize(text)
    verdict = check_quality(private.text, config.quality)
    if not verdict.ok:
        assert verdict.reason is not None
        return Rejected(verdict.reason, verdict.detail)
    cleaned = RecordCleaned(
        schema_version=1,
        record_id=record.record_id,
        op="upsert",
        source=record.source,
        content_type=record.content_type,
        text=private.text,
        metadata=_private_metadata(record.metadata, pseudonymizer),
        occurred_at=record.occurred_at,
        content_sha256=content_sha256(private.text),
        pii_replaced={kind: n for kind, n in private.counts.items() if n},
        cleaned_at=now,
    )
    return fingerprint(cleaned, config.near_dup)


def fingerprint(cleaned: RecordCleaned, config: NearDupConfig) -> Prepared:
    """Dedup fingerprints of a cleaned record (also used to re-index a stored alias)."""
    hashes = np.asarray(minhash(cleaned.text, config).hashvalues, dtype=np.uint32)
    return Prepared(
        cleaned, cleaned.content_sha256, hashes.tobytes(), tuple(band_keys(hashes, config))
    )


def signature_from_bytes(data: bytes) -> np.ndarray:
    """The uint32 MinHash values stored by :func:`prepare` (and in Redis)."""
    return np.frombuffer(data, dtype=np.uint32)


def _private_metadata(value: object, pseudonymizer: Pseudonymizer) -> dict[str, object]:
    """Metadata with every string (keys included) pseudonymized too: producers put e-mails in
    there as well. Two keys that become one token keep the last value."""
    cleaned = _scrub(value, pseudonymizer)
    return cleaned if isinstance(cleaned, dict) else {}


def _scrub(value: object, pseudonymizer: Pseudonymizer) -> object:
    if isinstance(value, str):
        return pseudonymizer.pseudonymize(value).text
    if isinstance(value, dict):  # keys too: {"jane@example.com": ...} is PII as well
        return {_scrub(k, pseudonymizer): _scrub(v, pseudonymizer) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v, pseudonymizer) for v in value]
    return value
