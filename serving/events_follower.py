"""Follows `model.events` for the adapter registry: a confluent-kafka consumer polled on its own
thread, each decoded event handed to `on_event` on the event loop. Undecodable messages are
logged and skipped; nothing one message does can stop the loop.

Events only say "look at the pointer again", so the group is per node, starts at the log end
and auto-commits; after every partition assignment the registry re-reads all pointers, which
covers events published while this node was not yet consuming.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from confluent_kafka import KafkaError

from lorafeed.kafka_clients import make_consumer
from schemas.codec import decode
from schemas.errors import SchemaError
from schemas.fields import cut
from schemas.topics import Topic, topic_name
from serving.registry_types import SwapOutcome

log = logging.getLogger(__name__)


class EventSink(Protocol):
    """What the follower feeds (serving.registry.AdapterRegistry)."""

    def on_event(self, event: object) -> Awaitable[SwapOutcome]: ...

    def sync(self) -> Awaitable[list[SwapOutcome]]: ...


class MessageLike(Protocol):
    def error(self) -> Any: ...

    def value(self) -> bytes | None: ...

    def partition(self) -> int | None: ...

    def offset(self) -> int | None: ...


class ConsumerLike(Protocol):
    """The part of confluent_kafka.Consumer the follower uses."""

    def subscribe(self, topics: list[str], on_assign: Callable[..., None]) -> None: ...

    def poll(self, timeout: float) -> MessageLike | None: ...

    def close(self) -> None: ...


def group_id(node_id: str) -> str:
    """The consumer group of a serving node: its own, so every node sees every event."""
    return f"serving-{node_id}"


class EventsFollower:
    """Consumes `topic` with `consumer` until `run`'s stop event is set."""

    def __init__(
        self, sink: EventSink, consumer: ConsumerLike, topic: str, *, poll_timeout_s: float = 0.5
    ) -> None:
        self._sink = sink
        self._consumer = consumer
        self._topic = topic
        self._poll_timeout_s = poll_timeout_s
        self._assigned = threading.Event()  # set by the poll thread, read on the loop

    @classmethod
    def connect(
        cls, sink: EventSink, bootstrap_servers: str, node_id: str, prefix: str = ""
    ) -> EventsFollower:
        """A follower with a real consumer in group `serving-<node_id>`."""
        consumer = make_consumer(
            bootstrap_servers,
            group_id(node_id),
            **{
                "auto.offset.reset": "latest",
                "enable.auto.commit": True,
                "enable.auto.offset.store": True,
            },
        )
        return cls(sink, consumer, topic_name(Topic.MODEL_EVENTS, prefix))

    async def run(self, stop: asyncio.Event) -> None:
        """Poll, decode and dispatch until `stop` is set; closes the consumer at the end."""
        loop = asyncio.get_running_loop()
        with ThreadPoolExecutor(1, thread_name_prefix="model-events") as poller:
            await loop.run_in_executor(poller, self._subscribe)
            try:
                while not stop.is_set():
                    message = await loop.run_in_executor(
                        poller, self._consumer.poll, self._poll_timeout_s
                    )
                    if self._assigned.is_set():
                        self._assigned.clear()
                        await self._resync()
                    if message is not None:
                        await self.handle(message)
            finally:
                await loop.run_in_executor(poller, self._consumer.close)

    async def handle(self, message: MessageLike) -> SwapOutcome | None:
        """Decode one message and pass it on; None when it was skipped."""
        where = f"{self._topic}[{message.partition()}]@{message.offset()}"
        error = message.error()
        if error is not None:
            if getattr(error, "code", lambda: None)() != KafkaError._PARTITION_EOF:
                log.warning("%s: consumer error %s", where, error)
            return None
        value = message.value()
        try:
            event = decode(Topic.MODEL_EVENTS, value if value is not None else b"")
        except SchemaError as exc:
            log.warning("%s: skipped an undecodable model event: %s", where, cut(str(exc), 300))
            return None
        try:
            outcome = await self._sink.on_event(event)
        except Exception:  # the registry should not raise; never let it end the loop
            log.exception("%s: handling %s failed", where, type(event).__name__)
            return None
        kind = type(event).__name__
        log.info("%s: %s -> %s %s %s", where, kind, outcome.status, outcome.version, outcome.reason)
        return outcome

    def _subscribe(self) -> None:
        self._consumer.subscribe([self._topic], on_assign=self._on_assign)

    def _on_assign(self, _consumer: object, partitions: list[Any]) -> None:  # poll thread
        if partitions:
            self._assigned.set()

    async def _resync(self) -> None:
        try:
            outcomes = await self._sink.sync()
        except Exception:
            log.exception("re-reading champion pointers after assignment failed")
            return
        for outcome in outcomes:
            if outcome.status != "unchanged":
                log.info("after assignment: %s", outcome)
