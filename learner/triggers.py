"""When a task's pending examples warrant an update (pure): enough examples, or waited too long."""

from __future__ import annotations

from schemas.tasks import TriggerSettings


def due(count: int, oldest_age_seconds: float | None, trigger: TriggerSettings) -> str | None:
    """The reason an update is due now, or None.

    `count` pending train examples, the oldest of them `oldest_age_seconds` old (None when
    there are none). Nothing is due without examples, however long the wait.
    """
    if count <= 0:
        return None
    if count >= trigger.min_examples:
        return f"min_examples: {count} pending >= {trigger.min_examples}"
    if oldest_age_seconds is not None and oldest_age_seconds >= trigger.max_wait_seconds:
        return (
            f"max_wait: oldest of {count} pending waited {oldest_age_seconds:.0f}s "
            f">= {trigger.max_wait_seconds}s"
        )
    return None
