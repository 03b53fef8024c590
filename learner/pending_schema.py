"""The pending store's SQLite schema, the plain row types its API returns, and the example
upsert shared by `learner.pending` and `learner.pending_labels`.

`SCHEMA_VERSION` is kept in `PRAGMA user_version`; a file with another version is refused.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, NamedTuple

from learner.examples import Example, is_heldout
from schemas.manifest import OffsetRange

SCHEMA_VERSION: Final = 1

# Example states: pending (trainable or heldout), review (label disputed), consumed (trained
# into `version`), negative (a -1 rated answer, never trained), superseded (a disputed label
# replaced by a review decision), purged (its record was deleted; content erased).
SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS examples (
    task TEXT NOT NULL,
    example_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    json TEXT NOT NULL,
    split TEXT NOT NULL CHECK (split IN ('train', 'heldout')),
    state TEXT NOT NULL,
    version TEXT,
    topic TEXT,
    partition INTEGER,
    "offset" INTEGER,
    request_id TEXT,
    record_id TEXT,
    domain TEXT NOT NULL,
    created_at REAL NOT NULL,
    replay_offered INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (task, example_id)
);
CREATE INDEX IF NOT EXISTS examples_queue ON examples (task, split, state, created_at);
CREATE INDEX IF NOT EXISTS examples_record ON examples (record_id);
CREATE TABLE IF NOT EXISTS votes (
    task TEXT NOT NULL,
    item TEXT NOT NULL,
    annotator TEXT NOT NULL,
    label TEXT NOT NULL,
    text TEXT NOT NULL,
    domain TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (task, item, annotator)
);
CREATE TABLE IF NOT EXISTS review (
    task TEXT NOT NULL,
    item TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('open', 'resolved')),
    opened_at REAL NOT NULL,
    label TEXT,
    actor TEXT,
    resolved_at REAL,
    PRIMARY KEY (task, item)
);
CREATE TABLE IF NOT EXISTS replay (
    task TEXT NOT NULL,
    slot INTEGER NOT NULL,
    example_id TEXT NOT NULL,
    json TEXT NOT NULL,
    record_id TEXT,
    PRIMARY KEY (task, slot),
    UNIQUE (task, example_id)
);
CREATE TABLE IF NOT EXISTS replay_meta (
    task TEXT PRIMARY KEY,
    seen INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    task TEXT NOT NULL,
    version TEXT NOT NULL,
    topic TEXT NOT NULL,
    key TEXT,
    payload BLOB NOT NULL,
    created_at REAL NOT NULL,
    sent_at REAL,
    dropped TEXT
);
CREATE TABLE IF NOT EXISTS versions (
    task TEXT NOT NULL,
    version TEXT NOT NULL,
    state TEXT NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (task, version)
);
CREATE TABLE IF NOT EXISTS ratings (
    task TEXT NOT NULL,
    version TEXT,
    request_id TEXT NOT NULL,
    rating INTEGER NOT NULL CHECK (rating IN (1, -1)),
    created_at REAL NOT NULL,
    PRIMARY KEY (task, request_id)
);
CREATE INDEX IF NOT EXISTS ratings_version ON ratings (task, version);
CREATE TABLE IF NOT EXISTS load_failures (
    task TEXT NOT NULL,
    version TEXT NOT NULL,
    node TEXT NOT NULL,
    reason TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (task, version, node)
);
"""


@dataclass(frozen=True, order=True)
class OffsetRef:
    """Where an example's source event was read: one Kafka topic partition offset."""

    topic: str
    partition: int
    offset: int


class OutboxMessage(NamedTuple):
    """An event to send once the transaction that queued it committed."""

    topic: str
    key: str | None
    payload: bytes


class OutboxItem(NamedTuple):
    """A queued, not yet sent message; `id` is what `outbox_mark_sent` takes."""

    id: int
    topic: str
    key: str | None
    payload: bytes


@dataclass(frozen=True)
class PurgeCounts:
    """Rows a record deletion erased, by where they were."""

    pending: int = 0
    heldout: int = 0
    consumed: int = 0
    replay: int = 0
    other: int = 0

    @property
    def total(self) -> int:
        return self.pending + self.heldout + self.consumed + self.replay + self.other


@dataclass(frozen=True)
class ReviewItem:
    """A disputed item: the input text and every (annotator, label) vote, in arrival order."""

    task: str
    item: str
    text: str
    votes: tuple[tuple[str, str], ...]
    opened_at: float


def offset_ranges(refs: Iterable[OffsetRef | None]) -> list[OffsetRange]:
    """Collapse offsets into inclusive ranges of consecutive offsets per topic partition."""
    ranges: list[OffsetRange] = []
    current: list[int] | None = None  # [first, last] of the open run
    key: tuple[str, int] | None = None
    for ref in sorted({ref for ref in refs if ref is not None}):
        if (
            current is not None
            and key == (ref.topic, ref.partition)
            and ref.offset == current[1] + 1
        ):
            current[1] = ref.offset
            continue
        if current is not None and key is not None:
            ranges.append(
                OffsetRange(topic=key[0], partition=key[1], first=current[0], last=current[1])
            )
        key, current = (ref.topic, ref.partition), [ref.offset, ref.offset]
    if current is not None and key is not None:
        ranges.append(
            OffsetRange(topic=key[0], partition=key[1], first=current[0], last=current[1])
        )
    return ranges


def upsert_example(
    conn: sqlite3.Connection, ex: Example, percent: int, source: OffsetRef | None, now: float
) -> int:
    """Insert or refresh `ex`; 0 when an identical live row exists (see `PendingStore.add`).

    A refreshed row keeps its age and source offset while it was waiting (pending or review);
    a purged or consumed row coming back is new data and starts its wait now.
    """
    payload = ex.to_json()
    row = conn.execute(
        "SELECT json, state, created_at FROM examples WHERE task = ? AND example_id = ?",
        (ex.task, ex.example_id),
    ).fetchone()
    if row is not None and row[0] == payload and row[1] != "purged":
        return 0
    waiting = row is not None and row[1] in ("pending", "review")
    created_at = float(row[2]) if waiting else now
    split = "heldout" if is_heldout(ex.example_id, percent) else "train"
    state = "negative" if ex.kind == "negative" else "pending"
    where = (
        (None, None, None) if source is None else (source.topic, source.partition, source.offset)
    )
    conn.execute(
        "INSERT INTO examples (task, example_id, kind, json, split, state, version, topic,"
        ' partition, "offset", request_id, record_id, domain, created_at)'
        " VALUES (?, ?, ?, ?, ?, ?, NULL, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (task, example_id) DO UPDATE SET kind = excluded.kind,"
        " json = excluded.json, split = excluded.split, state = excluded.state, version = NULL,"
        " topic = COALESCE(excluded.topic, topic), partition = COALESCE(excluded.partition,"
        ' partition), "offset" = COALESCE(excluded."offset", "offset"),'
        " request_id = excluded.request_id, record_id = excluded.record_id,"
        " domain = excluded.domain, created_at = excluded.created_at, replay_offered = 0",
        (ex.task, ex.example_id, ex.kind, payload, split, state, *where)
        + (ex.request_id, ex.record_id, ex.domain, created_at),
    )
    return 1


def ref_of(topic: object, partition: object, offset: object) -> OffsetRef | None:
    """The OffsetRef of a row's (topic, partition, offset) columns, None when not recorded."""
    if not isinstance(topic, str) or not isinstance(partition, int) or not isinstance(offset, int):
        return None
    return OffsetRef(topic, partition, offset)
