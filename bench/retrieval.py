"""Retrieval quality and speed on the seeded corpus: recall@5 and MRR@10 for dense, BM25, RRF and
RRF + rerank, split by language, search latency p50/p95 (single, batched, SearchBatcher) and the
bare embedder throughput. Records are cleaned, chunked and embedded into a scratch Milvus Lite.

recall@5: share of a query's relevant records (at most 5 count) among the records of its top-5
chunks. MRR@10: 1 / rank of the first top-10 chunk whose record is relevant (0 if none).

Usage: python bench/retrieval.py [--records 400] [--seed 7] [--batch 32]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

from pymilvus import MilvusClient

from lorafeed.corpus import Corpus, LabelledQuery, generate_corpus
from lorafeed.embedder import SentenceEmbedder
from lorafeed.knowledge import ChunkRow, KnowledgeBase, KnowledgeConfig
from lorafeed.rerank import BlendConfig, BlendReranker
from lorafeed.retrieval import Hit, Mode, RetrievalConfig, Retriever
from lorafeed.search_batcher import SearchBatcher
from streams.chunking import ChunkConfig, chunk_text
from streams.cleaning import clean

LANGS = ("zh", "en", "all")


@dataclass(frozen=True)
class Scores:
    recall: dict[str, float]
    mrr: dict[str, float]


def index_corpus(
    corpus: Corpus, embedder: SentenceEmbedder, kb: KnowledgeBase
) -> tuple[int, float]:
    """Clean, chunk, embed and upsert every record; return (chunks, embed seconds)."""
    per_record: list[tuple[dict[str, object], list[ChunkRow]]] = []
    texts: list[str] = []
    for record in corpus.records:
        text = clean(str(record["content"]), str(record["content_type"]))
        chunks = chunk_text(text, embedder.tokenizer, ChunkConfig())
        record_id = str(record["record_id"])
        metadata = {**record["metadata"], "lang": corpus.languages[record_id]}
        rows = [ChunkRow(record_id, c.index, c.text, (), str(record["source"]), metadata,
                         c.start_char, c.end_char) for c in chunks]
        per_record.append((record, rows))
        texts.extend(c.text for c in chunks)
    began = time.perf_counter()
    vectors = embedder.embed(texts)
    embed_s = time.perf_counter() - began
    offset = 0
    for record, rows in per_record:
        dense = vectors[offset : offset + len(rows)]
        offset += len(rows)
        kb.upsert_record(str(record["record_id"]), [
            ChunkRow(r.record_id, r.chunk_index, r.text, dense[i], r.source, r.metadata,
                     r.start_char, r.end_char) for i, r in enumerate(rows)])
    kb.flush()
    return len(texts), embed_s


def evaluate(results: Sequence[Sequence[Hit]], queries: Sequence[LabelledQuery]) -> Scores:
    per_lang: dict[str, list[tuple[float, float]]] = {lang: [] for lang in LANGS}
    for hits, query in zip(results, queries, strict=True):
        relevant = set(query.relevant_record_ids)
        top5 = {h.record_id for h in hits[:5]}
        recall = len(top5 & relevant) / min(5, len(relevant))
        ranks = [i for i, h in enumerate(hits[:10], start=1) if h.record_id in relevant]
        mrr = 1.0 / ranks[0] if ranks else 0.0
        per_lang[query.lang].append((recall, mrr))
        per_lang["all"].append((recall, mrr))
    return Scores(
        {lang: statistics.fmean(r for r, _ in v) if v else 0.0 for lang, v in per_lang.items()},
        {lang: statistics.fmean(m for _, m in v) if v else 0.0 for lang, v in per_lang.items()},
    )


def percentiles(samples: Sequence[float]) -> tuple[float, float]:
    """p50 and p95 in milliseconds."""
    ordered = sorted(samples)
    pick = lambda q: ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]  # noqa: E731
    return pick(0.5) * 1000, pick(0.95) * 1000


def timed(fn: Callable[[], object]) -> float:
    began = time.perf_counter()
    fn()
    return time.perf_counter() - began


def latency_rows(
    retriever: Retriever, texts: list[str], batch: int
) -> list[tuple[str, float, float]]:
    """(label, p50 ms, p95 ms) for single searches, batched calls and the SearchBatcher."""
    rows = []
    plain = Retriever(retriever.kb, retriever.embedder, replace(retriever.config, rerank=False))
    reranked = Retriever(retriever.kb, retriever.embedder, replace(retriever.config, rerank=True))
    cases: tuple[tuple[str, Retriever, Mode], ...] = (
        ("dense", plain, "dense"), ("bm25", plain, "bm25"), ("hybrid (rrf)", plain, "hybrid"),
        ("hybrid + rerank", reranked, "hybrid"))
    for label, engine, mode in cases:
        samples = [timed(partial(engine.search, q, mode=mode)) for q in texts[:40]]
        rows.append((f"single {label}", *percentiles(samples)))
    groups = [texts[i : i + batch] for i in range(0, len(texts), batch)]
    calls = [timed(partial(retriever.search_many, g)) for g in groups * 3 if len(g) == batch]
    p50, p95 = percentiles(calls)
    tag = "+ rerank" if retriever.config.rerank else "(rrf)"
    rows.append((f"batch of {batch} hybrid {tag}, per call", p50, p95))
    rows.append((f"batch of {batch} hybrid {tag}, per query", p50 / batch, p95 / batch))
    batched = batcher_samples(retriever, texts, batch)
    rows.append((f"SearchBatcher {tag}, {batch} threads", *percentiles(batched)))
    return rows


def batcher_samples(retriever: Retriever, texts: list[str], threads: int) -> list[float]:
    """Per-request latency of ``threads`` callers each running 4 searches via a SearchBatcher."""
    samples: list[float] = []
    lock = threading.Lock()
    with SearchBatcher(retriever, max_batch=threads, max_wait_ms=5) as batcher:
        def caller(index: int) -> None:
            for j in range(4):
                took = timed(partial(batcher.search, texts[(index * 4 + j) % len(texts)]))
                with lock:
                    samples.append(took)
        workers = [threading.Thread(target=caller, args=(i,)) for i in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    return samples


def embed_rate(embedder: SentenceEmbedder, corpus: Corpus) -> float:
    """Texts per second for 256 English texts of 64 tokens each (special tokens included)."""
    words = " ".join(b for r, b in corpus.bodies.items() if corpus.languages[r] == "en").split()
    ids = embedder.tokenizer(" ".join(words[:20000]), add_special_tokens=False,
                            verbose=False)["input_ids"]
    texts = [embedder.tokenizer.decode(ids[i : i + 62]) for i in range(0, len(ids) - 62, 62)]
    texts = (texts * (1 + 256 // max(1, len(texts))))[:256]
    embedder.embed(texts[:32])
    return len(texts) / timed(partial(embedder.embed, texts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=400)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    logging.getLogger("pymilvus").setLevel(logging.CRITICAL)
    corpus = generate_corpus(args.records, seed=args.seed, zh_ratio=0.4)
    embedder = SentenceEmbedder()
    with tempfile.TemporaryDirectory(prefix="bench-retrieval-") as scratch:
        client = MilvusClient(str(Path(scratch) / "milvus.db"))
        kb = KnowledgeBase(client, KnowledgeConfig(collection="bench", dim=embedder.dim))
        kb.ensure_collection()
        n_chunks, embed_s = index_corpus(corpus, embedder, kb)
        queries = corpus.queries
        zh = sum(1 for q in queries if q.lang == "zh")
        print(f"corpus: {len(corpus.records)} records, {n_chunks} chunks, {len(queries)} queries "
              f"({zh} zh, {len(queries) - zh} en); embedded at {n_chunks / embed_s:.1f} chunks/s")
        print(f"embedder: {embed_rate(embedder, corpus):.1f} texts/s at 64 tokens "
              f"(batch size now {embedder.batch_size})\n")
        report_quality(kb, embedder, queries)
        texts = [q.text for q in queries]
        print(f"\n{'latency (ms), default config':<44}{'p50':>8}{'p95':>8}")
        for label, p50, p95 in latency_rows(Retriever(kb, embedder), texts, args.batch):
            print(f"{label:<44}{p50:>8.1f}{p95:>8.1f}")
        client.close()


def report_quality(
    kb: KnowledgeBase, embedder: SentenceEmbedder, queries: list[LabelledQuery]
) -> None:
    texts = [q.text for q in queries]
    variants: list[tuple[str, Retriever]] = [
        ("dense", Retriever(kb, embedder, RetrievalConfig(mode="dense", rerank=False))),
        ("bm25", Retriever(kb, embedder, RetrievalConfig(mode="bm25", rerank=False))),
        ("rrf", Retriever(kb, embedder, RetrievalConfig(mode="hybrid", rerank=False))),
        ("rrf+rerank", Retriever(kb, embedder, RetrievalConfig(rerank=True),
                                 BlendReranker(embedder, BlendConfig()))),
        ("  (no cjk disc.)", Retriever(kb, embedder, RetrievalConfig(rerank=True),
                                       BlendReranker(embedder, BlendConfig(cjk_discount=0.0)))),
    ]
    header = "".join(f"{f'R@5 {lang}':>10}" for lang in LANGS) + "".join(
        f"{f'MRR {lang}':>10}" for lang in LANGS)
    print(f"{'method':<17}{header}{'R@5/dense':>11}{'MRR/dense':>11}")
    baseline: Scores | None = None
    for name, retriever in variants:
        scores = evaluate(retriever.search_many(texts, top_k=10), queries)
        baseline = baseline or scores
        cells = "".join(f"{scores.recall[lang]:>10.3f}" for lang in LANGS) + "".join(
            f"{scores.mrr[lang]:>10.3f}" for lang in LANGS)
        ratio_r = scores.recall["all"] / max(baseline.recall["all"], 1e-9)
        ratio_m = scores.mrr["all"] / max(baseline.mrr["all"], 1e-9)
        print(f"{name:<17}{cells}{ratio_r:>11.2f}{ratio_m:>11.2f}")


if __name__ == "__main__":
    main()
