"""EventsFollower's loop: decodes model events for the registry, skips what it cannot decode,
survives a failing handler, and re-reads pointers after each partition assignment."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from schemas.codec import encode
from schemas.model_events import AdapterPromoted
from serving.events_follower import EventsFollower, group_id
from serving.registry_types import SwapOutcome

EVENT = AdapterPromoted(
    schema_version=1, event_id="e1", task="intent", occurred_at=datetime(2025, 1, 1, tzinfo=UTC),
    version="1.0.1", manifest_sha256="a" * 64,
)  # fmt: skip


class Message:
    def __init__(self, value: bytes | None, error: Any = None) -> None:
        self._value, self._error = value, error

    def error(self) -> Any:
        return self._error

    def value(self) -> bytes | None:
        return self._value

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return 7


class ListConsumer:
    """Hands out `messages`, then sets `stop`; calls on_assign before the first message."""

    def __init__(self, messages: list[Message], stop: asyncio.Event, loop: Any) -> None:
        self.messages = list(messages)
        self.stop, self.loop = stop, loop
        self.on_assign: Callable[..., None] | None = None
        self.closed = False

    def subscribe(self, topics: list[str], on_assign: Callable[..., None]) -> None:
        assert topics == ["t-model.events"]
        self.on_assign = on_assign

    def poll(self, timeout: float) -> Message | None:
        if self.on_assign is not None:
            self.on_assign(self, [0])
            self.on_assign = None
        if self.messages:
            return self.messages.pop(0)
        self.loop.call_soon_threadsafe(self.stop.set)
        return None

    def close(self) -> None:
        self.closed = True


class Sink:
    def __init__(self, fail_first: bool = False) -> None:
        self.events: list[object] = []
        self.syncs = 0
        self.fail_first = fail_first

    async def on_event(self, event: object) -> SwapOutcome:
        self.events.append(event)
        if self.fail_first and len(self.events) == 1:
            raise RuntimeError("boom")
        return SwapOutcome("intent", "activated", "1.0.1")

    async def sync(self) -> list[SwapOutcome]:
        self.syncs += 1
        return []


def follow(messages: list[Message], sink: Sink) -> ListConsumer:
    async def main() -> ListConsumer:
        stop = asyncio.Event()
        consumer = ListConsumer(messages, stop, asyncio.get_running_loop())
        follower = EventsFollower(sink, consumer, "t-model.events", poll_timeout_s=0.01)
        await asyncio.wait_for(follower.run(stop), 10)
        return consumer

    return asyncio.run(main())


def test_decoded_events_reach_the_registry_and_garbage_is_skipped() -> None:
    sink = Sink()
    messages = [Message(b"not json"), Message(None), Message(encode(EVENT)), Message(b"{}")]
    consumer = follow(messages, sink)
    assert sink.events == [EVENT]
    assert sink.syncs == 1  # after the partition assignment
    assert consumer.closed


def test_a_failing_handler_does_not_stop_the_loop() -> None:
    sink = Sink(fail_first=True)
    follow([Message(encode(EVENT)), Message(encode(EVENT))], sink)
    assert sink.events == [EVENT, EVENT]


def test_each_node_has_its_own_group() -> None:
    assert group_id("node-a") != group_id("node-b")
