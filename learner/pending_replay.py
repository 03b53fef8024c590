"""The pending store's replay reservoir tables: per task `capacity` slots filled by reservoir
sampling (`learner.replay`), with the offer count persisted so a restart continues identically.

Functions over an open connection; `PendingStore` wraps each in one transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from learner.examples import Example
from learner.replay import reservoir_slot, sample_order

NEVER_REPLAYED = frozenset({"negative"})


def offer(
    conn: sqlite3.Connection, task: str, examples: Sequence[Example], capacity: int, seed: int
) -> int:
    """Offer examples to `task`'s reservoir; returns how many were stored.

    Each example counts once, however often offered (tracked in the examples table, or by its
    presence in the reservoir). Slots freed by a purge or record update are refilled first.
    Lowering `capacity` drops the slots above it.
    """
    if capacity <= 0:
        return 0
    conn.execute("DELETE FROM replay WHERE task = ? AND slot >= ?", (task, capacity))
    row = conn.execute("SELECT seen FROM replay_meta WHERE task = ?", (task,)).fetchone()
    seen = 0 if row is None else int(row[0])
    used = {int(r[0]) for r in conn.execute("SELECT slot FROM replay WHERE task = ?", (task,))}
    stored = 0
    for ex in examples:
        if ex.kind in NEVER_REPLAYED or _already_offered(conn, task, ex.example_id):
            continue
        seen += 1
        conn.execute(
            "UPDATE examples SET replay_offered = 1 WHERE task = ? AND example_id = ?",
            (task, ex.example_id),
        )
        free = next((slot for slot in range(capacity) if slot not in used), None)
        slot = free if free is not None else reservoir_slot(task, seen, capacity, seed)
        if slot is None:
            continue
        conn.execute(
            "INSERT OR REPLACE INTO replay (task, slot, example_id, json, record_id)"
            " VALUES (?, ?, ?, ?, ?)",
            (task, slot, ex.example_id, ex.to_json(), ex.record_id),
        )
        used.add(slot)
        stored += 1
    conn.execute("INSERT OR REPLACE INTO replay_meta (task, seen) VALUES (?, ?)", (task, seen))
    return stored


def _already_offered(conn: sqlite3.Connection, task: str, example_id: str) -> bool:
    in_reservoir = conn.execute(
        "SELECT 1 FROM replay WHERE task = ? AND example_id = ?", (task, example_id)
    ).fetchone()
    flagged = conn.execute(
        "SELECT 1 FROM examples WHERE task = ? AND example_id = ? AND replay_offered = 1",
        (task, example_id),
    ).fetchone()
    return in_reservoir is not None or flagged is not None


def sample(conn: sqlite3.Connection, task: str, k: int, seed: int) -> list[Example]:
    """Up to `k` reservoir examples in a seeded order (same contents + seed = same sample)."""
    rows = conn.execute("SELECT example_id, json FROM replay WHERE task = ?", (task,)).fetchall()
    by_id = {str(example_id): str(payload) for example_id, payload in rows}
    return [Example.from_json(by_id[i]) for i in sample_order(list(by_id), seed)[: max(k, 0)]]


def size(conn: sqlite3.Connection, task: str) -> tuple[int, int]:
    """(examples in the reservoir, distinct examples ever offered) for `task`."""
    stored = conn.execute("SELECT COUNT(*) FROM replay WHERE task = ?", (task,)).fetchone()[0]
    row = conn.execute("SELECT seen FROM replay_meta WHERE task = ?", (task,)).fetchone()
    return int(stored), 0 if row is None else int(row[0])


def drop_record(
    conn: sqlite3.Connection,
    record_id: str,
    task: str | None = None,
    keep: dict[str, str] | None = None,
) -> int:
    """Remove a record's reservoir copies (of one task), except ids in `keep` with equal JSON."""
    rows = conn.execute(
        "SELECT task, example_id, json FROM replay WHERE record_id = ?", (record_id,)
    ).fetchall()
    dropped = 0
    for row_task, example_id, payload in rows:
        if task is not None and row_task != task:
            continue
        if keep is not None and keep.get(example_id) == payload:
            continue
        conn.execute("DELETE FROM replay WHERE task = ? AND example_id = ?", (row_task, example_id))
        dropped += 1
    return dropped
