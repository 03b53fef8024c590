"""Pure retrieval logic: RRF fusion, safe filter expressions, adaptive batch sizing, the
reranker's scoring, one Milvus call per mode, and SearchBatcher's grouping of concurrent callers."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from milvus_lite.search.filter.parser import parse_expr

from lorafeed.embedder import HashingEmbedder, next_batch_size
from lorafeed.knowledge import ChunkRow, chunk_pk, quote_str
from lorafeed.rerank import BlendConfig, BlendReranker, query_terms
from lorafeed.retrieval import (
    FilterError,
    Hit,
    RetrievalConfig,
    RetrievalError,
    Retriever,
    build_filter,
    rrf_fuse,
)
from lorafeed.search_batcher import SearchBatcher

HOSTILE = ['a" or pk != "', "\\", 'x\\" or 1 == 1 or "', "'", "line\nbreak\r\t", "退款#00001",
           "emoji 🙂 é", '"', "\\\\\"", ""]


# --- rrf_fuse ---------------------------------------------------------------------------------

def test_rrf_matches_hand_computed_scores() -> None:
    fused = rrf_fuse([["a", "b", "c"], ["b", "d"]], [1.0, 1.0], 60)
    assert [pk for pk, _ in fused] == ["b", "a", "d", "c"]
    scores = dict(fused)
    assert scores["b"] == pytest.approx(1 / 62 + 1 / 61)
    assert scores["a"] == pytest.approx(1 / 61)
    assert scores["d"] == pytest.approx(1 / 62)
    assert scores["c"] == pytest.approx(1 / 63)


def test_rrf_weights_and_k_zero() -> None:
    fused = rrf_fuse([["a", "b", "c"], ["b", "d"]], [2.0, 0.5], 0)
    assert fused == [("a", 2.0), ("b", pytest.approx(1.5)), ("c", pytest.approx(2 / 3)),
                     ("d", 0.25)]


def test_rrf_breaks_ties_by_id_and_counts_a_repeat_once() -> None:
    assert [pk for pk, _ in rrf_fuse([["y", "x"], ["x", "y"]], [1, 1], 60)] == ["x", "y"]
    assert dict(rrf_fuse([["a", "a", "b"]], [1.0], 0)) == {"a": 1.0, "b": pytest.approx(1 / 3)}


def test_rrf_edge_cases() -> None:
    assert rrf_fuse([], [], 60) == []
    assert rrf_fuse([[], []], [1, 1], 60) == []
    with pytest.raises(ValueError, match="2 rankings but 1 weights"):
        rrf_fuse([["a"], ["b"]], [1.0], 60)
    with pytest.raises(ValueError, match="-1"):
        rrf_fuse([["a"]], [1.0], -1)


# --- quoting and filters ----------------------------------------------------------------------

@pytest.mark.parametrize("value", HOSTILE)
def test_quote_str_parses_back_to_one_literal(value: str) -> None:
    expr = parse_expr(f"record_id == {quote_str(value)}")
    assert type(expr).__name__ == "CmpOp"
    assert expr.right.value == value  # type: ignore[attr-defined]


def test_quote_str_escapes_exactly() -> None:
    assert quote_str('a" or pk != "') == '"a\\" or pk != \\""'
    assert quote_str("\\") == '"\\\\"'
    assert quote_str("终\n") == '"终\\n"'


def test_chunk_pk_is_deterministic_and_unambiguous() -> None:
    assert chunk_pk("doc", 7) == "doc#00007"
    assert chunk_pk("a#00001", 0) != chunk_pk("a", 1)


def test_build_filter_source_metadata_and_record_ids() -> None:
    expr = build_filter({"source": "helpdesk", "lang": "zh", "record_id": ["r1", 'r"2'],
                         "score": 3, "ok": True})
    assert expr == ('metadata["lang"] == "zh" and metadata["ok"] == true and '
                    'record_id in ["r1", "r\\"2"] and metadata["score"] == 3 and '
                    'source == "helpdesk"')
    assert type(parse_expr(expr)).__name__ == "And"
    assert build_filter(None) == "" and build_filter({}) == ""
    assert build_filter({"record_id": "only"}) == 'record_id in ["only"]'


@pytest.mark.parametrize("value", HOSTILE)
def test_build_filter_values_stay_values(value: str) -> None:
    expr = parse_expr(build_filter({"source": value}))
    assert expr.right.value == value  # type: ignore[attr-defined]


@pytest.mark.parametrize("key", ['lang"] == "x', "", "a" * 65, "la ng", "终", "a.b"])
def test_build_filter_rejects_bad_keys(key: str) -> None:
    with pytest.raises(FilterError, match="filter key"):
        build_filter({key: "x"})


@pytest.mark.parametrize("value", [None, float("nan"), float("inf"), {"a": 1}, [1]])
def test_build_filter_rejects_bad_values(value: Any) -> None:
    with pytest.raises(FilterError):
        build_filter({"lang": value})
    with pytest.raises(FilterError, match="record_id"):
        build_filter({"record_id": [] if value is None else [value]})


# --- configuration ----------------------------------------------------------------------------

@pytest.mark.parametrize(("kwargs", "message"), [
    ({"top_k": 0}, "top_k must be >= 1, got 0"),
    ({"top_k": 10, "candidates": 5}, "candidates must be >= top_k=10, got 5"),
    ({"mode": "sparse"}, "'sparse'"),
    ({"dense_weight": -1.0}, "dense_weight .* got -1.0"),
    ({"bm25_weight": float("nan")}, "bm25_weight"),
    ({"dense_weight": 0.0, "bm25_weight": 0.0}, "both be 0"),
    ({"rrf_k": -5}, "rrf_k must be >= 0, got -5"),
])
def test_retrieval_config_names_bad_values(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RetrievalConfig(**kwargs)


def test_blend_config_validates() -> None:
    with pytest.raises(ValueError, match="cjk_discount .* got 1.5"):
        BlendConfig(cjk_discount=1.5)
    with pytest.raises(ValueError, match="lexical_weight"):
        BlendConfig(lexical_weight=-0.1)


# --- next_batch_size --------------------------------------------------------------------------

def test_next_batch_size_halves_when_slow_and_grows_slowly_when_fast() -> None:
    assert next_batch_size(64, 1.5, 1.0, 1, 64) == 32
    assert next_batch_size(32, 0.2, 1.0, 1, 64) == 36  # + 1/8
    assert next_batch_size(3, 0.2, 1.0, 1, 64) == 4  # + at least one
    assert next_batch_size(40, 0.7, 1.0, 1, 64) == 40  # within [target/2, target]: keep
    assert next_batch_size(62, 0.1, 1.0, 1, 64) == 64  # clamped to hi
    assert next_batch_size(1, 9.0, 1.0, 1, 64) == 1  # clamped to lo


def test_next_batch_size_recovers_after_a_slow_spell() -> None:
    size = 64
    for _ in range(3):
        size = next_batch_size(size, 2.0, 1.0, 1, 64)
    assert size == 8
    steps = 0
    while size < 64:
        size = next_batch_size(size, 0.1, 1.0, 1, 64)
        steps += 1
    assert 10 <= steps <= 25  # slow growth: many fast calls to get back


@pytest.mark.parametrize("args", [(0, 1.0, 1.0, 1, 8), (4, 1.0, 0.0, 1, 8), (4, -1.0, 1.0, 1, 8),
                                  (4, 1.0, 1.0, 0, 8), (4, 1.0, 1.0, 9, 8)])
def test_next_batch_size_rejects_bad_arguments(args: tuple[int, float, float, int, int]) -> None:
    with pytest.raises(ValueError):
        next_batch_size(*args)


# --- reranker ---------------------------------------------------------------------------------

def _hit(pk: str, text: str, score: float = 0.0) -> Hit:
    return Hit(pk, pk.split("#")[0], 0, text, "faq", score, {}, 0, len(text))


def test_query_terms_segment_chinese_and_drop_stopwords() -> None:
    assert "退款" in query_terms("极光智能音箱怎么申请退款？")
    assert "怎么" not in query_terms("极光智能音箱怎么申请退款？")
    assert query_terms("How do I get a Refund for the Aurora?") == ["get", "refund", "aurora"]


def test_blend_reranker_prefers_chunks_covering_the_query() -> None:
    embedder = HashingEmbedder(64)
    hits = [_hit("a#00000", "Shipping takes three days to Shanghai.", 0.9),
            _hit("b#00000", "Refunds for the Aurora speaker arrive in five days.", 0.1),
            _hit("c#00000", "极光智能音箱的退款会在七个工作日内原路退回。", 0.5)]
    ranked = BlendReranker(embedder).rerank("aurora refund", hits)
    assert ranked[0].pk == "b#00000"
    assert [h.pk for h in BlendReranker(embedder).rerank("极光智能音箱退款", hits)][0] == "c#00000"
    assert BlendReranker(embedder).rerank("anything", []) == []


def test_blend_reranker_discounts_dense_for_chinese_only_when_configured() -> None:
    english_only = HashingEmbedder()
    english_only.model_id = "sentence-transformers/all-MiniLM-L6-v2"
    assert BlendReranker(english_only).cjk_discount == 1.0
    assert BlendReranker(HashingEmbedder()).cjk_discount == 0.0
    assert BlendReranker(english_only, BlendConfig(cjk_discount=0.25)).cjk_discount == 0.25


# --- Retriever against an in-memory knowledge base --------------------------------------------

@dataclass
class FakeKB:
    """Records calls; ranks chunks by hashed-vector cosine (dense) or shared words (bm25)."""

    rows: dict[str, ChunkRow]
    calls: list[tuple[str, int, str]] = field(default_factory=list)

    def search_dense(self, vectors: np.ndarray, limit: int, *, filter: str = "") -> Any:
        self.calls.append(("dense", len(vectors), filter))
        stored = [(pk, np.asarray(r.dense)) for pk, r in self.rows.items()]
        return [sorted(((pk, float(v @ q)) for pk, v in stored), key=lambda p: -p[1])[:limit]
                for q in vectors]

    def search_bm25(self, texts: Sequence[str], limit: int, *, filter: str = "") -> Any:
        self.calls.append(("bm25", len(texts), filter))
        out = []
        for text in texts:
            words = set(text.lower().split())
            scored = [(pk, float(len(words & set(r.text.lower().split()))))
                      for pk, r in self.rows.items()]
            out.append(sorted([s for s in scored if s[1] > 0], key=lambda p: -p[1])[:limit])
        return out

    def fetch(self, pks: Sequence[str], *, with_vectors: bool = False) -> dict[str, ChunkRow]:
        self.calls.append(("fetch", len(set(pks)), ""))
        return {pk: self.rows[pk] for pk in pks if pk in self.rows}


TEXTS = {"kafka": "kafka broker partitions", "milvus": "milvus vector search",
         "redis": "redis dedup keys", "lora": "lora adapters training"}


@pytest.fixture()
def fake_kb() -> FakeKB:
    embedder = HashingEmbedder(64)
    vectors = embedder.embed(list(TEXTS.values()))
    rows = {f"{rid}#00000": ChunkRow(rid, 0, text, vectors[i], "faq")
            for i, (rid, text) in enumerate(TEXTS.items())}
    return FakeKB(rows)


def test_search_many_sends_one_call_per_mode(fake_kb: FakeKB) -> None:
    retriever = Retriever(fake_kb, HashingEmbedder(64), RetrievalConfig(top_k=2))  # type: ignore[arg-type]
    results = retriever.search_many(["redis keys", "lora training", "kafka partitions"],
                                    filter={"source": "faq"})
    assert [r[0].record_id for r in results] == ["redis", "lora", "kafka"]
    assert all(len(r) == 2 for r in results)
    assert fake_kb.calls[:2] == [("dense", 3, 'source == "faq"'), ("bm25", 3, 'source == "faq"')]
    assert [c[0] for c in fake_kb.calls] == ["dense", "bm25", "fetch"]


def test_search_modes_and_validation(fake_kb: FakeKB) -> None:
    retriever = Retriever(fake_kb, HashingEmbedder(64))  # type: ignore[arg-type]
    assert retriever.search("milvus vector", mode="bm25")[0].record_id == "milvus"
    assert fake_kb.calls[-2][0] == "bm25" and "dense" not in [c[0] for c in fake_kb.calls]
    assert retriever.search("milvus vector", mode="dense", top_k=1)[0].record_id == "milvus"
    assert retriever.search_many([]) == []
    assert retriever.search_many(["  ", "redis"])[0] == []
    with pytest.raises(RetrievalError, match="single str"):
        retriever.search_many("redis")
    with pytest.raises(RetrievalError, match="mode"):
        retriever.search("x", mode="fuzzy")  # type: ignore[arg-type]


# --- SearchBatcher ----------------------------------------------------------------------------

class FakeRetriever:
    """Answers each query with one hit named after it; the first call blocks until released."""

    def __init__(self) -> None:
        self.config = RetrievalConfig(top_k=3)
        self.calls: list[tuple[list[str], int, Any, str | None]] = []
        self.release = threading.Event()
        self.fail_on: str | None = None

    def search_many(self, queries: Sequence[str], *, top_k: int | None = None,
                    filter: Any = None, mode: str | None = None) -> list[list[Hit]]:
        self.calls.append((list(queries), top_k or 0, filter, mode))
        self.release.wait(5)
        if self.fail_on in queries:
            raise RuntimeError(f"milvus down for {self.fail_on}")
        return [[_hit(f"{q}#{i:05d}", q) for i in range(top_k or 3)] for q in queries]


def _spawn(
    batcher: SearchBatcher, query: str, out: dict[str, Any], **kwargs: Any
) -> threading.Thread:
    def run() -> None:
        try:
            out[query] = batcher.search(query, timeout=10, **kwargs)
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            out[query] = exc
    thread = threading.Thread(target=run)
    thread.start()
    return thread


def _wait_for(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.005)


def test_batcher_merges_concurrent_callers_into_one_call() -> None:
    fake = FakeRetriever()
    out: dict[str, Any] = {}
    with SearchBatcher(fake, max_batch=32, max_wait_ms=20) as batcher:  # type: ignore[arg-type]
        threads = [_spawn(batcher, "q0", out)]
        _wait_for(lambda: len(fake.calls) == 1)  # q0 is in flight, the model is "busy"
        threads += [_spawn(batcher, f"q{i}", out, top_k=1 if i == 5 else None)
                    for i in range(1, 8)]
        _wait_for(lambda: batcher._queue.qsize() == 7)
        fake.release.set()
        for thread in threads:
            thread.join(10)
    assert [sorted(c[0]) for c in fake.calls] == [["q0"], [f"q{i}" for i in range(1, 8)]]
    assert fake.calls[1][1] == 3  # the largest top_k of the group
    assert all(out[f"q{i}"][0].text == f"q{i}" for i in range(8))
    assert len(out["q5"]) == 1 and len(out["q4"]) == 3
    assert not batcher._thread.is_alive()


def test_batcher_splits_by_mode_and_filter_and_caps_batch_size() -> None:
    fake = FakeRetriever()
    out: dict[str, Any] = {}
    with SearchBatcher(fake, max_batch=3, max_wait_ms=20) as batcher:  # type: ignore[arg-type]
        threads = [_spawn(batcher, "first", out)]
        _wait_for(lambda: len(fake.calls) == 1)
        threads += [_spawn(batcher, "a", out, mode="bm25"),
                    _spawn(batcher, "b", out, filter={"lang": "zh"})]
        _wait_for(lambda: batcher._queue.qsize() == 2)
        threads += [_spawn(batcher, "c", out, filter={"lang": "zh"}),
                    _spawn(batcher, "d", out)]
        _wait_for(lambda: batcher._queue.qsize() == 4)
        fake.release.set()
        for thread in threads:
            thread.join(10)
    batches = [(c[0], c[2], c[3]) for c in fake.calls[1:]]
    assert (["a"], None, "bm25") in batches
    assert (["b", "c"], {"lang": "zh"}, "hybrid") in batches
    assert (["d"], None, "hybrid") in batches  # the fourth request waited for the next batch
    assert all(not isinstance(v, Exception) for v in out.values())


def test_batcher_reports_errors_to_the_right_callers_and_refuses_after_close() -> None:
    fake = FakeRetriever()
    fake.fail_on = "bad"
    fake.release.set()
    batcher = SearchBatcher(fake, max_batch=8, max_wait_ms=1)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="milvus down for bad"):
        batcher.search("bad", timeout=5)
    with pytest.raises(FilterError):
        batcher.search("ok", filter={"bad key": 1}, timeout=5)
    assert batcher.search("ok", timeout=5)[0].text == "ok"
    batcher.close()
    batcher.close()  # idempotent
    assert not batcher._thread.is_alive()
    with pytest.raises(RetrievalError, match="closed"):
        batcher.search("late")


@pytest.mark.parametrize(("kwargs", "message"), [({"max_batch": 0}, "max_batch"),
                                                 ({"max_wait_ms": -1}, "max_wait_ms")])
def test_batcher_validates_knobs(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SearchBatcher(FakeRetriever(), **kwargs)  # type: ignore[arg-type]
