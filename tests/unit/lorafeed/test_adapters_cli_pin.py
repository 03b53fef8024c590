"""Which model event a pin sends, so nodes switch at once: a manual rollback when it moves the
champion from one version to another, a promotion when the task was on its base model."""

from __future__ import annotations

from datetime import UTC, datetime

from lorafeed.adapter_pointers import Champion
from lorafeed.adapters_cli import _pin_event
from schemas.model_events import AdapterPromoted, AdapterRolledBack

NOW = datetime(2026, 12, 7, tzinfo=UTC)


def champ(version: str) -> Champion:
    return Champion(version=version, manifest_sha256=version[0] * 64, updated_at=NOW)


def test_a_pin_that_moves_the_champion_is_announced() -> None:
    back = _pin_event("chat", champ("2.0.0"), champ("1.0.0"), "pinned at 1.0.0 by ops", NOW)
    assert isinstance(back, AdapterRolledBack)
    assert (back.from_version, back.to_version, back.automatic) == ("2.0.0", "1.0.0", False)
    assert back.manifest_sha256 == "1" * 64 and "by ops" in back.reason

    forward = _pin_event("chat", None, champ("3.0.0"), "pinned", NOW)
    assert isinstance(forward, AdapterPromoted) and forward.version == "3.0.0"


def test_a_pin_that_changes_nothing_sends_no_model_event() -> None:
    assert _pin_event("chat", champ("1.0.0"), champ("1.0.0"), "again", NOW) is None
    assert _pin_event("chat", champ("1.0.0"), None, "to base", NOW) is None
