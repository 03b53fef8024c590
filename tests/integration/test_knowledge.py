"""KnowledgeBase on a real Milvus Lite server: idempotent upserts, shrinking and deleted records,
hostile record ids, Chinese BM25, auto-load after release and restart, outage translation."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import numpy as np
import pytest

from lorafeed import procs
from lorafeed.binaries import milvus_lite_binary
from lorafeed.knowledge import ChunkRow, KnowledgeBase, KnowledgeConfig, chunk_pk
from lorafeed.knowledge_errors import (
    KnowledgeInputError,
    KnowledgeSchemaError,
    KnowledgeUnavailable,
)
from lorafeed.stores import make_milvus
from tests.support.stack import RunningStack

pytestmark = pytest.mark.integration
T = TypeVar("T")

DIM = 8
HOSTILE_IDS = ['a" or pk != "', "\\", "x\\\" or 1 == 1 or \"", "line\nbreak\t", "退款#00001",
               "emoji 🙂 é", "'; drop", "a" * 256]
ZH = "我们的退款政策规定，订单签收后七天内可以申请无理由退货。"


def _vector(i: int) -> np.ndarray:
    vector = np.zeros(DIM, dtype=np.float32)
    vector[i % DIM] = 1.0
    return vector


def _rows(record_id: str, texts: list[str], source: str = "faq") -> list[ChunkRow]:
    return [ChunkRow(record_id, i, text, _vector(i), source, {"lang": "en", "n": i}, 0,
                     len(text), occurred_at=1_700_000_000_000 + i) for i, text in enumerate(texts)]


@pytest.fixture()
def kb(stack: RunningStack) -> Iterator[KnowledgeBase]:
    config = KnowledgeConfig(collection=f"kn_{uuid.uuid4().hex[:10]}", dim=DIM)
    base = KnowledgeBase(make_milvus(stack.milvus_uri), config, clock=lambda: 1_800_000_000.0)
    base.ensure_collection()
    try:
        yield base
    finally:
        base.drop()
        base.client.close()


def test_ensure_collection_is_idempotent_and_checks_the_schema(kb: KnowledgeBase) -> None:
    kb.ensure_collection()
    assert kb.exists() and kb.count() == 0
    other_dim = KnowledgeBase(kb.client, KnowledgeConfig(collection=kb.name, dim=DIM * 2))
    with pytest.raises(KnowledgeSchemaError, match=f"stores {DIM}-d vectors"):
        other_dim.ensure_collection()
    missing = KnowledgeBase(kb.client, KnowledgeConfig(collection=f"{kb.name}_none", dim=DIM))
    with pytest.raises(KnowledgeSchemaError, match="does not exist"):
        missing.ensure_collection(create=False)
    assert not missing.exists()


def test_upsert_twice_then_shrink_then_grow_then_delete(kb: KnowledgeBase) -> None:
    texts = ["kafka broker partitions", "milvus vector search", "redis dedup keys"]
    assert kb.upsert_record("doc-1", _rows("doc-1", texts)) == []
    assert kb.upsert_record("doc-1", _rows("doc-1", texts)) == []  # redelivery: no duplicates
    kb.upsert_record("doc-2", _rows("doc-2", ["other record"]))
    kb.flush()
    assert kb.count() == 4
    assert kb.chunk_ids("doc-1") == [chunk_pk("doc-1", i) for i in range(3)]

    assert kb.upsert_record("doc-1", _rows("doc-1", ["kafka only"])) == [
        "doc-1#00001", "doc-1#00002"]
    stored = kb.all_chunks("doc-1")
    assert [(c.pk, c.text) for c in stored] == [("doc-1#00000", "kafka only")]
    assert stored[0].metadata == {"lang": "en", "n": 0} and stored[0].source == "faq"
    assert stored[0].indexed_at == 1_800_000_000_000 and stored[0].end_char == 10
    np.testing.assert_allclose(stored[0].dense, _vector(0))

    assert kb.upsert_record("doc-1", _rows("doc-1", texts + ["four"])) == []
    assert len(kb.chunk_ids("doc-1")) == 4
    assert kb.delete_record("doc-1") == [chunk_pk("doc-1", i) for i in range(4)]
    assert kb.delete_record("doc-1") == []
    assert kb.upsert_record("doc-2", []) == ["doc-2#00000"]  # an empty record has no chunks
    kb.flush()
    assert kb.count() == 0


def test_hostile_record_ids_round_trip_and_touch_nothing_else(kb: KnowledgeBase) -> None:
    kb.upsert_record("bystander", _rows("bystander", ["keep me", "and me"]))
    for record_id in HOSTILE_IDS:
        kb.upsert_record(record_id, _rows(record_id, ["one", "two", "three"]))
    for record_id in HOSTILE_IDS:
        assert kb.chunk_ids(record_id) == [chunk_pk(record_id, i) for i in range(3)]
        assert kb.upsert_record(record_id, _rows(record_id, ["one"])) == [
            chunk_pk(record_id, 1), chunk_pk(record_id, 2)]
    assert {c.record_id for c in kb.all_chunks()} == {*HOSTILE_IDS, "bystander"}
    for record_id in HOSTILE_IDS:
        assert kb.delete_record(record_id) == [chunk_pk(record_id, 0)]
    assert kb.chunk_ids("bystander") == ["bystander#00000", "bystander#00001"]


def test_bad_rows_are_input_errors(kb: KnowledgeBase) -> None:
    with pytest.raises(KnowledgeInputError, match="over 65535"):
        kb.upsert_record("big", [ChunkRow("big", 0, "退" * 30000, _vector(0))])
    with pytest.raises(KnowledgeInputError, match="index 1"):
        kb.upsert_record("gap", [ChunkRow("gap", 1, "x", _vector(0))])
    with pytest.raises(KnowledgeInputError, match="names record 'other'"):
        kb.upsert_record("mine", [ChunkRow("other", 0, "x", _vector(0))])
    with pytest.raises(KnowledgeInputError, match="3-d vector, expected 8"):
        kb.upsert_record("dim", [ChunkRow("dim", 0, "x", [1.0, 0.0, 0.0])])
    with pytest.raises(KnowledgeInputError, match="1024 UTF-8 bytes"):
        kb.delete_record("退" * 400)
    with pytest.raises(KnowledgeInputError, match="non-empty"):
        kb.chunk_ids("")
    assert kb.count() == 0


def test_chinese_bm25_finds_unsegmented_text_and_dense_finds_vectors(kb: KnowledgeBase) -> None:
    kb.upsert_record("zh", [ChunkRow("zh", 0, ZH, _vector(1), "faq", {"lang": "zh"})])
    kb.upsert_record("en", _rows("en", ["refund policy for returned goods"]))
    kb.flush()
    by_bm25 = kb.search_bm25(["退款", "无理由退货", "refund policy"], 5)
    assert by_bm25[0][0][0] == "zh#00000" and by_bm25[1][0][0] == "zh#00000"
    assert by_bm25[2][0][0] == "en#00000" and by_bm25[0][0][1] > 0
    assert kb.search_bm25(["退款"], 5, filter='metadata["lang"] == "en"') == [[]]
    dense = kb.search_dense(np.stack([_vector(1), _vector(0)]), 1)
    assert [d[0][0] for d in dense] == ["zh#00000", "en#00000"]
    assert dense[0][0][1] == pytest.approx(1.0, abs=1e-5)
    fetched = kb.fetch(["zh#00000", "missing#00000"], with_vectors=True)
    assert list(fetched) == ["zh#00000"] and fetched["zh#00000"].text == ZH


def test_reads_load_a_released_collection_again(kb: KnowledgeBase) -> None:
    kb.upsert_record("doc", _rows("doc", ["milvus vector search"]))
    kb.flush()
    kb.client.release_collection(kb.name)
    assert kb.search_bm25(["milvus"], 3)[0][0][0] == "doc#00000"
    kb.client.release_collection(kb.name)
    assert kb.count() == 1


def _start_milvus(data_dir: Path, port: int) -> procs.ProcessHandle:
    argv = [milvus_lite_binary(), "server", "--data-dir", str(data_dir), "--host", "127.0.0.1",
            "--port", str(port)]
    handle = procs.spawn("milvus-test", argv, data_dir.parent / f"milvus-{port}.log")
    deadline = time.monotonic() + 30
    while not procs.port_open("127.0.0.1", port):
        assert handle.is_alive(), procs.tail(handle.log_path)
        assert time.monotonic() < deadline, "milvus-lite did not open its port"
        time.sleep(0.1)
    return handle


def _retry(call: Callable[[], T], timeout: float = 30.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()
        except KnowledgeUnavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.25)


def test_outage_is_unavailable_and_a_restart_needs_no_manual_load(tmp_path: Path) -> None:
    port = procs.free_port()
    handle = _start_milvus(tmp_path / "milvus", port)
    try:
        kb = KnowledgeBase(make_milvus(f"http://127.0.0.1:{port}", timeout_s=3),
                           KnowledgeConfig(collection="restart", dim=DIM))
        kb.ensure_collection()
        kb.upsert_record("doc", _rows("doc", ["survives restarts"]))
        kb.flush()
        procs.stop(handle)
        with pytest.raises(KnowledgeUnavailable, match="unavailable"):
            kb.upsert_record("doc", _rows("doc", ["lost?"]))
        with pytest.raises(KnowledgeUnavailable):
            kb.count()
        handle = _start_milvus(tmp_path / "milvus", port)
        # The client reconnects on its own (gRPC backoff), as a worker's retry loop would see;
        # the collection comes back released and the read path loads it again.
        assert _retry(lambda: kb.search_bm25(["restarts"], 3))[0][0][0] == "doc#00000"
        assert kb.all_chunks()[0].text == "survives restarts"
    finally:
        procs.stop(handle)
