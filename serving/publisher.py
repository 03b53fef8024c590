"""Publishing events from the serving node: `publish` returns only once the broker acknowledged.
`KafkaPublisher` wraps a confluent-kafka producer polled by a background thread, with a bound on
unacknowledged messages so a stalled broker turns into fast 503s, not a pile-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any, Protocol

from confluent_kafka import KafkaError, KafkaException, Producer

from lorafeed.kafka_clients import producer_config
from serving.errors import ServingError


class PublishError(ServingError):
    """Base of publishing failures."""


class PublishFailed(PublishError):
    """The broker refused the message or did not acknowledge it in time."""


class PublishQueueFull(PublishError):
    """Too many messages await the broker's acknowledgement; answer 503 and retry later."""


class EventPublisher(Protocol):
    """Sends one message and waits for the broker's acknowledgement (raises PublishError)."""

    async def publish(self, topic: str, key: str, value: bytes) -> None: ...


class ProducerLike(Protocol):
    """The part of confluent_kafka.Producer the publisher uses."""

    def produce(self, topic: str, *args: Any, **kwargs: Any) -> None: ...

    def poll(self, timeout: float) -> int: ...

    def flush(self, timeout: float) -> int: ...


class KafkaPublisher:
    """Publishes through ``producer``; at most ``max_inflight`` unacknowledged messages, each
    awaited at most ``timeout_s``. Call `close` on shutdown (flushes, stops the poll thread)."""

    def __init__(
        self,
        producer: ProducerLike,
        *,
        timeout_s: float = 10.0,
        max_inflight: int = 1000,
        poll_interval_s: float = 0.05,
    ) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s!r}")
        if max_inflight < 1:
            raise ValueError(f"max_inflight must be >= 1, got {max_inflight!r}")
        self.producer = producer
        self.timeout_s = timeout_s
        self.max_inflight = max_inflight
        self.poll_interval_s = poll_interval_s
        self._lock = threading.Lock()
        self._inflight = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def connect(
        cls, bootstrap_servers: str, *, timeout_s: float = 10.0, max_inflight: int = 1000,
        **overrides: Any,
    ) -> KafkaPublisher:
        """A publisher with lorafeed's producer settings; librdkafka gives up on a message
        when the caller would (``message.timeout.ms`` = ``timeout_s``)."""
        config = producer_config(
            bootstrap_servers, **{"message.timeout.ms": int(timeout_s * 1000), **overrides}
        )
        return cls(Producer(config), timeout_s=timeout_s, max_inflight=max_inflight)

    @property
    def inflight(self) -> int:
        """Messages produced and not yet acknowledged or failed."""
        return self._inflight

    async def publish(self, topic: str, key: str, value: bytes) -> None:
        loop = asyncio.get_running_loop()
        self._ensure_polling()
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if self._inflight >= self.max_inflight:
                raise PublishQueueFull(
                    f"{self._inflight} messages await the broker's ack, "
                    f"max_inflight={self.max_inflight}"
                )
            self._inflight += 1

        def on_delivery(err: KafkaError | None, _msg: object) -> None:  # poll thread
            self._done()
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
                loop.call_soon_threadsafe(_settle, future, topic, err)

        try:
            self.producer.produce(topic, value=value, key=key.encode(), on_delivery=on_delivery)
        except BufferError as exc:
            self._done()
            raise PublishQueueFull(f"the producer's local queue is full: {exc}") from exc
        except KafkaException as exc:
            self._done()
            raise PublishFailed(f"{topic}: the producer refused the message: {exc}") from exc
        try:
            await asyncio.wait_for(future, self.timeout_s)  # cancels it on timeout
        except TimeoutError as exc:
            raise PublishFailed(
                f"{topic}: no broker acknowledgement within {self.timeout_s:g} s"
            ) from exc

    def close(self, timeout_s: float = 10.0) -> None:
        """Delivers what is queued (up to ``timeout_s``) and stops the poll thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None
        self.producer.flush(timeout_s)

    def _done(self) -> None:
        with self._lock:
            self._inflight -= 1

    def _ensure_polling(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._poll_loop, name="publisher-poll", daemon=True
            )
            self._thread.start()

    def _poll_loop(self) -> None:
        while not self._stop.is_set():
            self.producer.poll(self.poll_interval_s)


def _settle(future: asyncio.Future[None], topic: str, err: KafkaError | None) -> None:
    if future.done():  # the caller timed out or was cancelled
        return
    if err is None:
        future.set_result(None)
    else:
        future.set_exception(PublishFailed(f"{topic}: the broker refused the message: {err}"))
