"""Milvus Lite server through the client factory: schema with BM25, upsert, search, delete."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from pymilvus import AnnSearchRequest, DataType, Function, FunctionType, MilvusClient, RRFRanker

from lorafeed.stores import ensure_loaded, make_milvus
from tests.support.stack import RunningStack

pytestmark = pytest.mark.integration

DIM = 8


def _vector(i: int) -> list[float]:
    return [1.0 if j == i % DIM else 0.0 for j in range(DIM)]


@pytest.fixture()
def collection(stack: RunningStack) -> Iterator[tuple[MilvusClient, str]]:
    client = make_milvus(stack.milvus_uri)
    name = f"scratch_{uuid.uuid4().hex[:8]}"
    schema = MilvusClient.create_schema(auto_id=False)
    schema.add_field("pk", DataType.VARCHAR, is_primary=True, max_length=128)
    schema.add_field("text", DataType.VARCHAR, max_length=2048, enable_analyzer=True)
    schema.add_field("dense", DataType.FLOAT_VECTOR, dim=DIM)
    schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
    schema.add_function(Function(name="bm25", function_type=FunctionType.BM25,
                                 input_field_names=["text"], output_field_names=["sparse"]))
    index = client.prepare_index_params()
    index.add_index("dense", index_type="HNSW", metric_type="COSINE")
    index.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
    client.create_collection(name, schema=schema, index_params=index)
    try:
        yield client, name
    finally:
        client.drop_collection(name)
        assert name not in client.list_collections()


TEXTS = ["kafka broker partitions", "milvus vector search", "redis dedup keys", "lora adapters"]


def test_upsert_is_idempotent_and_search_finds_rows(collection: tuple[MilvusClient, str]) -> None:
    client, name = collection
    rows = [{"pk": f"r{i}:0", "text": t, "dense": _vector(i)} for i, t in enumerate(TEXTS)]
    client.upsert(name, rows)
    client.upsert(name, rows[:2])  # redelivery: same primary keys, still one row each
    client.flush(name)
    assert len(client.query(name, filter="", output_fields=["pk"], limit=100)) == len(TEXTS)

    dense = client.search(name, data=[_vector(1)], anns_field="dense", limit=1,
                          output_fields=["pk"])
    assert dense[0][0]["pk"] == "r1:0"
    bm25 = client.search(name, data=["redis keys"], anns_field="sparse", limit=1,
                         output_fields=["pk"])
    assert bm25[0][0]["pk"] == "r2:0"
    hybrid = client.hybrid_search(
        name,
        [AnnSearchRequest([_vector(3)], "dense", {}, limit=3),
         AnnSearchRequest(["lora adapters"], "sparse", {}, limit=3)],
        ranker=RRFRanker(60), limit=2, output_fields=["pk"],
    )
    assert hybrid[0][0]["pk"] == "r3:0"


def test_delete_by_ids_and_by_filter(collection: tuple[MilvusClient, str]) -> None:
    client, name = collection
    client.upsert(name, [{"pk": f"r{i}:{c}", "text": TEXTS[i], "dense": _vector(i)}
                         for i in range(len(TEXTS)) for c in range(2)])
    client.delete(name, ids=["r0:0", "r0:1"])
    client.delete(name, filter='pk like "r1:%"')
    client.flush(name)
    left = {row["pk"] for row in client.query(name, filter="", output_fields=["pk"], limit=100)}
    assert left == {"r2:0", "r2:1", "r3:0", "r3:1"}


def test_ensure_loaded_reloads_a_released_collection(collection: tuple[MilvusClient, str]) -> None:
    client, name = collection
    client.upsert(name, [{"pk": "a", "text": "x", "dense": _vector(0)}])
    client.release_collection(name)
    ensure_loaded(client, name)
    hits = client.search(name, data=[_vector(0)], anns_field="dense", limit=1, output_fields=["pk"])
    assert hits[0][0]["pk"] == "a"
