"""Durable learner state in one SQLite file (WAL, synchronous=FULL): pending and heldout
examples, label votes and review, the replay reservoir, the event outbox and watch ratings.

Every method is one transaction and thread-safe (one connection behind a lock). The consume
loop writes here before committing Kafka offsets, so a redelivered event counts once.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from learner import pending_labels, pending_outbox, pending_replay
from learner.aggregate import Outcome, Vote
from learner.errors import PendingStoreError
from learner.examples import Example
from learner.pending_schema import (
    SCHEMA,
    SCHEMA_VERSION,
    OffsetRef,
    OutboxItem,
    OutboxMessage,
    PurgeCounts,
    ReviewItem,
    offset_ranges,
    ref_of,
    upsert_example,
)
from lorafeed import failpoints
from schemas.manifest import OffsetRange

__all__ = ["OffsetRef", "OutboxItem", "OutboxMessage", "PendingStore", "PurgeCounts"]
__all__ += ["ReviewItem", "offset_ranges"]

Queued = tuple[str, str | None, bytes]  # (topic, key, payload), as OutboxMessage
CONSUME_BEFORE_COMMIT = failpoints.declare(
    "learner.pending.consume_before_commit",
    "examples marked consumed and outbox written, transaction not committed",
)
_PURGE = "UPDATE examples SET state = 'purged', json = '' WHERE task = ? AND example_id = ?"


class PendingStore:
    """The learner's state file; see the module docstring. `clock` gives epoch seconds."""

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self._clock = clock
        self._lock = threading.RLock()
        try:
            self._conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=30.0
            )
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            found = self._conn.execute("PRAGMA user_version").fetchone()[0]
            if found not in (0, SCHEMA_VERSION):
                raise PendingStoreError(
                    f"{self.path}: schema version {found}, this learner reads {SCHEMA_VERSION}"
                )
            self._conn.executescript(SCHEMA)  # idempotent DDL, outside any transaction
            self._conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.Error as exc:
            raise PendingStoreError(f"cannot open pending store {self.path}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> PendingStore:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _query(self, sql: str, args: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return list(self._conn.execute(sql, args).fetchall())

    # -- examples ----------------------------------------------------------------------------

    def add(
        self, examples: Sequence[Example], holdout_percent: int, source: OffsetRef | None = None
    ) -> int:
        """Store examples read at `source`; returns how many were new or changed.

        Identical redeliveries are ignored (counted once); the same id with new content (an
        updated record) or a purged row becomes pending again. The split is
        `is_heldout(example_id, holdout_percent)`; "negative" examples are kept, never trained.
        """
        with self._tx() as conn:
            now = self._clock()
            return sum(upsert_example(conn, ex, holdout_percent, source, now) for ex in examples)

    def replace_record(
        self,
        task: str,
        record_id: str,
        examples: Sequence[Example],
        holdout_percent: int,
        source: OffsetRef | None = None,
    ) -> int:
        """Make `examples` the record's examples for `task` (an upsert of the record): `add`
        them, and purge the record's other examples and changed replay copies of this task."""
        keep = {ex.example_id: ex.to_json() for ex in examples}
        with self._tx() as conn:
            pending_replay.drop_record(conn, record_id, task, keep)
            rows = conn.execute(
                "SELECT example_id FROM examples WHERE task = ? AND record_id = ?",
                (task, record_id),
            ).fetchall()
            conn.executemany(_PURGE, [(task, r[0]) for r in rows if r[0] not in keep])
            now = self._clock()
            return sum(upsert_example(conn, ex, holdout_percent, source, now) for ex in examples)

    def pending(
        self, task: str, limit: int | None = None, *, kinds: Collection[str] | None = None
    ) -> list[tuple[Example, OffsetRef | None]]:
        """Trainable examples of `task` (train split, pending, of `kinds` if given), oldest
        first, with offsets."""
        where, args = _kinds_filter(kinds)
        rows = self._query(
            'SELECT json, topic, partition, "offset" FROM examples'
            f" WHERE task = ? AND split = 'train' AND state = 'pending'{where}"
            " ORDER BY created_at, rowid LIMIT ?",
            (task, *args, -1 if limit is None else limit),
        )
        return [(Example.from_json(j), ref_of(t, p, o)) for j, t, p, o in rows]

    def stats(self, task: str, *, kinds: Collection[str] | None = None) -> tuple[int, float | None]:
        """(count, created_at of the oldest) of `task`'s pending train examples (of `kinds`)."""
        where, args = _kinds_filter(kinds)
        count, oldest = self._query(
            "SELECT COUNT(*), MIN(created_at) FROM examples"
            f" WHERE task = ? AND split = 'train' AND state = 'pending'{where}",
            (task, *args),
        )[0]
        return int(count), None if oldest is None else float(oldest)

    def heldout(self, task: str, domains: Iterable[str] | None = None) -> list[Example]:
        """`task`'s heldout pool (never trained, never returned by `pending`), oldest first."""
        rows = self._query(
            "SELECT json, domain FROM examples WHERE task = ? AND split = 'heldout'"
            " AND state = 'pending' ORDER BY created_at, rowid",
            (task,),
        )
        wanted = None if domains is None else set(domains)
        return [Example.from_json(j) for j, d in rows if wanted is None or d in wanted]

    def domains(self, task: str) -> list[str]:
        """Data domains of `task`'s live examples (neither purged nor negative), sorted."""
        rows = self._query(
            "SELECT DISTINCT domain FROM examples WHERE task = ?"
            " AND state NOT IN ('purged', 'negative') ORDER BY domain",
            (task,),
        )
        return [str(row[0]) for row in rows]

    def state_of(self, task: str, example_id: str) -> tuple[str, str, str | None] | None:
        """(split, state, version consumed into) of one example, None if unknown."""
        rows = self._query(
            "SELECT split, state, version FROM examples WHERE task = ? AND example_id = ?",
            (task, example_id),
        )
        return None if not rows else (str(rows[0][0]), str(rows[0][1]), rows[0][2])

    def offset_ranges(self, refs: Iterable[OffsetRef | None]) -> list[OffsetRange]:
        """Lineage ranges of these offsets (`pending_schema.offset_ranges`)."""
        return offset_ranges(refs)

    # -- consume, versions, outbox -----------------------------------------------------------

    def consume(
        self,
        task: str,
        version: str,
        example_ids: Sequence[str],
        outbox: Sequence[OutboxMessage | Queued] = (),
        *,
        replay_capacity: int = 0,
        replay_seed: int = 0,
        version_state: str = "trained",
    ) -> int:
        """In ONE transaction: mark the still-pending train `example_ids` consumed by `version`,
        offer them to the replay reservoir (if `replay_capacity`), queue `outbox` and record
        the version. Returns how many were consumed (purged or already consumed ids skip)."""
        with self._tx() as conn:
            offered: list[Example] = []
            for example_id in example_ids:
                row = conn.execute(
                    "UPDATE examples SET state = 'consumed', version = ? WHERE task = ?"
                    " AND example_id = ? AND state = 'pending' AND split = 'train' RETURNING json",
                    (version, task, example_id),
                ).fetchone()
                if row is not None:
                    offered.append(Example.from_json(row[0]))
            pending_replay.offer(conn, task, offered, replay_capacity, replay_seed)
            pending_outbox.outbox_add(conn, task, version, outbox, self._clock())
            self._set_version(conn, task, version, version_state)
            failpoints.failpoint(CONSUME_BEFORE_COMMIT)
            return len(offered)

    def _set_version(self, conn: sqlite3.Connection, task: str, version: str, state: str) -> None:
        conn.execute(
            "INSERT INTO versions (task, version, state, updated_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (task, version) DO UPDATE SET state = excluded.state,"
            " updated_at = excluded.updated_at",
            (task, version, state, self._clock()),
        )

    def set_version_state(self, task: str, version: str, state: str) -> None:
        with self._tx() as conn:
            self._set_version(conn, task, version, state)

    def version_state(self, task: str, version: str) -> str | None:
        rows = self._query(
            "SELECT state FROM versions WHERE task = ? AND version = ?", (task, version)
        )
        return None if not rows else str(rows[0][0])

    def versions(self, task: str) -> list[str]:
        """Versions of `task` recorded here (by `consume`), in first-recorded order."""
        rows = self._query("SELECT version FROM versions WHERE task = ? ORDER BY rowid", (task,))
        return [str(row[0]) for row in rows]

    def outbox_add(
        self, task: str, version: str, messages: Sequence[OutboxMessage | Queued]
    ) -> int:
        """Queue messages outside a consume (e.g. a rollback event)."""
        with self._tx() as conn:
            return pending_outbox.outbox_add(conn, task, version, messages, self._clock())

    def outbox_unsent(self) -> list[OutboxItem]:
        """Queued messages not yet marked sent, oldest first (resend them after a crash)."""
        with self._lock:
            return pending_outbox.outbox_unsent(self._conn)

    def outbox_mark_sent(self, item_id: int) -> bool:
        with self._tx() as conn:
            return pending_outbox.outbox_mark_sent(conn, item_id, self._clock())

    def outbox_drop_promotion(self, task: str, version: str, reason: str) -> int:
        """Withdraw the unsent AdapterPromoted of a version that did not take the pointer."""
        with self._tx() as conn:
            return pending_outbox.outbox_drop(
                conn, task, version, "adapter_promoted", reason, self._clock()
            )

    # -- purge, replay -----------------------------------------------------------------------

    def purge_record(self, record_id: str) -> PurgeCounts:
        """Erase a deleted record's examples in every task (content too) and its replay
        copies; counts what was erased by where it was (heldout counted apart)."""
        with self._tx() as conn:
            rows = conn.execute(
                "SELECT task, example_id, split, state FROM examples"
                " WHERE record_id = ? AND state != 'purged'",
                (record_id,),
            ).fetchall()
            counts = {"pending": 0, "heldout": 0, "consumed": 0, "other": 0}
            for _task, _id, split, state in rows:
                where = "heldout" if split == "heldout" else str(state)
                counts[where if where in counts else "other"] += 1
            conn.executemany(_PURGE, [(task, example_id) for task, example_id, _s, _t in rows])
            replay = pending_replay.drop_record(conn, record_id)
            return PurgeCounts(replay=replay, **counts)

    def replay_offer(self, task: str, examples: Sequence[Example], capacity: int, seed: int) -> int:
        """Offer examples to `task`'s reservoir (each counts once); returns how many were kept."""
        with self._tx() as conn:
            return pending_replay.offer(conn, task, examples, capacity, seed)

    def replay_sample(self, task: str, k: int, seed: int) -> list[Example]:
        """Up to `k` reservoir examples in a seeded order (same contents + seed = same list)."""
        with self._lock:
            return pending_replay.sample(self._conn, task, k, seed)

    def replay_size(self, task: str) -> tuple[int, int]:
        """(examples in `task`'s reservoir, distinct examples ever offered to it)."""
        with self._lock:
            return pending_replay.size(self._conn, task)

    # -- votes, review, ratings --------------------------------------------------------------

    def add_vote(
        self,
        vote: Vote,
        holdout_percent: int,
        *,
        min_agreement: float = 1.0,
        source: OffsetRef | None = None,
    ) -> Outcome:
        """Record a label vote and update its item's label example (`pending_labels`)."""
        with self._tx() as conn:
            return pending_labels.record_vote(
                conn, vote, holdout_percent, min_agreement, source, self._clock()
            )

    def votes(self, task: str, item: str) -> list[Vote]:
        with self._lock:
            return pending_labels.votes_of(self._conn, task, item)

    def review_list(self, task: str) -> list[ReviewItem]:
        with self._lock:
            return pending_labels.review_list(self._conn, task)

    def review_resolve(
        self, task: str, item: str, label: str, actor: str, holdout_percent: int
    ) -> Example:
        with self._tx() as conn:
            return pending_labels.review_resolve(
                conn, task, item, label, actor, holdout_percent, self._clock()
            )

    def rating_add(self, task: str, version: str | None, request_id: str, rating: int) -> bool:
        """Record a watch rating (one per request; repeats ignored). True if new."""
        with self._tx() as conn:
            return pending_labels.rating_add(conn, task, version, request_id, rating, self._clock())

    def rating_stats(self, task: str, version: str | None) -> tuple[int, int]:
        """(rated, negative) answers of `version` (None = base model)."""
        with self._lock:
            return pending_labels.rating_stats(self._conn, task, version)

    def load_failure_add(self, task: str, version: str, node: str, reason: str) -> bool:
        """Record a node's report that it could not load `task@version` (durable: the online
        watch acts on it even after a restart or a standby takeover). True if new."""
        with self._tx() as conn:
            return pending_labels.load_failure_add(conn, task, version, node, reason, self._clock())

    def load_failure(self, task: str, version: str) -> str | None:
        """The first reported failure to load `task@version`, if any."""
        with self._lock:
            return pending_labels.load_failure(self._conn, task, version)


def _kinds_filter(kinds: Collection[str] | None) -> tuple[str, tuple[str, ...]]:
    """An SQL condition (and its arguments) keeping only examples of `kinds` (None: all)."""
    if kinds is None:
        return "", ()
    chosen = tuple(sorted(kinds))
    return f" AND kind IN ({', '.join('?' * len(chosen)) or 'NULL'})", chosen
