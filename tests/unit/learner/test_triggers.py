"""Update triggers: enough pending examples, or the oldest waited long enough."""

from __future__ import annotations

from learner.triggers import due
from schemas.tasks import TriggerSettings

TRIGGER = TriggerSettings(min_examples=10, max_wait_seconds=60)


def test_nothing_pending_is_never_due() -> None:
    assert due(0, None, TRIGGER) is None
    assert due(0, 10_000.0, TRIGGER) is None


def test_enough_examples_are_due() -> None:
    reason = due(10, 1.0, TRIGGER)
    assert reason is not None and reason.startswith("min_examples") and "10" in reason


def test_few_fresh_examples_are_not_due() -> None:
    assert due(9, 59.9, TRIGGER) is None
    assert due(3, None, TRIGGER) is None


def test_old_examples_are_due_however_few() -> None:
    reason = due(1, 60.0, TRIGGER)
    assert reason is not None and reason.startswith("max_wait") and "60s" in reason
