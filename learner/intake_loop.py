"""The learner's consume loop: feedback.events, records.clean and model.events into the pending
store; invalid feedback to feedback.dlq. Offsets are committed only after the store's
transaction and the DLQ's acknowledgement, so a crash redelivers and the store counts once."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Consumer, KafkaException, Message

from learner.intake import (
    Rejection,
    examples_from_record,
    record_matches,
    route_feedback,
    scrub_feedback,
)
from learner.pending import OffsetRef, PendingStore
from lorafeed.kafka_clients import dead_letter_of
from schemas import Event, Topic, decode, topic_name
from schemas.dead_letters import DeadLetterReason
from schemas.errors import SchemaError
from schemas.feedback import FeedbackReceived
from schemas.model_events import AdapterLoadFailed
from schemas.records import RecordCleaned
from schemas.tasks import TaskConfig

log = logging.getLogger(__name__)

INTAKE_TOPICS = (Topic.FEEDBACK_EVENTS, Topic.RECORDS_CLEAN, Topic.MODEL_EVENTS)
Send = Callable[[Sequence[tuple[Topic, str, Event | bytes]]], None]


@dataclass
class IntakeCounts:
    """What the loop did, by outcome (for logs, metrics and tests)."""

    examples: int = 0
    votes: int = 0
    ratings: int = 0
    dead: int = 0
    purged: int = 0
    load_failures: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)


class IntakeLoop:
    """Polls the intake topics in batches; `run` until `stop` is set."""

    def __init__(
        self,
        consumer: Consumer,
        pending: PendingStore,
        tasks: Mapping[str, TaskConfig],
        send: Send,
        prefix: str,
        *,
        batch: int = 200,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        pseudonymize: Callable[[str], str] | None = None,
    ) -> None:
        self.consumer, self.pending, self.tasks = consumer, pending, tasks
        self.pseudonymize = pseudonymize
        self.send, self.prefix, self.batch, self.clock = send, prefix, batch, clock
        self.counts = IntakeCounts()
        self._logical = {topic_name(t, prefix): t for t in INTAKE_TOPICS}

    def subscribe(self) -> None:
        self.consumer.subscribe(list(self._logical))

    def run(self, stop: threading.Event) -> None:
        """Poll, store, dead-letter and commit until `stop`; broker errors are retried."""
        while not stop.is_set():
            try:
                self.poll_once(timeout_s=1.0)
            except KafkaException as exc:
                log.warning("intake: broker error, retrying: %s", exc)
                stop.wait(1.0)

    def poll_once(self, timeout_s: float = 1.0) -> int:
        """Handle one batch; returns how many messages it held."""
        messages = [m for m in self.consumer.consume(self.batch, timeout_s) if m.error() is None]
        if not messages:
            return 0
        dead: list[tuple[Topic, str, Event | bytes]] = []
        for msg in messages:
            dead.extend(self._handle(msg))
        if dead:
            self.send(dead)
        for msg in messages:
            self.consumer.store_offsets(message=msg)
        self.consumer.commit(asynchronous=False)
        return len(messages)

    def _handle(self, msg: Message) -> list[tuple[Topic, str, Event | bytes]]:
        topic = self._logical.get(msg.topic() or "")
        ref = OffsetRef(msg.topic() or "", msg.partition() or 0, msg.offset() or 0)
        value = msg.value() or b""
        try:
            event = decode(topic, value) if topic is not None else None
        except SchemaError as exc:
            if topic is not Topic.FEEDBACK_EVENTS:
                log.warning("intake: skipping undecodable %s message at %s: %s", topic, ref, exc)
                return []
            return [self._dead(msg, exc.reason, exc.message)]
        if isinstance(event, FeedbackReceived):
            return self._feedback(msg, event, ref)
        if isinstance(event, RecordCleaned):
            self._record(event, ref)
        elif isinstance(event, AdapterLoadFailed) and self.pending.load_failure_add(
            event.task, event.version, event.node, event.reason
        ):
            self.counts.load_failures += 1
        return []

    def _feedback(self, msg: Message, event: FeedbackReceived, ref: OffsetRef) -> list[Any]:
        if self.pseudonymize is not None:
            scrubbed = scrub_feedback(event, self.pseudonymize)
            if isinstance(scrubbed, Rejection):
                return [self._dead(msg, scrubbed.reason, scrubbed.detail)]
            event = scrubbed
        routed = route_feedback(event, self.tasks)
        if routed.rejection is not None:
            return [self._dead(msg, routed.rejection.reason, routed.rejection.detail)]
        task = self.tasks[event.task]
        percent = task.training.holdout_percent
        if routed.examples:
            self.counts.examples += self.pending.add(routed.examples, percent, ref)
        for vote in routed.votes:
            self.pending.add_vote(vote, percent, source=ref)
            self.counts.votes += 1
        if routed.rating is not None:
            signal = routed.rating
            if self.pending.rating_add(
                signal.task, signal.version, signal.request_id, signal.rating
            ):
                self.counts.ratings += 1
        return []

    def _record(self, record: RecordCleaned, ref: OffsetRef) -> None:
        if record.op == "delete":
            purged = self.pending.purge_record(record.record_id)
            self.counts.purged += purged.total
            return
        for task in self.tasks.values():
            if record_matches(record, task):
                examples = examples_from_record(record, task)
                self.counts.examples += self.pending.replace_record(
                    task.name, record.record_id, examples, task.training.holdout_percent, ref
                )

    def _dead(self, msg: Message, reason: DeadLetterReason, detail: str) -> tuple[Topic, str, Any]:
        self.counts.dead += 1
        self.counts.by_reason[reason.value] = self.counts.by_reason.get(reason.value, 0) + 1
        key, letter = dead_letter_of(msg, reason, detail, self.clock())
        return (Topic.FEEDBACK_DLQ, key, letter)
