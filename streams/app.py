"""Composition root of the streams worker: settings, clients, models, and the faust agent.

The agent takes batches from records.raw without auto-acks (`noack_take`), runs the blocking
indexing work in an executor thread (so faust keeps heartbeating within the ~6 s session),
publishes the outcome, and only then acknowledges the batch, so offsets are committed after
their effects are durable. An outage is retried with backoff; nothing is acknowledged meanwhile.
Run it with `lorafeed run streams` (several workers share the partitions of one group).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import faust

from lorafeed import failpoints
from lorafeed.embedder import SentenceEmbedder
from lorafeed.endpoints import Endpoints, pii_key, resolve_endpoints
from lorafeed.kafka_clients import faust_app_settings, make_producer
from lorafeed.knowledge import KnowledgeBase, KnowledgeConfig
from lorafeed.log_redaction import install_log_redaction
from lorafeed.privacy import Pseudonymizer
from lorafeed.settings import PlatformSettings
from lorafeed.stores import make_milvus, make_redis
from schemas import TOPICS, Topic, topic_name
from streams import metrics
from streams.chunking import ChunkConfig
from streams.dedup import NearDupConfig
from streams.dedup_store import DedupStore
from streams.indexer import Incoming, Indexer, IndexerConfig, Unavailable
from streams.outputs import PublishError, publish_outcome
from streams.prepare import PrepareConfig
from streams.quality import QualityConfig
from streams.settings import StreamsSettings

log = logging.getLogger("lorafeed.streams")

SETUP_FAILED_EXIT = 3
BEFORE_ACK = failpoints.declare("streams.before_ack", "outcome published, batch not acked")


def build_indexer(
    platform: PlatformSettings, endpoints: Endpoints, settings: StreamsSettings
) -> tuple[Indexer, Any]:
    """Every client and model the worker needs; returns the indexer and the outcome producer."""
    embedder = SentenceEmbedder(settings.embedder_dir)
    knowledge = KnowledgeBase(
        make_milvus(endpoints.milvus_uri),
        KnowledgeConfig(collection=settings.collection, dim=embedder.dim),
    )
    knowledge.ensure_collection()
    config = IndexerConfig(
        collection=settings.collection,
        prepare=PrepareConfig(
            quality=QualityConfig(min_chars=settings.min_chars, max_chars=settings.max_chars),
            near_dup=NearDupConfig(threshold=settings.near_dup_threshold),
        ),
        chunking=ChunkConfig(
            max_tokens=settings.chunk_max_tokens,
            overlap_tokens=settings.chunk_overlap_tokens,
            model_max_tokens=embedder.max_tokens,
        ),
    )
    dedup = DedupStore(
        make_redis(endpoints.redis_url),
        f"{endpoints.topic_prefix}{settings.collection}",
        int(settings.dedup_ttl_days * 86400),
    )
    indexer = Indexer(
        dedup=dedup,
        knowledge=knowledge,
        embedder=embedder,
        pseudonymizer=Pseudonymizer(pii_key(platform)),
        config=config,
        source_topic=topic_name(Topic.RECORDS_RAW, endpoints.topic_prefix),
    )
    return indexer, make_producer(endpoints.bootstrap_servers)


def build_app(
    platform: PlatformSettings, endpoints: Endpoints, settings: StreamsSettings
) -> faust.App:
    prefix = endpoints.topic_prefix
    app = faust.App(**faust_app_settings(endpoints.bootstrap_servers, settings.app_id, prefix))
    raw = app.topic(
        topic_name(Topic.RECORDS_RAW, prefix),
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=TOPICS[Topic.RECORDS_RAW].partitions,
    )
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="indexer")
    state: dict[str, Any] = {}

    @app.task
    async def load() -> None:
        # Models load in the executor: the event loop must keep heartbeating meanwhile.
        loop = asyncio.get_running_loop()
        try:
            state["indexer"], state["producer"] = await loop.run_in_executor(
                executor, build_indexer, platform, endpoints, settings
            )
        except Exception:
            # A setup failure (Milvus unreachable, a bad model dir) must not leave a worker
            # that holds partitions and never indexes: exit loudly, nothing was acknowledged,
            # and the supervisor restarts it with backoff.
            log.critical("streams worker cannot start", exc_info=True)
            logging.shutdown()
            os._exit(SETUP_FAILED_EXIT)
        log.info("streams worker ready: collection %s", settings.collection)

    @app.agent(raw)
    async def index_records(stream: faust.Stream) -> None:
        async for events in stream.noack_take(
            settings.batch_max, within=settings.batch_wait_ms / 1000
        ):
            while "indexer" not in state:
                await asyncio.sleep(0.1)
            batch = [
                Incoming(
                    e.message.value,
                    e.message.key,
                    e.message.partition,
                    e.message.offset,
                    e.message.timestamp,
                )
                for e in events
            ]
            await _index_until_done(state, prefix, batch, executor, settings.retry_max_backoff_s)
            failpoints.failpoint(BEFORE_ACK)
            for event in events:
                await stream.ack(event)

    return app


async def _index_until_done(
    state: dict[str, Any],
    prefix: str,
    batch: list[Incoming],
    executor: ThreadPoolExecutor,
    max_backoff_s: float,
) -> None:
    """Index and publish ``batch``, retrying outages with backoff; never gives up on a batch."""
    loop = asyncio.get_running_loop()
    delay = 0.5
    while True:
        began = time.perf_counter()
        try:
            await loop.run_in_executor(executor, _index_and_publish, state, prefix, batch)
        except (Unavailable, PublishError) as exc:
            metrics.RETRIES.inc()
            log.warning("batch of %d not indexed (%s); retrying in %.1f s", len(batch), exc, delay)
            await asyncio.sleep(delay)
            delay = min(max_backoff_s, delay * 2)
            continue
        metrics.BATCH_SECONDS.observe(time.perf_counter() - began)
        return


def _index_and_publish(state: dict[str, Any], prefix: str, batch: list[Incoming]) -> None:
    began = time.perf_counter()
    outcome = state["indexer"].process(batch)
    publish_outcome(state["producer"], prefix, outcome)
    _return_freed_memory()
    chunks = sum(event.chunk_count for event in outcome.indexed)
    aliases = sum(1 for event in outcome.indexed if event.duplicate_of)
    log.info(
        "batch of %d: %d chunks indexed, %d duplicates, %d dead-lettered in %.2f s",
        len(batch),
        chunks,
        aliases,
        len(outcome.dead),
        time.perf_counter() - began,
    )


def _return_freed_memory() -> None:
    """Give memory freed by a batch back to the OS (glibc keeps it per arena otherwise), so
    the worker's RSS tracks its live data rather than the largest batch it ever saw."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to do
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    install_log_redaction()  # request lines and echoed input may carry raw PII
    platform, settings = PlatformSettings(), StreamsSettings()
    failpoints.check_armed()
    if settings.torch_threads:
        import torch

        torch.set_num_threads(settings.torch_threads)
    if settings.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(settings.metrics_port, addr=settings.metrics_host)
    app = build_app(platform, resolve_endpoints(platform), settings)
    sys.argv = ["lorafeed-streams", "worker", "-l", "info", "--without-web", *(argv or [])]
    app.main()
