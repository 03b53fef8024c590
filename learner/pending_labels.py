"""Label votes, the review queue and online-watch ratings inside the pending store's file.

Functions over an open transaction; `PendingStore` wraps each in one transaction.
"""

from __future__ import annotations

import sqlite3

from learner.aggregate import (
    Agreed,
    Outcome,
    Vote,
    aggregate,
    agreement_for,
    label_example,
    label_example_id,
)
from learner.errors import ReviewNotFound
from learner.examples import Example
from learner.pending_schema import OffsetRef, ReviewItem, upsert_example


def votes_of(conn: sqlite3.Connection, task: str, item: str) -> list[Vote]:
    rows = conn.execute(
        "SELECT annotator, label, text, domain FROM votes WHERE task = ? AND item = ?"
        " ORDER BY created_at, rowid",
        (task, item),
    ).fetchall()
    return [Vote(task, item, a, label, text, domain) for a, label, text, domain in rows]


def record_vote(
    conn: sqlite3.Connection,
    vote: Vote,
    percent: int,
    min_agreement: float,
    source: OffsetRef | None,
    now: float,
) -> Outcome:
    """Store `vote` (an annotator's repeat is ignored) and update the item's label example.

    Agreed: the "-" label example is created or refreshed while still pending (or back from
    review). Disputed: a pending label example moves to review and the item opens for review.
    After a review decision the decision stands; later votes are only recorded.
    """
    conn.execute(
        "INSERT OR IGNORE INTO votes (task, item, annotator, label, text, domain, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (vote.task, vote.item, vote.annotator, vote.label, vote.text, vote.domain, now),
    )
    votes = votes_of(conn, vote.task, vote.item)
    review = conn.execute(
        "SELECT state, label FROM review WHERE task = ? AND item = ?", (vote.task, vote.item)
    ).fetchone()
    if review is not None and review[0] == "resolved":
        label = str(review[1])
        return Agreed(label, agreement_for(votes, label), len(votes))
    outcome = aggregate(votes, min_agreement)
    example_id = label_example_id(vote.item)
    row = conn.execute(
        "SELECT state FROM examples WHERE task = ? AND example_id = ?", (vote.task, example_id)
    ).fetchone()
    state = None if row is None else str(row[0])
    if isinstance(outcome, Agreed):
        if state in (None, "pending", "review", "purged"):
            example = label_example(votes[0], outcome.label, outcome.agreement)
            if state == "review":
                conn.execute(
                    "UPDATE examples SET state = 'pending' WHERE task = ? AND example_id = ?",
                    (vote.task, example_id),
                )
                conn.execute(
                    "DELETE FROM review WHERE task = ? AND item = ? AND state = 'open'",
                    (vote.task, vote.item),
                )
            upsert_example(conn, example, percent, source, now)
        return outcome
    if state == "pending":
        conn.execute(
            "UPDATE examples SET state = 'review' WHERE task = ? AND example_id = ?",
            (vote.task, example_id),
        )
    conn.execute(
        "INSERT OR IGNORE INTO review (task, item, state, opened_at) VALUES (?, ?, 'open', ?)",
        (vote.task, vote.item, now),
    )
    return outcome


def review_list(conn: sqlite3.Connection, task: str) -> list[ReviewItem]:
    """Open review items of `task`, oldest first, with their votes."""
    rows = conn.execute(
        "SELECT item, opened_at FROM review WHERE task = ? AND state = 'open'"
        " ORDER BY opened_at, item",
        (task,),
    ).fetchall()
    items = []
    for item, opened_at in rows:
        votes = votes_of(conn, task, item)
        text = votes[0].text if votes else ""
        pairs = tuple((v.annotator, v.label) for v in votes)
        items.append(ReviewItem(task, item, text, pairs, float(opened_at)))
    return items


def review_resolve(
    conn: sqlite3.Connection, task: str, item: str, label: str, actor: str, percent: int, now: float
) -> Example:
    """Close an open review item with `label` chosen by `actor`.

    The disputed "-" example (if not trained yet) is superseded by a new pending label example
    with id "fb:<item>:label:<actor>" whose agreement is the share of votes for `label`.
    """
    row = conn.execute(
        "SELECT state FROM review WHERE task = ? AND item = ?", (task, item)
    ).fetchone()
    if row is None or row[0] != "open":
        state = "never disputed" if row is None else "already resolved"
        raise ReviewNotFound(f"no open review item {item!r} in task {task!r} ({state})")
    votes = votes_of(conn, task, item)
    if not votes:
        raise ReviewNotFound(f"review item {item!r} in task {task!r} has no votes")
    example = label_example(votes[0], label, agreement_for(votes, label), annotator=actor)
    conn.execute(
        "UPDATE examples SET state = 'superseded'"
        " WHERE task = ? AND example_id = ? AND state = 'review'",
        (task, label_example_id(item)),
    )
    upsert_example(conn, example, percent, None, now)
    conn.execute(
        "UPDATE review SET state = 'resolved', label = ?, actor = ?, resolved_at = ?"
        " WHERE task = ? AND item = ?",
        (label, actor, now, task, item),
    )
    return example


def rating_add(
    conn: sqlite3.Connection,
    task: str,
    version: str | None,
    request_id: str,
    rating: int,
    now: float,
) -> bool:
    """Record one rating per (task, request); a repeat is ignored. True if it was new."""
    if rating not in (1, -1):
        raise ValueError(f"rating {rating!r} must be 1 or -1")
    cur = conn.execute(
        "INSERT OR IGNORE INTO ratings (task, version, request_id, rating, created_at)"
        " VALUES (?, ?, ?, ?, ?)",
        (task, version, request_id, rating, now),
    )
    return cur.rowcount == 1


def rating_stats(conn: sqlite3.Connection, task: str, version: str | None) -> tuple[int, int]:
    """(rated answers, negative ones) served by `version` of `task` (None = base model)."""
    row = conn.execute(
        "SELECT COUNT(*), COALESCE(SUM(rating = -1), 0) FROM ratings"
        " WHERE task = ? AND version IS ?",
        (task, version),
    ).fetchone()
    return int(row[0]), int(row[1])


def load_failure_add(
    conn: sqlite3.Connection, task: str, version: str, node: str, reason: str, now: float
) -> bool:
    """Remember that `node` could not load `task@version` (its first report kept). True if new."""
    cur = conn.execute(
        "INSERT OR IGNORE INTO load_failures (task, version, node, reason, created_at)"
        " VALUES (?, ?, ?, ?, ?)",
        (task, version, node, reason[:2000], now),
    )
    return cur.rowcount == 1


def load_failure(conn: sqlite3.Connection, task: str, version: str) -> str | None:
    """The first reported failure to load `task@version` ("node N: reason"), if any."""
    row = conn.execute(
        "SELECT node, reason FROM load_failures WHERE task = ? AND version = ?"
        " ORDER BY created_at, node LIMIT 1",
        (task, version),
    ).fetchone()
    return None if row is None else f"node {row[0]}: {row[1]}"
