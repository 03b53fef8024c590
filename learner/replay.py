"""Replay reservoir arithmetic (pure): which slot an offered example takes, and sample order.

Classic reservoir sampling (Algorithm R) with the random draw for the `seen`-th offer derived
from sha256(seed, task, seen): a restarted learner that persisted `seen` continues identically.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence


def _draw(*parts: object) -> int:
    digest = hashlib.sha256(":".join(str(part) for part in parts).encode("utf-8")).hexdigest()
    return int(digest[:16], 16)


def reservoir_slot(task: str, seen: int, capacity: int, seed: int) -> int | None:
    """Slot (0..capacity-1) the `seen`-th offered example (1-based) replaces, or None to skip.

    The first `capacity` offers fill slots in order; offer `seen` > capacity keeps its example
    with probability capacity / seen, replacing a uniformly chosen slot.
    """
    if seen < 1:
        raise ValueError(f"seen {seen} must be >= 1")
    if capacity <= 0:
        return None
    if seen <= capacity:
        return seen - 1
    j = _draw(seed, task, seen) % seen
    return j if j < capacity else None


def sample_order(example_ids: Sequence[str], seed: int) -> list[str]:
    """`example_ids` in a seeded pseudo-random order (stable for the same ids and seed)."""
    return sorted(example_ids, key=lambda example_id: (_draw(seed, example_id), example_id))
