"""Learner test helpers: an in-memory event sink and a cycle context on local files."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from learner.cycle import CycleContext
from learner.pending import PendingStore
from lorafeed.adapter_store import AdapterStore
from schemas import MODEL_EVENT_ADAPTER, Event, Topic


class Sent:
    """What a cycle would have put on the broker, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[Topic, str, bytes]] = []

    def __call__(self, events: Sequence[tuple[Topic, str, Event | bytes]]) -> None:
        for topic, key, value in events:
            assert isinstance(value, bytes)
            self.events.append((topic, key, value))

    def types(self) -> list[str]:
        """The `type` of every model event sent."""
        return [
            MODEL_EVENT_ADAPTER.validate_json(value).type
            for topic, _key, value in self.events
            if topic is Topic.MODEL_EVENTS
        ]


def make_ctx(root: Path, models_dir: Path, sent: Sent) -> CycleContext:
    """A cycle context whose adapter store and pending store live under `root`."""
    root.mkdir(parents=True, exist_ok=True)
    return CycleContext(
        store=AdapterStore(root / "adapters"),
        pending=PendingStore(root / "pending.sqlite3"),
        models_dir=models_dir,
        base_models={},
        send=sent,
    )
