"""The demo's knowledge step: a seeded Chinese and English support knowledge base (HTML pages,
duplicates, PII) and a few malformed payloads go to records.raw through Kafka; the supervised
streams worker cleans, pseudonymizes, deduplicates and indexes them; the demo follows
records.clean / records.indexed / records.dlq until every record is accounted for."""

from __future__ import annotations

import time
from collections import Counter

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from lorafeed.corpus import Corpus, generate_corpus
from lorafeed.demo_plan import Scenario
from lorafeed.demo_results import IngestResult
from lorafeed.demo_watch import TopicWatcher
from lorafeed.ingest import RecordProducer
from lorafeed.kafka_clients import make_producer
from schemas import Topic, topic_name

INGEST_TIMEOUT_S = 300.0


def ingest_corpus(bootstrap: str, prefix: str, watcher: TopicWatcher, scenario: Scenario,
                  console: Console) -> tuple[Corpus, IngestResult]:
    """Publish the corpus and the malformed payloads; wait until the worker handled them."""
    began = time.monotonic()
    corpus = generate_corpus(scenario.records, seed=42)
    with RecordProducer(bootstrap, prefix) as producer:
        for record in corpus.records:
            producer.send(record)
        acked = producer.flush().acked
    raw = make_producer(bootstrap)
    for n, payload in enumerate(scenario.malformed):
        raw.produce(topic_name(Topic.RECORDS_RAW, prefix), key=f"malformed-{n}", value=payload)
    if raw.flush(30):
        raise RuntimeError("the broker did not acknowledge the malformed payloads in 30 s")
    console.print(f"published {acked} records ({_mix(corpus)}) and {len(scenario.malformed)} "
                  "malformed payloads to records.raw", highlight=False)
    ids = {record["record_id"] for record in corpus.records}
    expected = len(ids) + len(scenario.malformed)
    with Progress(console=console, transient=True) as progress:
        bar = progress.add_task("streams worker: clean > pseudonymize > dedup > embed > Milvus",
                                total=expected)

        def handled() -> int:
            done = {e.record_id for e in watcher.events(Topic.RECORDS_INDEXED)} & ids
            return len(done) + len(watcher.events(Topic.RECORDS_DLQ))

        def tick() -> None:
            progress.update(bar, completed=handled())

        watcher.wait(lambda: True if handled() >= expected else None, INGEST_TIMEOUT_S,
                     f"the streams worker to handle {expected} records", tick)
    result = _result(corpus, watcher, len(scenario.malformed), time.monotonic() - began)
    console.print(ingest_table(result))
    return corpus, result


def _mix(corpus: Corpus) -> str:
    html = sum(1 for r in corpus.records if r["content_type"] == "text/html")
    zh = sum(1 for lang in corpus.languages.values() if lang == "zh")
    dups = len(corpus.exact_duplicates) + len(corpus.near_duplicates)
    pii = sum(1 for values in corpus.pii.values() if values)
    return f"{html} HTML, {zh} Chinese, {dups} duplicates, {pii} with PII"


def _result(corpus: Corpus, watcher: TopicWatcher, malformed: int,
            seconds: float) -> IngestResult:
    ids = {record["record_id"] for record in corpus.records}
    indexed = [e for e in watcher.events(Topic.RECORDS_INDEXED) if e.record_id in ids]
    pii: Counter[str] = Counter()
    for cleaned in watcher.events(Topic.RECORDS_CLEAN):
        if cleaned.record_id in ids:
            pii.update(cleaned.pii_replaced)
    reasons = Counter(str(letter.reason) for letter in watcher.events(Topic.RECORDS_DLQ))
    aliases = sum(1 for e in indexed if e.duplicate_of)
    return IngestResult(
        published=len(ids), malformed=malformed, indexed=len(indexed) - aliases,
        aliases=aliases, chunks=sum(e.chunk_count for e in indexed),
        dead_letters=dict(sorted(reasons.items())), pii=dict(sorted(pii.items())),
        seconds=seconds,
    )


def ingest_table(result: IngestResult) -> Table:
    table = Table(title="knowledge base: records.raw -> Milvus")
    for column in ("published", "indexed", "chunks", "duplicates (aliases)", "PII replaced",
                   "dead letters (reason)", "seconds"):
        table.add_column(column, justify="right")
    pii = ", ".join(f"{kind} {n}" for kind, n in result.pii.items()) or "0"
    dead = ", ".join(f"{reason} {n}" for reason, n in result.dead_letters.items()) or "0"
    table.add_row(f"{result.published} + {result.malformed} malformed", str(result.indexed),
                  str(result.chunks), str(result.aliases), pii, dead, f"{result.seconds:.0f}")
    return table
