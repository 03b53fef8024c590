"""The serving node's composition root: settings, task engines, adapter registry, Redis, broker
publisher, retrieval and the model-events follower, wired into `create_app`'s FastAPI app and
run by uvicorn. `python -m serving` / `lorafeed run serve --port P`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as aioredis
import uvicorn
from fastapi import FastAPI

from lorafeed import failpoints
from lorafeed.adapter_store_s3 import FollowingStore, follow_remote, open_adapter_store
from lorafeed.endpoints import Endpoints, pii_key, resolve_endpoints
from lorafeed.log_redaction import install_log_redaction
from lorafeed.models import default_cache_dir
from lorafeed.privacy import Pseudonymizer
from lorafeed.settings import PlatformSettings
from lorafeed.task_catalog import TaskCatalog, load_catalog
from lorafeed.task_models import resolve_base_model
from schemas import Topic, encode, topic_name
from schemas.model_events import ModelEventBase
from serving.api import create_app
from serving.contexts import ContextStore
from serving.deps import SearcherLike, ServingDeps
from serving.engine import EngineConfig, TaskEngine
from serving.events_follower import EventsFollower
from serving.metrics import ServingMetrics
from serving.microbatch import MicroBatchConfig
from serving.publisher import KafkaPublisher
from serving.ratelimit import RedisRateLimiter
from serving.registry import AdapterRegistry
from serving.settings import ServingSettings

log = logging.getLogger("serving")


def load_engines(catalog: TaskCatalog, settings: ServingSettings) -> dict[str, TaskEngine]:
    """One engine per task, its base model loaded (blocking, seconds per model)."""
    models_dir = settings.models_dir or default_cache_dir()
    config = EngineConfig(
        score_batch=MicroBatchConfig(
            max_batch=settings.score_batch_size, max_wait_ms=settings.score_batch_wait_ms
        )
    )
    engines = {}
    for name, task in sorted(catalog.tasks.items()):
        base_dir = resolve_base_model(task.base_model, models_dir, catalog.base_models)
        engines[name] = TaskEngine.load(
            task, base_dir, device=settings.device, dtype=settings.dtype, config=config
        )
        log.info("serving: task %s on %s (%s)", name, task.base_model, base_dir)
    return engines


def open_retriever(endpoints: Endpoints, settings: ServingSettings) -> SearcherLike | None:
    """The knowledge-base retriever, or None (logged) when retrieval is off or Milvus is not
    reachable: the node still scores and answers, ungrounded."""
    if not settings.retrieval:
        return None
    from lorafeed.embedder import SentenceEmbedder
    from lorafeed.knowledge import KnowledgeBase, KnowledgeConfig
    from lorafeed.retrieval import Retriever
    from lorafeed.stores import make_milvus

    try:
        embedder = SentenceEmbedder(settings.embedder_dir)
        kb = KnowledgeBase(
            make_milvus(endpoints.milvus_uri),
            KnowledgeConfig(collection=settings.collection, dim=embedder.dim),
        )
        return Retriever(kb, embedder)
    except Exception as exc:  # any Milvus/embedder failure: serve without grounding, loudly
        log.error("serving: retrieval disabled, knowledge base unavailable: %s", exc)
        return None


def build_app(platform: PlatformSettings, settings: ServingSettings) -> FastAPI:
    """Everything a node needs, wired; the returned app starts and stops it in its lifespan."""
    catalog = load_catalog(settings.tasks_file)
    endpoints = resolve_endpoints(platform)
    prefix = endpoints.topic_prefix  # the stack state's prefix when settings leave it unset
    engines = load_engines(catalog, settings)
    store = open_adapter_store(platform, settings.adapters_dir, role="follower")
    publisher = KafkaPublisher.connect(
        endpoints.bootstrap_servers,
        timeout_s=settings.publish_timeout_s,
        max_inflight=settings.publish_max_inflight,
    )
    model_events = topic_name(Topic.MODEL_EVENTS, prefix)

    async def publish_model_event(event: ModelEventBase) -> None:
        await publisher.publish(model_events, event.task, encode(event))

    metrics = ServingMetrics()
    registry = AdapterRegistry(
        store, engines, settings.node_id, publish_model_event, observer=metrics
    )
    client = aioredis.Redis.from_url(endpoints.redis_url, socket_timeout=5.0)
    pseudonymizer = Pseudonymizer(pii_key(platform))
    limiter = (
        RedisRateLimiter(
            client, limit=settings.rate_limit_per_minute, prefix=f"{settings.redis_prefix}rate:"
        )
        if settings.rate_limit_per_minute
        else None
    )
    deps = ServingDeps(
        settings=settings,
        registry=registry,
        contexts=ContextStore(client, pseudonymizer, prefix=settings.redis_prefix),
        feedback_publisher=publisher,
        audit_publisher=publisher,
        pseudonymizer=pseudonymizer,
        retriever=open_retriever(endpoints, settings),
        rate_limiter=limiter,
        metrics=metrics,
        topic_prefix=prefix,
    )
    app = create_app(deps)
    follower = EventsFollower.connect(
        registry, endpoints.bootstrap_servers, settings.node_id, prefix
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        outcomes = await registry.start()
        for outcome in outcomes:
            log.info("serving: %s", outcome)
        stop = asyncio.Event()
        following = asyncio.create_task(follower.run(stop), name="model-events")
        polling = (  # a remote store's pointers are also re-read now and then
            asyncio.create_task(
                follow_remote(registry.sync, platform.adapter_poll_s, stop), name="adapter-poll"
            )
            if isinstance(store, FollowingStore)
            else None
        )
        try:
            yield
        finally:
            stop.set()
            await following
            if polling is not None:
                await polling
            await registry.close()
            publisher.close()
            await client.aclose()

    app.router.lifespan_context = lifespan
    return app


def main(port: int | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    install_log_redaction()  # request lines and echoed input may carry raw PII
    platform, settings = PlatformSettings(), ServingSettings()
    if port is not None:
        settings = settings.model_copy(update={"port": port})
    failpoints.check_armed()
    if settings.torch_threads:
        import torch

        torch.set_num_threads(settings.torch_threads)
    app = build_app(platform, settings)
    log.info(
        "serving node %s on http://%s:%d (auth %s)",
        settings.node_id,
        settings.host,
        settings.port,
        "on" if settings.auth_enabled else "OFF",
    )
    uvicorn.run(
        app, host=settings.host, port=settings.port, log_level="info", timeout_graceful_shutdown=10
    )
