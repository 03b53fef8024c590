"""The streaming scorer: every event on `transactions.raw` is classified by its task's current
adapter (the same engines and version rules as `/v1/score`) into `scores.out`.

At least once and idempotent by event id: the first score of an event is kept in Redis for the
task's label horizon and a redelivery republishes that same score instead of scoring again; the
score context is stored like an HTTP score's, so a chargeback label sent weeks later to
`/v1/feedback` with `request_id` = event id still trains. Offsets are committed only after
`scores.out` (and `feedback.dlq` for invalid events) acknowledged. `lorafeed run scorer`.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import redis.asyncio as aioredis
from confluent_kafka import Consumer, KafkaException, Message
from redis.exceptions import RedisError

from lorafeed.kafka_clients import dead_letter_of
from schemas import Topic, decode, encode, topic_name
from schemas.dead_letters import DeadLetterReason
from schemas.errors import SchemaError
from schemas.model_events import ModelEventBase
from schemas.transactions import TransactionReceived, TransactionScored
from serving.contexts import ContextStore, ServedContext
from serving.errors import InvalidRequest, ServingError
from serving.publisher import EventPublisher, PublishError
from serving.registry import AdapterRegistry
from serving.requests import has_input, score_text

log = logging.getLogger(__name__)
DAY_S = 86_400


class ScoringWorker:
    """Consume, score per task in micro-batches, publish, then commit; see the module doc."""

    def __init__(
        self,
        consumer: Consumer,
        registry: AdapterRegistry,
        contexts: ContextStore,
        redis: aioredis.Redis,
        publisher: EventPublisher,
        prefix: str,
        *,
        batch: int = 64,
        key_prefix: str = "lorafeed:scorer:",
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.consumer, self.registry, self.contexts = consumer, registry, contexts
        self.redis, self.publisher, self.prefix = redis, publisher, prefix
        self.batch, self.key_prefix, self.clock = batch, key_prefix, clock
        self.scored = self.replayed = self.dead = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Poll batches until `stop`; a failed batch is retried (nothing committed)."""
        loop = asyncio.get_running_loop()
        with ThreadPoolExecutor(1, thread_name_prefix="scorer-poll") as poller:
            await loop.run_in_executor(
                poller, self.consumer.subscribe, [topic_name(Topic.TRANSACTIONS_RAW, self.prefix)]
            )
            while not stop.is_set():
                messages = await loop.run_in_executor(
                    poller, self.consumer.consume, self.batch, 0.5
                )
                messages = [m for m in messages if m.error() is None]
                if not messages:
                    continue
                await self._handle_until_done(messages, stop)
                await loop.run_in_executor(poller, self._commit, messages)
            await loop.run_in_executor(poller, self.consumer.close)

    async def _handle_until_done(self, messages: Sequence[Message], stop: asyncio.Event) -> None:
        """Retry a batch with backoff while Redis or the broker are down (redelivery-safe)."""
        delay = 0.5
        while True:
            try:
                await self.handle(messages)
                return
            except (RedisError, PublishError, KafkaException) as exc:
                log.warning(
                    "scorer: batch of %d failed, retrying in %.1fs: %s", len(messages), delay, exc
                )
                if stop.is_set():
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    def _commit(self, messages: Sequence[Message]) -> None:
        for msg in messages:
            self.consumer.store_offsets(message=msg)
        self.consumer.commit(asynchronous=False)

    async def handle(self, messages: Sequence[Message]) -> None:
        """Score, publish and remember one batch (raises if the broker or Redis fail)."""
        by_task: dict[str, list[tuple[TransactionReceived, Message]]] = {}
        known = sorted(self.registry.tasks)
        sends: list[asyncio.Future[None] | asyncio.Task[None]] = []
        for msg in messages:
            try:
                event = decode(Topic.TRANSACTIONS_RAW, msg.value() or b"")
            except SchemaError as exc:
                sends.append(asyncio.ensure_future(self._dead(msg, exc.reason, exc.message)))
                continue
            assert isinstance(event, TransactionReceived)
            if event.task not in self.registry.tasks:
                sends.append(
                    asyncio.ensure_future(
                        self._dead(
                            msg,
                            DeadLetterReason.UNKNOWN_TASK,
                            f"task {event.task!r} is not scored here; known: {known}",
                        )
                    )
                )
                continue
            if not has_input(event.text, event.fields):
                detail = "nothing to score: the text is blank and the fields are empty"
                dead = self._dead(msg, DeadLetterReason.INVALID_FIELD, detail)
                sends.append(asyncio.ensure_future(dead))
                continue
            by_task.setdefault(event.task, []).append((event, msg))
        for task, pairs in by_task.items():
            sends.extend(
                asyncio.ensure_future(self._publish(p)) for p in await self._scores(task, pairs)
            )
        await asyncio.gather(*sends)

    async def _scores(
        self, task: str, pairs: list[tuple[TransactionReceived, Message]]
    ) -> list[bytes]:
        keys = [f"{self.key_prefix}{event.event_id}" for event, _msg in pairs]
        known = await self.redis.mget(keys)
        fresh = [pair for pair, value in zip(pairs, known, strict=True) if value is None]
        payloads = [_as_bytes(v) for v in known if v is not None]
        self.replayed += len(payloads)
        if not fresh:
            return payloads
        texts = [score_text(e.text, e.fields) for e, _msg in fresh]
        horizon = self.registry.tasks[task].label_horizon_days * DAY_S
        async with self.registry.lease(task) as lease:
            results = await lease.engine.score_each(texts, lease.version)
            version = lease.version
        now = self.clock()
        for (event, msg), text, result in zip(fresh, texts, results, strict=True):
            if isinstance(result, InvalidRequest):  # this transaction alone cannot be scored
                await self._dead(msg, DeadLetterReason.INVALID_FIELD, str(result))
                continue
            if isinstance(result, ServingError):
                raise result
            scored = TransactionScored(
                schema_version=1,
                event_id=event.event_id,
                task=task,
                adapter_version=version,
                label=result.label,
                probabilities=dict(result.probabilities),
                low_margin=result.low_margin,
                scored_at=now,
            )
            payload = encode(scored)
            # First score wins: a concurrent redelivery elsewhere keeps the same answer.
            if await self.redis.set(
                f"{self.key_prefix}{event.event_id}", payload, nx=True, ex=horizon
            ):
                await self.contexts.put(
                    event.event_id,
                    ServedContext(
                        task=task,
                        kind="score",
                        input=text,
                        output=result.label,
                        adapter_version=version,
                        served_at=now,
                    ),
                    horizon,
                )
                self.scored += 1
            else:
                stored = await self.redis.get(f"{self.key_prefix}{event.event_id}")
                payload = payload if stored is None else _as_bytes(stored)
            payloads.append(payload)
        return payloads

    async def _publish(self, payload: bytes) -> None:
        scored = decode(Topic.SCORES_OUT, payload)
        assert isinstance(scored, TransactionScored)
        await self.publisher.publish(
            topic_name(Topic.SCORES_OUT, self.prefix), scored.event_id, payload
        )

    async def _dead(self, msg: Message, reason: DeadLetterReason, detail: str) -> None:
        self.dead += 1
        key, letter = dead_letter_of(msg, reason, detail, self.clock())
        await self.publisher.publish(
            topic_name(Topic.FEEDBACK_DLQ, self.prefix), key, encode(letter)
        )


