"""End-to-end ingest: records published to records.raw until indexed in Milvus by a real
streams worker, against the bare embedder (sentence-transformers `encode`) on exactly the same
chunks in the same run. Also the worker's RSS drift, publish-to-searchable latency and search
latency at the indexed size.

Targets on this machine: pipeline >= 0.8x the bare embedder's chunks/s; RSS at the end within
50 MB of RSS after warm-up; p95 publish-to-searchable < 5 s.
Usage: python bench/ingest.py [--records 400] [--probes 20]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psutil

from lorafeed import procs
from lorafeed.corpus import generate_corpus
from lorafeed.embedder import SentenceEmbedder
from lorafeed.kafka_clients import make_consumer, make_producer
from lorafeed.knowledge import KnowledgeBase, KnowledgeConfig
from lorafeed.models import minilm_dir
from lorafeed.retrieval import Retriever
from lorafeed.settings import StackSettings
from lorafeed.stack import Stack, StackState
from lorafeed.stores import make_milvus
from schemas import RecordIndexed, Topic, decode, topic_name

ROOT = Path(__file__).resolve().parents[1]
COLLECTION = "bench_ingest"


def start_worker(state_dir: Path, log: Path) -> procs.ProcessHandle:
    env = {
        **os.environ,
        "LORAFEED_STATE_DIR": str(state_dir),
        "STREAMS_COLLECTION": COLLECTION,
        "STREAMS_APP_ID": f"bench-{uuid.uuid4().hex[:6]}",
        "HF_HUB_OFFLINE": "1",
    }
    return procs.spawn("streams", [sys.executable, "-m", "streams"], log, env=env, cwd=ROOT)


class Outcomes:
    """Follows records.indexed and remembers when each record's outcome arrived."""

    def __init__(self, state: StackState) -> None:
        assert state.bootstrap_servers
        self.consumer = make_consumer(state.bootstrap_servers, f"bench-{uuid.uuid4().hex[:6]}")
        self.consumer.subscribe([topic_name(Topic.RECORDS_INDEXED, state.topic_prefix)])
        self.seen: dict[str, tuple[float, RecordIndexed]] = {}

    def wait(self, ids: set[str], timeout_s: float) -> float:
        deadline = time.monotonic() + timeout_s
        while not ids <= set(self.seen):
            if time.monotonic() > deadline:
                raise SystemExit(f"timed out: {len(ids - set(self.seen))} records not indexed")
            msg = self.consumer.poll(0.05)
            if msg is not None and not msg.error():
                event = decode(Topic.RECORDS_INDEXED, msg.value())
                self.seen[event.record_id] = (time.perf_counter(), event)
        return max(self.seen[i][0] for i in ids)


def publish(state: StackState, records: list[dict]) -> float:
    assert state.bootstrap_servers
    producer = make_producer(state.bootstrap_servers)
    name = topic_name(Topic.RECORDS_RAW, state.topic_prefix)
    began = time.perf_counter()
    for record in records:
        producer.produce(name, key=record["record_id"], value=json.dumps(record).encode())
        producer.poll(0)
    producer.flush(30)
    return began


