"""The validating producer for `records.raw`, and `ingest_path`, which sends what a reader in
`record_readers` yields through it.

A record is checked exactly as the streams worker will decode it, so producers cannot publish what
the worker would dead-letter; it counts as accepted only once the broker acked it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Protocol

from confluent_kafka import KafkaError, KafkaException, Message
from pydantic import ValidationError

from lorafeed.ingest_errors import (
    BrokerError,
    InvalidRecord,
    ProducerClosed,
    RejectReason,
    reason_for,
)
from lorafeed.kafka_clients import make_producer
from lorafeed.record_readers import Bad, Ok, cut_detail, read_path
from lorafeed.samples import message_key
from schemas import RecordIngested, SchemaError, Topic, decode, encode, topic_name
from schemas.errors import NotUtf8, from_validation_error


@dataclass(frozen=True)
class DeliveryReport:
    """Broker outcomes since the producer opened: acked records and (record_id, error) refusals."""

    acked: int
    failed: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class IngestSummary:
    """The outcome of one `ingest_path`: acked records, rejected lines, refused deliveries."""

    accepted: int
    rejected: list[Bad] = field(default_factory=list)
    failed_delivery: list[tuple[str, str]] = field(default_factory=list)


class RecordSink(Protocol):
    """Where `ingest_path` sends records: `RecordProducer`, or an in-memory fake in tests."""

    def send(self, record: RecordIngested) -> None: ...
    def flush(self) -> DeliveryReport: ...


def check_record(record: RecordIngested | Mapping[str, Any]) -> tuple[RecordIngested, bytes]:
    """The record and its wire bytes, after the checks `decode` applies on `records.raw`.

    A Mapping is validated as `RecordIngested` first; raises InvalidRecord naming the problem.
    """
    try:
        if isinstance(record, RecordIngested):
            model = record
        elif isinstance(record, Mapping):
            model = RecordIngested.model_validate(dict(record))
        else:
            raise InvalidRecord(
                f"expected a RecordIngested or a mapping, got {type(record).__name__}",
                RejectReason.INVALID_FIELD,
            )
        try:
            data = encode(model)
        except UnicodeEncodeError as exc:
            raise NotUtf8(f"{Topic.RECORDS_RAW}: {exc.object[exc.start]!r} is no Unicode") from exc
        except ValueError as exc:  # NaN or an integer too long to print
            raise SchemaError(f"{Topic.RECORDS_RAW}: cannot encode: {exc}") from exc
        return decode(Topic.RECORDS_RAW, data), data
    except ValidationError as exc:
        raise _invalid(record, from_validation_error(exc, Topic.RECORDS_RAW.value)) from exc
    except SchemaError as exc:
        raise _invalid(record, exc) from exc


def _invalid(record: object, exc: SchemaError) -> InvalidRecord:
    record_id = record.get("record_id") if isinstance(record, Mapping) else None
    record_id = getattr(record, "record_id", record_id)
    where = f"record {record_id!r}: " if isinstance(record_id, str) else ""
    return InvalidRecord(f"{where}{exc}", reason_for(exc))


class RecordProducer:
    """Publishes raw records to `records.raw` (keyed by record_id) and counts the broker's acks.

    `flush_timeout_s` bounds how long a record may wait for its ack. Not thread-safe.
    """

    def __init__(self, bootstrap: str, prefix: str = "", *, flush_timeout_s: float = 30) -> None:
        try:
            self.topic = topic_name(Topic.RECORDS_RAW, prefix)
            overrides = {"message.timeout.ms": max(1, int(flush_timeout_s * 1000))}
            self._producer = make_producer(bootstrap, **overrides)
        except (ValueError, KafkaException) as exc:
            raise BrokerError(f"cannot produce to {bootstrap!r}, prefix {prefix!r}: {exc}") from exc
        self.bootstrap = bootstrap
        self._flush_timeout_s = flush_timeout_s
        self._pending: dict[int, str] = {}
        self._sent = 0
        self._acked = 0
        self._failed: list[tuple[str, str]] = []
        self._closed = False

    def __enter__(self) -> RecordProducer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def check_broker(self, timeout_s: float = 5.0) -> None:
        """Raise BrokerError unless the broker answers within `timeout_s` and has the topic."""
        try:
            topics = self._producer.list_topics(timeout=timeout_s).topics
        except KafkaException as exc:
            raise BrokerError(
                f"broker at {self.bootstrap} did not answer within {timeout_s:g} s ({exc})"
            ) from exc
        if self.topic not in topics:
            raise BrokerError(f"topic {self.topic} does not exist on the broker at "
                              f"{self.bootstrap}; 'lorafeed stack up' creates every topic")

    def send(self, record: RecordIngested | Mapping[str, Any]) -> None:
        """Validate and enqueue one record; raises InvalidRecord if the worker would refuse it."""
        if self._closed:
            raise ProducerClosed(f"the producer for {self.topic} is closed")
        model, value = check_record(record)
        key = message_key(Topic.RECORDS_RAW, model)
        self._sent += 1
        self._pending[self._sent] = key
        callback = partial(self._on_delivery, self._sent)
        while True:
            try:
                self._producer.produce(self.topic, value, key, on_delivery=callback)
                break
            except BufferError:  # the local queue is full: let the broker drain it
                self._producer.poll(0.1)
            except KafkaException as exc:  # e.g. a fatal idempotent-producer error
                del self._pending[self._sent]
                raise BrokerError(f"producing {key!r} to {self.topic} failed: {exc}") from exc
        self._producer.poll(0)

    def _on_delivery(self, seq: int, err: KafkaError | None, _msg: Message) -> None:
        record_id = self._pending.pop(seq, None)
        if record_id is None:  # already reported unacknowledged by flush
            return
        if err is None:
            self._acked += 1
        else:
            self._failed.append((record_id, str(err)))

    def flush(self) -> DeliveryReport:
        """Wait for every outstanding ack; records still unacknowledged count as failed."""
        self._producer.flush(self._flush_timeout_s + 5)
        for record_id in self._pending.values():
            self._failed.append((record_id, f"no ack within {self._flush_timeout_s:g} s"))
        self._pending.clear()
        return DeliveryReport(self._acked, list(self._failed))

    def close(self) -> DeliveryReport:
        """Flush and refuse further sends; returns the final report."""
        report = self.flush()
        self._closed = True
        return report


def ingest_path(
    path: Path, producer: RecordSink, progress: Callable[[int], None] | None = None
) -> IngestSummary:
    """Send every valid record of `path`; bad lines are collected, never fatal.

    Flushes before and after, so the summary counts only this path's records. `progress` gets
    the line number (file ordinal for a directory) of each item handled.
    """
    items = read_path(path)
    before = producer.flush()
    rejected: list[Bad] = []
    for item in items:
        if isinstance(item, Ok):
            try:
                producer.send(item.record)
            except InvalidRecord as exc:
                rejected.append(Bad(item.line_no, exc.reason, cut_detail(str(exc))))
        else:
            rejected.append(item)
        if progress is not None:
            progress(item.line_no)
    after = producer.flush()
    return IngestSummary(after.acked - before.acked, rejected, after.failed[len(before.failed) :])
