"""The pending store's outbox: model events queued in the same transaction as the state they
announce, sent after commit, marked sent afterwards (a crash in between resends them).

Functions over an open connection; `PendingStore` wraps each in one transaction.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable

from learner.pending_schema import OutboxItem, OutboxMessage


def outbox_add(
    conn: sqlite3.Connection,
    task: str,
    version: str,
    messages: Iterable[OutboxMessage | tuple[str, str | None, bytes]],
    now: float,
) -> int:
    rows = [(task, version, *OutboxMessage(*message), now) for message in messages]
    conn.executemany(
        "INSERT INTO outbox (task, version, topic, key, payload, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        rows,
    )
    return len(rows)


def outbox_unsent(conn: sqlite3.Connection) -> list[OutboxItem]:
    rows = conn.execute(
        "SELECT id, topic, key, payload FROM outbox WHERE sent_at IS NULL ORDER BY id"
    ).fetchall()
    return [OutboxItem(int(i), str(topic), key, bytes(payload)) for i, topic, key, payload in rows]


def outbox_mark_sent(conn: sqlite3.Connection, item_id: int, now: float) -> bool:
    cur = conn.execute(
        "UPDATE outbox SET sent_at = ? WHERE id = ? AND sent_at IS NULL", (now, item_id)
    )
    return cur.rowcount == 1


def outbox_drop(
    conn: sqlite3.Connection, task: str, version: str, event_type: str, reason: str, now: float
) -> int:
    """Withdraw unsent messages of (task, version) whose JSON `type` is `event_type`."""
    rows = conn.execute(
        "SELECT id, payload FROM outbox WHERE task = ? AND version = ? AND sent_at IS NULL",
        (task, version),
    ).fetchall()
    dropped = 0
    for item_id, payload in rows:
        try:
            kind = json.loads(bytes(payload)).get("type")
        except (ValueError, AttributeError):
            continue
        if kind == event_type:
            conn.execute(
                "UPDATE outbox SET sent_at = ?, dropped = ? WHERE id = ?", (now, reason, item_id)
            )
            dropped += 1
    return dropped