def _as_bytes(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8")


def main() -> None:
    """Load the engines and registry like a serving node, then score until SIGTERM."""
    from lorafeed import failpoints
    from lorafeed.adapter_store_s3 import open_adapter_store
    from lorafeed.endpoints import pii_key, resolve_endpoints
    from lorafeed.kafka_clients import make_consumer
    from lorafeed.log_redaction import install_log_redaction
    from lorafeed.privacy import Pseudonymizer
    from lorafeed.settings import PlatformSettings
    from lorafeed.task_catalog import load_catalog
    from serving.app import load_engines
    from serving.events_follower import EventsFollower
    from serving.publisher import KafkaPublisher
    from serving.settings import ServingSettings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    install_log_redaction()  # request lines and echoed input may carry raw PII
    platform, settings = PlatformSettings(), ServingSettings()
    failpoints.check_armed()
    catalog = load_catalog(settings.tasks_file)
    classifiers = {n: t for n, t in catalog.tasks.items() if t.kind == "classification"}
    catalog = type(catalog)(classifiers, catalog.base_models, catalog.source)
    endpoints = resolve_endpoints(platform)
    prefix = endpoints.topic_prefix  # the stack state's prefix when settings leave it unset
    publisher = KafkaPublisher.connect(endpoints.bootstrap_servers)
    node = f"{settings.node_id}-scorer"

    async def publish_model_event(event: ModelEventBase) -> None:
        await publisher.publish(topic_name(Topic.MODEL_EVENTS, prefix), event.task, encode(event))

    async def serve() -> None:
        registry = AdapterRegistry(
            open_adapter_store(platform, settings.adapters_dir, role="follower"),
            load_engines(catalog, settings),
            node,
            publish_model_event,
        )
        client = aioredis.Redis.from_url(endpoints.redis_url, socket_timeout=5.0)
        contexts = ContextStore(
            client, Pseudonymizer(pii_key(platform)), prefix=settings.redis_prefix
        )
        consumer = make_consumer(endpoints.bootstrap_servers, settings.scorer_group_id)
        worker = ScoringWorker(
            consumer,
            registry,
            contexts,
            client,
            publisher,
            prefix,
            key_prefix=f"{settings.redis_prefix}scored:",  # beside the contexts, one namespace
        )
        follower = EventsFollower.connect(registry, endpoints.bootstrap_servers, node, prefix)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await registry.start()
        log.info(
            "scorer %s: tasks %s, versions %s",
            node,
            sorted(classifiers),
            registry.active_versions(),
        )
        try:
            await asyncio.gather(worker.run(stop), follower.run(stop))
            log.info(
                "scorer %s stopped: %d scored, %d replayed, %d dead-lettered",
                node,
                worker.scored,
                worker.replayed,
                worker.dead,
            )
        finally:
            await registry.close()
            publisher.close()
            await client.aclose()

    asyncio.run(serve())