def wait_ready(log: Path, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while "streams worker ready" not in log.read_text(errors="replace"):
        if time.monotonic() > deadline:
            raise SystemExit(f"worker not ready; see {log}")
        time.sleep(0.2)


def bare_embedder_rate(texts: list[str]) -> float:
    """Chunks/s of a plain sentence-transformers encode on the same texts (the baseline)."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(minilm_dir()), device="cpu", local_files_only=True)
    model.encode(texts[:64], batch_size=64)
    began = time.perf_counter()
    model.encode(texts, batch_size=64, normalize_embeddings=True)
    return len(texts) / (time.perf_counter() - began)


def probe_latency(state: StackState, outcomes: Outcomes, kb: KnowledgeBase, n: int) -> list[float]:
    """Seconds from a record's acked publish to its chunks being returned by Milvus."""
    latencies = []
    for i, record in enumerate(
        generate_corpus(n, seed=99, exact_dup_ratio=0, near_dup_ratio=0, id_prefix="probe").records
    ):
        began = publish(state, [record])
        outcomes.wait({record["record_id"]}, 60)
        while not kb.chunk_ids(record["record_id"]):
            time.sleep(0.02)
        latencies.append(time.perf_counter() - began)
        time.sleep(0.2 if i % 2 else 0.05)
    return latencies


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=400)
    parser.add_argument("--probes", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        settings = StackSettings(
            state_dir=Path(tmp) / "state",
            kafka_port=0,
            milvus_port=0,
            redis_url=f"redis://127.0.0.1:{procs.free_port()}/0",
        )
        stack = Stack(settings)
        state = stack.up()
        worker = None
        try:
            log = Path(tmp) / "streams.log"
            worker = start_worker(settings.state_dir, log)
            wait_ready(log)
            run(state, worker, args)
        finally:
            if worker:
                procs.stop(worker)
            stack.down()


def run(state: StackState, worker: procs.ProcessHandle, args: argparse.Namespace) -> None:
    outcomes = Outcomes(state)
    warm = generate_corpus(20, seed=1, id_prefix="warm").records
    publish(state, warm)
    outcomes.wait({r["record_id"] for r in warm}, 180)
    rss_warm = psutil.Process(worker.pid).memory_info().rss / 2**20

    corpus = generate_corpus(args.records, seed=7)
    ids = {r["record_id"] for r in corpus.records}
    began = publish(state, corpus.records)
    done = outcomes.wait(ids, 1800)
    wall = done - began
    chunks = sum(outcomes.seen[i][1].chunk_count for i in ids)
    rss_end = psutil.Process(worker.pid).memory_info().rss / 2**20
    assert state.url("milvus")
    kb = KnowledgeBase(make_milvus(state.url("milvus") or ""), KnowledgeConfig(COLLECTION))
    latencies = probe_latency(state, outcomes, kb, args.probes)
    procs.stop(worker)  # the baseline gets the machine to itself

    texts = [row.text for row in kb.all_chunks() if row.record_id in ids]
    bare = bare_embedder_rate(texts)
    pipeline = chunks / wall
    aliases = sum(1 for i in ids if outcomes.seen[i][1].duplicate_of)
    print(
        f"records: {len(ids)} published ({aliases} duplicates kept as aliases), "
        f"{chunks} chunks indexed in {wall:.1f} s"
    )
    print(f"pipeline: {len(ids) / wall:.1f} records/s, {pipeline:.1f} chunks/s")
    print(f"bare embedder on the same {len(texts)} chunks: {bare:.1f} chunks/s")
    print(f"ratio pipeline / bare embedder: {pipeline / bare:.2f}x (target >= 0.8x)")
    print(
        f"worker RSS: {rss_warm:.0f} MB after warm-up, {rss_end:.0f} MB at the end "
        f"({rss_end - rss_warm:+.0f} MB; target within 50 MB)"
    )
    print(
        f"publish-to-searchable over {len(latencies)} probes: p50 {pct(latencies, 0.5):.2f} s, "
        f"p95 {pct(latencies, 0.95):.2f} s (target p95 < 5 s)"
    )
    search_latency(kb, [q.text for q in corpus.queries])


def search_latency(kb: KnowledgeBase, queries: list[str]) -> None:
    retriever = Retriever(kb, SentenceEmbedder())
    retriever.search(queries[0])
    single = []
    for query in queries:
        began = time.perf_counter()
        retriever.search(query)
        single.append(time.perf_counter() - began)
    batched = []
    for i in range(0, len(queries) - 31, 32):
        began = time.perf_counter()
        retriever.search_many(queries[i : i + 32])
        batched.append((time.perf_counter() - began) / 32)
    print(
        f"search at {kb.count()} chunks, {len(single)} queries: single p50 "
        f"{pct(single, 0.5) * 1000:.0f} ms p95 {pct(single, 0.95) * 1000:.0f} ms; "
        + (
            f"batched by 32, per query p50 {pct(batched, 0.5) * 1000:.0f} ms "
            f"p95 {pct(batched, 0.95) * 1000:.0f} ms"
            if batched
            else "too few for batches"
        )
    )


if __name__ == "__main__":
    main()
