"""The learner's timed work, run by APScheduler every few seconds: for each task this process
holds the lock for, finish interrupted publications, train when the trigger is due, and watch
freshly promoted versions online (rolling back automatically when they do worse)."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import redis

from learner.announce import rollback_event
from learner.cycle import (
    CycleContext,
    CycleResult,
    recover,
    run_cycle,
    send_outbox,
    trainable_kinds,
)
from learner.errors import LockLost
from learner.hooks import BaseHook, TrainState
from learner.lock import TaskLock
from learner.triggers import due
from learner.watch import RatingStats, judge
from lorafeed.adapter_store_errors import AdapterStoreError
from lorafeed.knowledge_errors import KnowledgeError
from lorafeed.publish import PublishError
from schemas import Topic, encode
from schemas.audit import AuditRecorded
from schemas.tasks import TaskConfig

log = logging.getLogger(__name__)
WATCH_ACTOR = "learner-watch"


class _KeepLock(BaseHook):
    """Renews the task lock from a thread for a whole update (training, gate, write: a long
    evaluation must not let the lock expire under a live learner); a lost lock aborts
    training at the next step (LockLost)."""

    def __init__(self, lock: TaskLock, every_s: float) -> None:
        self.lock, self.every_s = lock, every_s
        self.lost: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, name=f"lock-{lock.key}", daemon=True)

    def __enter__(self) -> _KeepLock:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _renew(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.lock.ensure()
            except LockLost as exc:
                self.lost = str(exc)
                return
            except redis.RedisError as exc:  # transient: the lock may still outlive it
                log.warning("learner: cannot renew %s: %s", self.lock.key, exc)

    def on_step_end(self, state: TrainState) -> None:
        if self.lost is not None:
            raise LockLost(self.lost)


@dataclass
class Coordinator:
    """Locks, triggers and online watch over every task of the catalog."""

    tasks: Mapping[str, TaskConfig]
    ctx: CycleContext
    locks: Mapping[str, TaskLock]
    on_result: Callable[[CycleResult], None] = lambda result: None
    progress: Callable[[str, int, int], None] | None = None
    _recovered: set[str] = field(default_factory=set)

    def tick(self) -> list[CycleResult]:
        """One pass over the tasks; errors of one task are logged and do not stop the others."""
        self._resend()
        results = []
        for task in self.tasks.values():
            try:
                result = self._tick_task(task)
            except (AdapterStoreError, KnowledgeError, redis.RedisError, OSError) as exc:
                log.error("learner: task %s skipped this tick: %s", task.name, exc)
                continue
            if result is not None:
                results.append(result)
                self.on_result(result)
        return results

    def _resend(self) -> None:
        """Events a broker outage left queued go out at the next tick, not the next update."""
        try:
            sent = send_outbox(self.ctx)
        except (PublishError, OSError) as exc:
            log.warning("learner: queued events not sent yet (retried next tick): %s", exc)
            return
        if sent:
            log.info("learner: sent %d queued events", sent)

    def _tick_task(self, task: TaskConfig) -> CycleResult | None:
        lock = self.locks[task.name]
        if not lock.acquire():
            self._recovered.discard(task.name)  # re-check the store when we get it back
            return None
        if task.name not in self._recovered:
            done = recover(self.ctx, [task])
            if done:
                log.info("learner: completed interrupted publications %s", done)
            self._recovered.add(task.name)
        self.watch(task)
        count, oldest = self.ctx.pending.stats(task.name, kinds=trainable_kinds(task))
        age = None if oldest is None else max(0.0, time.time() - oldest)
        reason = due(count, age, task.trigger)
        if reason is None:
            return None
        log.info("learner: training %s (%s)", task.name, reason)
        progress = None
        if self.progress is not None:
            report = self.progress
            name = task.name

            def progress(step: int, total: int) -> None:
                report(name, step, total)

        with _KeepLock(lock, every_s=lock.ttl_ms / 3000) as keep:
            result = run_cycle(task, self.ctx, hooks=[keep], progress=progress)
        if result is not None:
            log.info("learner: %s@%s %s", result.task, result.version, result.reason)
        return result

    def watch(self, task: TaskConfig) -> str | None:
        """Roll the champion back if nodes failed to load it or its ratings are worse than its
        parent's by more than the task's margin. Returns the reason when it rolled back."""
        store = self.ctx.store
        champion = store.champion(task.name)
        if champion is None or store.pinned(task.name) is not None:
            return None
        manifest = store.read_manifest(task.name, champion.version)
        failed = self.ctx.pending.load_failure(task.name, champion.version)
        reason = f"nodes failed to load it ({failed})" if failed else None
        if reason is None:
            new = RatingStats(*self.ctx.pending.rating_stats(task.name, champion.version))
            parent = RatingStats(*self.ctx.pending.rating_stats(task.name, manifest.parent_version))
            verdict = judge(new, parent, task.watch)
            if verdict is None or not verdict.rollback:
                return None
            reason = verdict.reason
        self._roll_back(task.name, champion.version, manifest.parent_version, reason)
        return reason

    def _roll_back(self, task: str, current: str, target: str | None, reason: str) -> None:
        store, now = self.ctx.store, self.ctx.clock()
        old, new = store.rollback(task, target, WATCH_ACTOR, reason[:500])
        pointer = store.champion(task)
        digest = None if pointer is None else pointer.manifest_sha256
        event = rollback_event(task, current, new, digest, reason, automatic=True, now=now)
        audit = AuditRecorded(
            schema_version=1,
            audit_id=str(uuid.uuid4()),
            actor=WATCH_ACTOR,
            action="adapter.rollback",
            task=task,
            version=new,
            detail={"from": old, "reason": reason[:1000], "automatic": True},
            occurred_at=now,
        )
        self.ctx.pending.outbox_add(
            task,
            current,
            [
                (Topic.MODEL_EVENTS.value, task, encode(event)),
                (Topic.AUDIT_EVENTS.value, audit.audit_id, encode(audit)),
            ],
        )
        log.warning("learner: rolled %s back from %s to %s: %s", task, current, new, reason)
        send_outbox(self.ctx)
