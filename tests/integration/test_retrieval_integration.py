"""Retrieval on a real Milvus Lite server with the real MiniLM embedder: hybrid search in English
and Chinese, filters, batched equals single, SearchBatcher, auto-load, `lorafeed search` output."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator

import pytest
from rich.console import Console

from lorafeed.embedder import SentenceEmbedder
from lorafeed.knowledge import ChunkRow, KnowledgeBase, KnowledgeConfig
from lorafeed.retrieval import RetrievalConfig, Retriever
from lorafeed.search_batcher import SearchBatcher
from lorafeed.search_cli import run_search
from lorafeed.stores import make_milvus
from tests.support.stack import RunningStack

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HOSTILE = 'kb"] or record_id != "x\\'
DOCS = {
    "en-refund": ("help-center", "en", "Refunds for the Aurora Smart Speaker are issued to the "
                  "original payment method within five business days after we receive it."),
    "en-shipping": ("wiki", "en", "Standard shipping to Shanghai takes three to five business "
                    "days; express shipping takes one to two days."),
    "en-password": ("faq", "en", "Passwords must be at least twelve characters long. Turn on "
                    "two-step verification to protect your account."),
    "zh-refund": ("help-center", "zh", "极光智能音箱的退款通常会在五个工作日内原路退回。"
                  "签收后七天内可申请无理由退货并获得全额退款。"),
    "zh-shipping": ("wiki", "zh", "寄往上海的普通快递需要三到五个工作日，加急快递一到两天送达。"),
    "zh-password": ("faq", "zh", "密码长度至少为十二位。开启两步验证可以保护您的麒麟智家账户。"),
    HOSTILE: ("faq", "en", "Firmware updates install automatically overnight when the Vela "
              "Robot Vacuum is idle and connected to power."),
}
QUERIES = [("How long does shipping to Shanghai take?", "en-shipping"),
           ("refund for my smart speaker", "en-refund"),
           ("极光智能音箱怎么申请退款？", "zh-refund"),
           ("密码要求和两步验证", "zh-password"),
           ("when does the robot vacuum update its firmware", HOSTILE)]


@pytest.fixture(scope="module")
def embedder() -> SentenceEmbedder:
    return SentenceEmbedder()


@pytest.fixture(scope="module")
def kb(stack: RunningStack, embedder: SentenceEmbedder) -> Iterator[KnowledgeBase]:
    config = KnowledgeConfig(collection=f"rt_{uuid.uuid4().hex[:10]}", dim=embedder.dim)
    base = KnowledgeBase(make_milvus(stack.milvus_uri), config)
    base.ensure_collection()
    vectors = embedder.embed([text for _, _, text in DOCS.values()])
    for (record_id, (source, lang, text)), vector in zip(DOCS.items(), vectors, strict=True):
        base.upsert_record(record_id, [ChunkRow(record_id, 0, text, vector, source,
                                                {"lang": lang}, 0, len(text))])
    base.flush()
    try:
        yield base
    finally:
        base.drop()
        base.client.close()


@pytest.fixture(scope="module")
def retriever(kb: KnowledgeBase, embedder: SentenceEmbedder) -> Retriever:
    return Retriever(kb, embedder, RetrievalConfig(top_k=3))


@pytest.mark.parametrize(("query", "expected"), QUERIES)
@pytest.mark.parametrize("rerank", [False, True])
def test_hybrid_search_finds_the_right_record(
    kb: KnowledgeBase, embedder: SentenceEmbedder, query: str, expected: str, rerank: bool
) -> None:
    retriever = Retriever(kb, embedder, RetrievalConfig(top_k=3, rerank=rerank))
    hits = retriever.search(query)
    assert hits[0].record_id == expected, [h.record_id for h in hits]
    assert hits[0].text == DOCS[expected][2] and hits[0].end_char == len(hits[0].text)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_bm25_segments_an_unspaced_chinese_query(retriever: Retriever) -> None:
    hits = retriever.search("无理由退货", mode="bm25")
    assert [h.record_id for h in hits] == ["zh-refund"]


def test_filters_restrict_hits(retriever: Retriever) -> None:
    zh = retriever.search("refund shipping password", filter={"lang": "zh"}, top_k=10)
    assert {h.record_id for h in zh} <= {"zh-refund", "zh-shipping", "zh-password"} and zh
    wiki = retriever.search("shipping", filter={"source": "wiki", "lang": "en"}, top_k=10)
    assert [h.record_id for h in wiki] == ["en-shipping"]
    only = retriever.search("firmware", filter={"record_id": [HOSTILE, "zh-refund"]}, top_k=10)
    assert {h.record_id for h in only} == {HOSTILE, "zh-refund"}
    assert retriever.search("refund", filter={"source": 'faq" or source != "'}) == []


def test_batched_search_equals_single_searches(retriever: Retriever) -> None:
    texts = [query for query, _ in QUERIES]
    for mode in ("hybrid", "dense", "bm25"):
        batched = retriever.search_many(texts, mode=mode)  # type: ignore[arg-type]
        singles = [retriever.search(text, mode=mode) for text in texts]  # type: ignore[arg-type]
        assert [[h.pk for h in hits] for hits in batched] == [[h.pk for h in hits]
                                                              for hits in singles]
        for got, want in zip(batched, singles, strict=True):
            assert [h.score for h in got] == pytest.approx([h.score for h in want], abs=1e-4)


def test_search_batcher_serves_concurrent_threads(retriever: Retriever) -> None:
    texts = [query for query, _ in QUERIES] * 3
    expected = {text: [h.pk for h in retriever.search(text)] for text in texts}
    got: dict[int, list[str]] = {}
    with SearchBatcher(retriever, max_batch=16, max_wait_ms=20) as batcher:
        def run(i: int) -> None:
            got[i] = [h.pk for h in batcher.search(texts[i], timeout=60)]
        threads = [threading.Thread(target=run, args=(i,)) for i in range(len(texts))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    assert {i: expected[texts[i]] for i in range(len(texts))} == got


def test_search_after_release_loads_the_collection(retriever: Retriever, kb: KnowledgeBase) -> None:
    kb.client.release_collection(kb.name)
    assert retriever.search("极光智能音箱退款")[0].record_id == "zh-refund"


def test_run_search_prints_a_table_and_json(
    stack: RunningStack, kb: KnowledgeBase, embedder: SentenceEmbedder
) -> None:
    console = Console(record=True, width=200)
    code = run_search(stack.milvus_uri, kb.name, "refund speaker", 2, "hybrid", False, console,
                      embedder=embedder)
    table = console.export_text()
    assert code == 0 and "en-refund" in table and "Refunds for the Aurora" in table
    console = Console(record=True, width=200)
    assert run_search(stack.milvus_uri, kb.name, "vacuum firmware", 1, "bm25", True, console,
                      embedder=embedder) == 0
    hits = json.loads(console.export_text())
    assert hits[0]["rank"] == 1 and hits[0]["record_id"] == HOSTILE and "vector" not in hits[0]
    console = Console(record=True, width=200)
    assert run_search(stack.milvus_uri, "no_such_kb", "x", 1, "hybrid", False, console,
                      embedder=embedder) == 2
    assert "does not exist" in console.export_text()
    assert run_search(stack.milvus_uri, kb.name, "x", 1, "fuzzy", False, console) == 2
