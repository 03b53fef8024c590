"""Steady load for the fault suite and the soak: corpus records (and a few hostile ones) produced
to records.raw at a fixed rate on a thread, each marked accepted when the broker's delivery
report says so; and requests + feedback through the serving nodes (`bench/loadgen.py`)."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from confluent_kafka import KafkaError, Message

from bench.loadgen import BackgroundLoad, Mix, RequestRecord
from lorafeed.corpus import generate_corpus
from lorafeed.kafka_clients import make_producer

MIX = Mix(score_task="intent", chat_task="chat", chat_share=0.25, feedback_share=0.6,
          chat_max_tokens=6)


@dataclass
class SentRecord:
    """One message produced to records.raw. `reason`: the dead-letter reason it must get (bad
    input), None for a corpus record; `record`: the corpus record itself."""

    key: str
    value: bytes
    reason: str | None = None
    record: dict[str, Any] | None = None
    accepted: bool = False
    error: str | None = None


def _raw(record_id: str, content: str, **extra: Any) -> bytes:
    body = {"schema_version": 1, "record_id": record_id, "op": "upsert", "source": "faults",
            "content_type": "text/plain", "content": content, "metadata": {},
            "occurred_at": "2026-11-20T08:00:00Z"} | extra
    return json.dumps(body).encode()


def hostile(tag: str) -> list[SentRecord]:
    """Bad input with the reason each must be dead-lettered with (keys unique per `tag`)."""
    cases = [
        ("json", b'{"schema_version": 1, "record_id": ', "not_json"),
        ("utf8", b'{"schema_version": 1, "record_id": "\xff\xfe"}', "not_utf8"),
        ("version", _raw(f"{tag}-bad-version", "text " * 20, schema_version=2), "schema_version"),
        ("missing", b'{"schema_version": 1, "record_id": "m1", "op": "upsert"}', "invalid_field"),
        ("short", _raw(f"{tag}-bad-short", "hi"), "quality_too_short"),
        ("deep", _raw(f"{tag}-bad-deep", "<div>" * 3000 + "x", content_type="text/html"),
         "html_too_deep"),
    ]
    return [SentRecord(f"{tag}-bad-{name}", value, reason) for name, value, reason in cases]


def corpus_records(n: int, seed: int, prefix: str) -> list[SentRecord]:
    corpus = generate_corpus(n, seed=seed, id_prefix=prefix)
    return [
        SentRecord(r["record_id"], json.dumps(r, ensure_ascii=False).encode(), record=r)
        for r in corpus.records
    ]


def interleave(good: list[SentRecord], bad: list[SentRecord], step: int = 2) -> list[SentRecord]:
    """One bad record after every `step` good ones, from the start (so a scenario that sends
    a few dozen records sends all of them)."""
    out = list(good)
    for i, item in enumerate(bad):
        out.insert(min(len(out), (i + 1) * step + i), item)
    return out


@dataclass
class RecordFeed:
    """Produces `items` to `topic` at `rate_per_s` on a thread of its own."""

    bootstrap: str
    topic: str
    rate_per_s: float
    items: list[SentRecord] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self._run, name="record-feed", daemon=True)
        self._stop = threading.Event()
        self.error: BaseException | None = None

    def start(self, items: list[SentRecord]) -> RecordFeed:
        self.items = list(items)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout_s: float) -> list[SentRecord]:
        """Wait until every item was produced and its delivery reported."""
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            raise AssertionError(f"record feed still producing after {timeout_s:.0f} s")
        if self.error is not None:
            raise AssertionError(f"record feed failed: {self.error!r}") from self.error
        return self.items

    @property
    def produced(self) -> int:
        return sum(item.accepted or item.error is not None for item in self.items)

    def _run(self) -> None:
        try:
            producer = make_producer(self.bootstrap)
            began = time.monotonic()
            for n, item in enumerate(self.items):
                if self._stop.is_set():
                    break
                delay = began + n / self.rate_per_s - time.monotonic()
                if delay > 0:
                    self._stop.wait(delay)  # paced, not a wait for a condition
                producer.produce(self.topic, key=item.key, value=item.value,
                                 on_delivery=_report(item))
                producer.poll(0)
            remaining = producer.flush(60)
            if remaining:
                raise RuntimeError(f"{remaining} records undelivered after 60 s")
        except BaseException as exc:  # reported by join()
            self.error = exc


def _report(item: SentRecord) -> Any:
    def delivered(err: KafkaError | None, _msg: Message) -> None:
        if err is None:
            item.accepted = True
        else:
            item.error = str(err)

    return delivered


def request_load(urls: list[str], api_key: str, seed: int, pause_s: float = 0.15,
                 concurrency: int = 2, mix: Mix = MIX) -> BackgroundLoad:
    """`concurrency` loadgen workers over the nodes (worker i on node i % n), each pausing
    `pause_s` between answers: a steady load well below what two cores can serve."""
    return BackgroundLoad(urls, dict(concurrency=concurrency, mix=mix, seed=seed,
                                     api_key=api_key, pause_s=pause_s, timeout_s=60.0))


@dataclass
class CorrectionLoad:
    """A teacher on a thread: asks the chat task "When does order N ship?" through each node in
    turn and posts a correction ("Order N ships on Monday.") for every answer, pausing `pause_s`
    between rounds. Consistent corrections make the learner's chat updates pass the gate, so
    versions get promoted (and nodes swap) all along. Every request becomes a RequestRecord;
    a correction's record carries {"kind": "correction"} as its output."""

    urls: list[str]
    api_key: str
    pause_s: float = 1.0
    records: list[RequestRecord] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="teacher", daemon=True)
        self.error: BaseException | None = None

    def start(self) -> CorrectionLoad:
        self._thread.start()
        return self

    def stop(self) -> list[RequestRecord]:
        self._stop.set()
        self._thread.join(120)
        if self.error is not None:
            raise RuntimeError(f"correction load failed: {self.error!r}") from self.error
        return self.records

    def _run(self) -> None:
        headers = {"Authorization": f"Bearer {self.api_key}"}
        try:
            with httpx.Client(headers=headers, timeout=60) as client:
                n = 0
                while not self._stop.is_set():
                    url = self.urls[n % len(self.urls)]
                    answered = self._ask(client, url, n)
                    if answered.request_id and not answered.failed:
                        self._correct(client, url, answered, n)
                    n += 1
                    self._stop.wait(self.pause_s)  # paced, not a wait for a condition
        except BaseException as exc:  # reported by stop()
            self.error = exc

    def _ask(self, client: httpx.Client, url: str, n: int) -> RequestRecord:
        body = {"model": "chat", "max_tokens": 4, "temperature": 0.0,
                "lorafeed": {"retrieval": False},
                "messages": [{"role": "user", "content": f"When does order {n} ship?"}]}
        record = RequestRecord(url, "chat", 0, time.time(), time.time(), item=n)
        self.records.append(record)
        try:
            response = client.post(f"{url}/v1/chat/completions", json=body)
            record.status = response.status_code
            data = response.json()
            if response.is_success:
                record.adapter_version = data["lorafeed"]["adapter_version"]
                record.request_id = data["lorafeed"]["request_id"]
            else:
                record.error = str(data.get("error"))[:200]
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            record.error = f"{type(exc).__name__}: {exc}"
        record.ended_at = time.time()
        return record

    def _correct(self, client: httpx.Client, url: str, answered: RequestRecord, n: int) -> None:
        body = {"request_id": answered.request_id, "kind": "correction",
                "correction": f"Order {n} ships on Monday."}
        record = RequestRecord(url, "feedback", 0, time.time(), time.time(),
                               adapter_version=answered.adapter_version,
                               request_id=answered.request_id, item=n,
                               output={"kind": "correction"})
        self.records.append(record)
        try:
            response = client.post(f"{url}/v1/feedback", json=body)
            record.status = response.status_code
            if not response.is_success:
                record.error = str(response.json().get("error"))[:200]
        except (httpx.HTTPError, ValueError) as exc:
            record.error = f"{type(exc).__name__}: {exc}"
        record.ended_at = time.time()
