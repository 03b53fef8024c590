"""The learner's composition root: settings, stores, broker and Redis clients, the intake
thread and the APScheduler tick. `python -m learner` / `lorafeed run learner`."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from types import FrameType

from apscheduler.schedulers.background import BackgroundScheduler

from learner.coordinator import Coordinator
from learner.cycle import CycleContext, trainable_kinds
from learner.errors import VersionTaken
from learner.intake_loop import IntakeLoop
from learner.lock import DEFAULT_PREFIX, TaskLock
from learner.metrics import LearnerMetrics
from learner.passages import MilvusPassages
from learner.pending import PendingStore
from learner.settings import LearnerSettings
from learner.versions import claim_version
from lorafeed import failpoints
from lorafeed.adapter_store_s3 import PublishingStore, open_adapter_store
from lorafeed.endpoints import pii_key, resolve_endpoints
from lorafeed.kafka_clients import make_consumer, make_producer
from lorafeed.log_redaction import install_log_redaction
from lorafeed.models import default_cache_dir
from lorafeed.privacy import Pseudonymizer
from lorafeed.publish import publish_events
from lorafeed.settings import PlatformSettings
from lorafeed.stores import make_redis
from lorafeed.task_catalog import load_catalog
from schemas import Event, Topic

log = logging.getLogger("learner")


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    install_log_redaction()  # a skipped message's echoed input may carry raw PII
    # Every tick (and every tick skipped while an update runs) would be logged; failures are ERROR.
    logging.getLogger("apscheduler").setLevel(logging.ERROR)
    platform, settings = PlatformSettings(), LearnerSettings()
    failpoints.check_armed()
    if settings.torch_threads:
        import torch

        torch.set_num_threads(settings.torch_threads)
    catalog = load_catalog(settings.tasks_file)
    endpoints = resolve_endpoints(platform)
    data_dir = settings.data_dir or platform.state_dir / "learner"
    data_dir.mkdir(parents=True, exist_ok=True)
    pending = PendingStore(data_dir / "pending.sqlite3")
    producer = make_producer(endpoints.bootstrap_servers)
    prefix = endpoints.topic_prefix  # the setting, else the embedded stack's

    def send(events: Sequence[tuple[Topic, str, Event | bytes]]) -> None:
        publish_events(producer, prefix, events)

    def claim_restored(task: str, version: str) -> None:
        # a version pulled back from the remote adapter store is never claimed again
        with contextlib.suppress(VersionTaken):
            claim_version(platform.adapter_store_root(), task, version)

    ctx = CycleContext(
        store=open_adapter_store(platform, role="publisher", on_restored=claim_restored),
        pending=pending,
        models_dir=settings.models_dir or default_cache_dir(),
        base_models=dict(catalog.base_models),
        send=send,
        device=settings.device,
        dtype=settings.dtype,
        max_examples=settings.max_examples_per_update,
        eval_match=settings.eval_match,
        passages=(
            MilvusPassages(endpoints.milvus_uri, settings.collection)
            if settings.grounding
            else None
        ),
    )
    owner = settings.owner or f"{socket.gethostname()}:{os.getpid()}"
    client = make_redis(endpoints.redis_url)
    lock_prefix = f"{DEFAULT_PREFIX}{prefix}"  # deployments sharing a Redis do not contend
    locks = {
        name: TaskLock(client, name, owner, settings.lock_ttl_s, prefix=lock_prefix)
        for name in catalog.tasks
    }
    consumer = make_consumer(endpoints.bootstrap_servers, settings.group_id)
    pseudonymizer = Pseudonymizer(pii_key(platform))
    intake = IntakeLoop(
        consumer,
        pending,
        catalog.tasks,
        send,
        prefix,
        pseudonymize=lambda text: pseudonymizer.pseudonymize(text).text,
    )
    intake.subscribe()
    metrics = LearnerMetrics(
        list(catalog.tasks),
        lambda name: pending.stats(name, kinds=trainable_kinds(catalog.tasks[name])),
        ctx.store,
    )
    coordinator = Coordinator(catalog.tasks, ctx, locks, on_result=metrics.on_result)
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("learner: signal %d, stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    scheduler = BackgroundScheduler(timezone=UTC)
    scheduler.add_job(
        metrics.timed(coordinator.tick),
        "interval",
        seconds=settings.check_interval_s,
        max_instances=1,
        coalesce=True,
        next_run_time=datetime.now(UTC),
        id="learner-tick",
    )
    if isinstance(ctx.store, PublishingStore):  # LORAFEED_ADAPTER_STORE_URL: retry, catch up
        scheduler.add_job(
            ctx.store.catch_up,
            "interval",
            seconds=settings.check_interval_s,
            max_instances=1,
            coalesce=True,
            id="adapter-store-catch-up",
        )
    intake_thread = threading.Thread(target=intake.run, args=(stop,), name="intake", daemon=True)
    log.info(
        "learner %s: tasks %s, store %s, data %s",
        owner,
        sorted(catalog.tasks),
        ctx.store.root,
        data_dir,
    )
    if settings.metrics_port is not None:
        port = metrics.serve(settings.metrics_host, settings.metrics_port)
        log.info("learner metrics on http://%s:%d/metrics", settings.metrics_host, port)
    intake_thread.start()
    scheduler.start()
    try:
        stop.wait()
    finally:
        scheduler.shutdown(wait=True)  # a running update finishes or dies with the process
        intake_thread.join(timeout=10)
        consumer.close()
        for lock in locks.values():
            lock.release()
        producer.flush(10)
        pending.close()
        log.info("learner stopped")
