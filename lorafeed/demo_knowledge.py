"""The demo's knowledge step: a streams worker (run by the supervisor) indexes a seeded Chinese
and English support knowledge base published through Kafka, then a few searches show it."""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from lorafeed.corpus import LabelledQuery, generate_corpus
from lorafeed.embedder import SentenceEmbedder
from lorafeed.ingest import RecordProducer
from lorafeed.kafka_clients import make_consumer
from lorafeed.knowledge import KnowledgeBase, KnowledgeConfig
from lorafeed.retrieval import Retriever
from lorafeed.stack import StackState
from lorafeed.stores import make_milvus
from lorafeed.supervisor import ServiceSpec, Supervisor
from schemas import DeadLettered, RecordIndexed, Topic, decode, topic_name

ROOT = Path(__file__).resolve().parents[1]
COLLECTION = "knowledge"


class KnowledgeStepError(RuntimeError):
    """The worker did not index the demo corpus in time."""


def feed_knowledge(state: StackState, state_dir: Path, console: Console, records: int = 60) -> None:
    """Publish a seeded corpus, let a real streams worker index it, and search it."""
    supervisor = Supervisor(state_dir / "demo-services")
    supervisor.add(
        ServiceSpec(
            "streams",
            [sys.executable, "-m", "streams"],
            cwd=ROOT,
            env={
                "LORAFEED_STATE_DIR": str(state_dir),
                "STREAMS_COLLECTION": COLLECTION,
                "HF_HUB_OFFLINE": "1",
                "TRANSFORMERS_OFFLINE": "1",
            },
        )
    )
    supervisor.start_all()
    try:
        corpus = generate_corpus(records, seed=42)
        assert state.bootstrap_servers
        with RecordProducer(state.bootstrap_servers, state.topic_prefix) as producer:
            for record in corpus.records:
                producer.send(record)
            report = producer.flush()
        console.print(
            f"published {report.acked} records (Chinese and English, HTML, duplicates, "
            "PII) to records.raw; the worker starts and indexes them"
        )
        indexed, dead = _follow(state, {r["record_id"] for r in corpus.records}, console)
        _summary(indexed, dead, console)
        _searches(
            state,
            [q for q in corpus.queries if q.lang == "zh"][:1]
            + [q for q in corpus.queries if q.lang == "en"][:1],
            console,
        )
    finally:
        supervisor.stop_all()


def _follow(
    state: StackState, ids: set[str], console: Console, timeout_s: float = 300
) -> tuple[dict[str, RecordIndexed], dict[str, DeadLettered]]:
    assert state.bootstrap_servers
    consumer = make_consumer(state.bootstrap_servers, f"demo-{uuid.uuid4().hex[:8]}")
    consumer.subscribe(
        [
            topic_name(Topic.RECORDS_INDEXED, state.topic_prefix),
            topic_name(Topic.RECORDS_DLQ, state.topic_prefix),
        ]
    )
    indexed: dict[str, RecordIndexed] = {}
    dead: dict[str, DeadLettered] = {}
    deadline = time.monotonic() + timeout_s
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("indexing", total=len(ids))
        try:
            while len(ids & (set(indexed) | set(dead))) < len(ids):
                if time.monotonic() > deadline:
                    raise KnowledgeStepError(
                        f"only {len(indexed)} of {len(ids)} records indexed after {timeout_s:.0f} s"
                    )
                msg = consumer.poll(0.2)
                if msg is None or msg.error():
                    continue
                if msg.topic().endswith(Topic.RECORDS_DLQ):
                    letter = decode(Topic.RECORDS_DLQ, msg.value())
                    dead[letter.key or ""] = letter
                else:
                    event = decode(Topic.RECORDS_INDEXED, msg.value())
                    indexed[event.record_id] = event
                progress.update(task, completed=len(ids & (set(indexed) | set(dead))))
        finally:
            consumer.close()
    # Earlier steps' sample records are on the same topic: report the corpus only.
    return (
        {k: v for k, v in indexed.items() if k in ids},
        {k: v for k, v in dead.items() if k in ids},
    )


def _summary(
    indexed: dict[str, RecordIndexed], dead: dict[str, DeadLettered], console: Console
) -> None:
    table = Table(title="records.indexed / records.dlq")
    for column in ("indexed", "chunks", "duplicates (aliases)", "dead-lettered", "reasons"):
        table.add_column(column, justify="right")
    aliases = sum(1 for event in indexed.values() if event.duplicate_of)
    table.add_row(
        str(len(indexed) - aliases),
        str(sum(e.chunk_count for e in indexed.values())),
        str(aliases),
        str(len(dead)),
    )
    console.print(table)


def _searches(state: StackState, queries: Sequence[LabelledQuery], console: Console) -> None:
    milvus = state.url("milvus")
    assert milvus
    retriever = Retriever(
        KnowledgeBase(make_milvus(milvus), KnowledgeConfig(COLLECTION)), SentenceEmbedder()
    )
    for query in queries:
        table = Table(title=f"lorafeed search {query.text!r}")
        for column in ("#", "record", "text"):
            table.add_column(column)
        for rank, hit in enumerate(retriever.search(query.text, top_k=3), 1):
            snippet = " ".join(hit.text.split())[:90]
            table.add_row(str(rank), hit.record_id, snippet)
        console.print(table)
