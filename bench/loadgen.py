"""Load generator for serving nodes: async httpx workers at a fixed concurrency, spread over one
or more node URLs, sending a seeded mix of /v1/score, /v1/chat/completions (streamed, small
max_tokens) and /v1/feedback on answers just served. Every request becomes a `RequestRecord`
(endpoint, status, latency, adapter_version, wall-clock start/end, first-token time for chat).

Importable (`run_load`, `BackgroundLoad`, `summarize`) by benches, the demo and fault suites.
Usage: python bench/loadgen.py --url http://127.0.0.1:8000 [--url ...] [--seconds 10]
       [--concurrency 8] [--chat-share 0.1] [--feedback-share 0.2] [--api-key KEY]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx

SCORE_TEXTS = (
    "Card used in three countries within an hour for electronics and gift cards.",
    "Monthly utility bill paid from the usual account, same amount as last month.",
    "New device, new shipping address, and the billing name does not match the card.",
    "Grocery purchase at the neighbourhood store the customer visits every week.",
    "Dozens of small test charges followed by one large transfer to a new payee.",
    "Annual insurance premium renewed automatically on the usual date.",
    "Password reset, then an urgent wire to an overseas account minutes later.",
    "Coffee shop payment near the customer's office on a weekday morning.",
)
CHAT_PROMPTS = (
    "How do I reset my password?",
    "When will my parcel ship?",
    "Can I get a refund for a damaged item?",
    "How do I change my delivery address?",
)
ENDPOINTS = ("score", "chat", "feedback")


@dataclass(frozen=True)
class Mix:
    """What the workers send. chat_share: share of answers that are chat (the rest score);
    chat_workers: instead, that many workers only chat and the others only score (slow chats
    then never hold up score traffic); feedback_share: chance that a served answer gets
    feedback right after it."""

    score_task: str = "fraud"
    chat_task: str = "support"
    chat_share: float = 0.1
    feedback_share: float = 0.2
    chat_workers: int | None = None
    chat_max_tokens: int = 8
    texts: tuple[str, ...] = SCORE_TEXTS
    prompts: tuple[str, ...] = CHAT_PROMPTS

    def __post_init__(self) -> None:
        for name in ("chat_share", "feedback_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)!r}")


@dataclass
class RequestRecord:
    """One request. status 0: no HTTP answer (transport error); error: why it failed, also
    for an in-band SSE error. Times are `time.time()` seconds; output: score probabilities or
    chat text (for version checks); item: index of the text or prompt sent."""

    node: str
    endpoint: str
    status: int
    started_at: float
    ended_at: float
    adapter_version: str | None = None
    request_id: str | None = None
    first_token_at: float | None = None
    item: int | None = None
    output: Any = None
    error: str | None = None

    @property
    def latency_s(self) -> float:
        return self.ended_at - self.started_at

    @property
    def failed(self) -> bool:
        return self.error is not None or not 200 <= self.status < 300


@dataclass
class _Worker:
    client: httpx.AsyncClient
    node: str
    mix: Mix
    rng: random.Random
    sink: list[RequestRecord]
    chat_only: bool | None = None  # None: mixed by chat_share

    async def once(self) -> None:
        chat = self.chat_only if self.chat_only is not None else (
            self.rng.random() < self.mix.chat_share)
        if chat:
            record = await self.chat()
        else:
            record = await self.score()
        self.sink.append(record)
        if record.request_id and not record.failed and self.rng.random() < self.mix.feedback_share:
            self.sink.append(await self.feedback(record))

    async def score(self) -> RequestRecord:
        item = self.rng.randrange(len(self.mix.texts))
        body = {"task": self.mix.score_task, "text": self.mix.texts[item]}
        record = self._record("score", item)
        try:
            response = await self.client.post("/v1/score", json=body)
            record.status = response.status_code
            data = response.json()
            if response.is_success:
                record.adapter_version = data.get("adapter_version")
                record.request_id = data.get("request_id")
                record.output = data.get("probabilities")
            else:
                record.error = _error_text(data)
        except (httpx.HTTPError, ValueError) as exc:
            record.error = f"{type(exc).__name__}: {exc}"
        record.ended_at = time.time()
        return record

    async def chat(self) -> RequestRecord:
        item = self.rng.randrange(len(self.mix.prompts))
        body = {
            "model": self.mix.chat_task, "stream": True, "temperature": 0.0,
            "max_tokens": self.mix.chat_max_tokens, "lorafeed": {"retrieval": False},
            "messages": [{"role": "user", "content": self.mix.prompts[item]}],
        }
        record = self._record("chat", item)
        pieces: list[str] = []
        try:
            async with self.client.stream("POST", "/v1/chat/completions", json=body) as response:
                record.status = response.status_code
                if not response.is_success:
                    record.error = _error_text(json.loads(await response.aread()))
                else:
                    async for line in response.aiter_lines():
                        self._on_sse(record, line, pieces)
        except (httpx.HTTPError, ValueError) as exc:
            record.error = f"{type(exc).__name__}: {exc}"
        record.output = "".join(pieces)
        record.ended_at = time.time()
        return record

    def _on_sse(self, record: RequestRecord, line: str, pieces: list[str]) -> None:
        if not line.startswith("data: ") or line == "data: [DONE]":
            return
        data = json.loads(line[6:])
        if "error" in data:
            record.error = _error_text(data)
            return
        extension = data.get("lorafeed") or {}
        version = extension.get("adapter_version")
        if record.request_id is not None and version != record.adapter_version:
            # every chunk of one answer must name the one version that produced it
            record.error = f"one stream named versions {record.adapter_version} and {version}"
        record.adapter_version = version
        record.request_id = extension.get("request_id")
        for choice in data.get("choices") or ():
            piece = (choice.get("delta") or {}).get("content")
            if piece:
                record.first_token_at = record.first_token_at or time.time()
                pieces.append(piece)

    async def feedback(self, served: RequestRecord) -> RequestRecord:
        body: dict[str, Any] = {"request_id": served.request_id}
        if served.endpoint == "score" and isinstance(served.output, dict):
            body |= {"kind": "label", "label": self.rng.choice(sorted(served.output))}
        else:
            body |= {"kind": "rating", "rating": self.rng.choice((1, -1))}
        record = self._record("feedback", served.item)
        record.adapter_version = served.adapter_version
        record.request_id = served.request_id
        try:
            response = await self.client.post("/v1/feedback", json=body)
            record.status = response.status_code
            if not response.is_success:
                record.error = _error_text(response.json())
        except (httpx.HTTPError, ValueError) as exc:
            record.error = f"{type(exc).__name__}: {exc}"
        record.ended_at = time.time()
        return record

    def _record(self, endpoint: str, item: int | None) -> RequestRecord:
        now = time.time()
        return RequestRecord(self.node, endpoint, 0, now, now, item=item)


def _error_text(data: Any) -> str:
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        return f"{error.get('code')}: {str(error.get('message'))[:200]}"
    return str(data)[:200]


async def generate_load(
    urls: Sequence[str], *, concurrency: int, seconds: float | None = None, mix: Mix | None = None,
    seed: int = 7, api_key: str | None = None, stop: threading.Event | None = None,
    sink: list[RequestRecord] | None = None, timeout_s: float = 60.0, pause_s: float = 0.0,
) -> list[RequestRecord]:
    """Run `concurrency` workers (worker i on urls[i % len(urls)]; with mix.chat_workers, the
    first that many only chat) until `seconds` pass or `stop` is set; records are appended to
    `sink` (readable live from another thread). `pause_s`: each worker waits that long between
    answers (0: back to back), for a steady load below saturation."""
    if not urls or concurrency < 1:
        raise ValueError(f"need at least one URL and concurrency >= 1, got {urls!r}, {concurrency}")
    mix = mix or Mix()
    records = sink if sink is not None else []
    headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    clients = {url: httpx.AsyncClient(base_url=url, headers=headers, limits=limits,
                                      timeout=timeout_s) for url in dict.fromkeys(urls)}
    ends_at = time.monotonic() + seconds if seconds is not None else float("inf")

    def running() -> bool:
        return time.monotonic() < ends_at and not (stop is not None and stop.is_set())

    async def loop(index: int) -> None:
        url = urls[index % len(urls)]
        chat_only = None if mix.chat_workers is None else index < mix.chat_workers
        worker = _Worker(clients[url], url, mix, random.Random(seed * 1000 + index), records,
                         chat_only)
        while running():
            await worker.once()
            if pause_s > 0:
                await asyncio.sleep(pause_s)

    try:
        await asyncio.gather(*(loop(i) for i in range(concurrency)))
    finally:
        await asyncio.gather(*(client.aclose() for client in clients.values()))
    return records


def run_load(urls: Sequence[str], **options: Any) -> list[RequestRecord]:
    """`generate_load` from synchronous code (blocks for its duration)."""
    return asyncio.run(generate_load(urls, **options))


@dataclass
class BackgroundLoad:
    """`generate_load` on a thread of its own: `start()`, read `records` live, `stop()`."""

    urls: Sequence[str]
    options: dict[str, Any] = field(default_factory=dict)
    records: list[RequestRecord] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name="loadgen", daemon=True)
        self.started_at = 0.0
        self.error: BaseException | None = None

    def _main(self) -> None:
        try:
            run_load(self.urls, stop=self._stop, sink=self.records, **self.options)
        except BaseException as exc:  # reported by stop(); the thread must not die silently
            self.error = exc

    def start(self) -> BackgroundLoad:
        self.started_at = time.time()
        self._thread.start()
        return self

    def stop(self) -> list[RequestRecord]:
        self._stop.set()
        self._thread.join()
        if self.error is not None:
            raise RuntimeError(f"load generator failed: {self.error!r}") from self.error
        return self.records


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else 0.0


@dataclass(frozen=True)
class EndpointSummary:
    endpoint: str
    requests: int
    failures: int
    per_s: float
    p50_ms: float
    p99_ms: float
    versions: dict[str, int]


def summarize(records: Sequence[RequestRecord]) -> list[EndpointSummary]:
    """Per endpoint (and "all"): count, failures, requests/s over the records' span, p50/p99
    latency, and how many answers each adapter version served ("base": no adapter)."""
    if not records:
        return []
    span = max(r.ended_at for r in records) - min(r.started_at for r in records)
    rows = []
    for endpoint in (*ENDPOINTS, "all"):
        chosen = [r for r in records if endpoint in ("all", r.endpoint)]
        if not chosen:
            continue
        ok = [r.latency_s * 1000 for r in chosen if not r.failed]
        versions = Counter(r.adapter_version or "base" for r in chosen if not r.failed)
        rows.append(EndpointSummary(
            endpoint, len(chosen), sum(r.failed for r in chosen), len(chosen) / max(span, 1e-9),
            percentile(ok, 0.5), percentile(ok, 0.99), dict(sorted(versions.items()))))
    return rows


def format_summary(rows: Sequence[EndpointSummary]) -> str:
    lines = [f"{'endpoint':<10}{'requests':>9}{'failed':>8}{'req/s':>8}{'p50 ms':>9}"
             f"{'p99 ms':>9}  versions served"]
    for row in rows:
        seen = ", ".join(f"{v}: {n}" for v, n in row.versions.items())
        lines.append(f"{row.endpoint:<10}{row.requests:>9}{row.failures:>8}{row.per_s:>8.1f}"
                     f"{row.p50_ms:>9.1f}{row.p99_ms:>9.1f}  {seen}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", action="append", required=True, help="a node; repeat for more")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--score-task", default="fraud")
    parser.add_argument("--chat-task", default="support")
    parser.add_argument("--chat-share", type=float, default=0.1)
    parser.add_argument("--chat-workers", type=int, default=None,
                        help="workers that only chat (the rest only score); overrides the share")
    parser.add_argument("--feedback-share", type=float, default=0.2)
    parser.add_argument("--max-tokens", type=int, default=8)
    parser.add_argument("--api-key", default=None, help="sent as Authorization: Bearer")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--jsonl", default=None, help="also write every record to this file")
    args = parser.parse_args()
    mix = Mix(score_task=args.score_task, chat_task=args.chat_task, chat_share=args.chat_share,
              feedback_share=args.feedback_share, chat_max_tokens=args.max_tokens,
              chat_workers=args.chat_workers)
    records = run_load(args.url, concurrency=args.concurrency, seconds=args.seconds, mix=mix,
                       seed=args.seed, api_key=args.api_key)
    print(format_summary(summarize(records)))
    errors = Counter(r.error or str(r.status) for r in records if r.failed)
    for error, count in errors.most_common(5):
        print(f"  {count} x {error}")
    if args.jsonl:
        with open(args.jsonl, "w", encoding="utf-8") as out:
            for record in records:
                out.write(json.dumps(asdict(record), ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
