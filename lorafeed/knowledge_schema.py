"""The knowledge collection's shape: field size limits, the Milvus schema and indexes that
`KnowledgeBase.ensure_collection` creates, and the check that an existing collection fits."""

from __future__ import annotations

from typing import Any

from pymilvus import (  # type: ignore[import-untyped]
    DataType,
    Function,
    FunctionType,
    MilvusClient,
)

from lorafeed.knowledge_errors import KnowledgeSchemaError
from lorafeed.textsplit import Bm25Mode, bm25_analyzer_params

MAX_TEXT_BYTES = 65535  # VARCHAR max_length is counted in UTF-8 bytes
MAX_ID_BYTES = 1024  # record ids and sources are <= 256 characters (schemas.fields.Identifier)
_PK_BYTES = MAX_ID_BYTES + 16
OUTPUT_FIELDS = (
    "pk", "record_id", "chunk_index", "text", "source", "metadata",
    "start_char", "end_char", "occurred_at", "indexed_at",
)


def collection_schema(dim: int, bm25_mode: Bm25Mode) -> Any:
    """The collection's fields (``dense`` has ``dim`` dimensions) and its BM25 function, which
    fills ``sparse`` from ``bm25_text`` analyzed for ``bm25_mode``."""
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("pk", DataType.VARCHAR, is_primary=True, max_length=_PK_BYTES)
    schema.add_field("record_id", DataType.VARCHAR, max_length=MAX_ID_BYTES)
    schema.add_field("chunk_index", DataType.INT32)
    schema.add_field("text", DataType.VARCHAR, max_length=MAX_TEXT_BYTES)
    schema.add_field("bm25_text", DataType.VARCHAR, max_length=MAX_TEXT_BYTES,
                     enable_analyzer=True,
                     analyzer_params=bm25_analyzer_params(bm25_mode))
    schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
    schema.add_field("dense", DataType.FLOAT_VECTOR, dim=dim)
    schema.add_field("source", DataType.VARCHAR, max_length=MAX_ID_BYTES)
    schema.add_field("metadata", DataType.JSON)
    for name, dtype in (("start_char", DataType.INT32), ("end_char", DataType.INT32),
                        ("occurred_at", DataType.INT64), ("indexed_at", DataType.INT64)):
        schema.add_field(name, dtype)
    schema.add_function(Function(
        name="bm25", function_type=FunctionType.BM25,
        input_field_names=["bm25_text"], output_field_names=["sparse"]))
    return schema


def index_params(client: MilvusClient, hnsw_m: int, hnsw_ef_construction: int) -> Any:
    """An HNSW cosine index on ``dense`` and a BM25 inverted index on ``sparse``."""
    index = client.prepare_index_params()
    index.add_index("dense", index_type="HNSW", metric_type="COSINE", params={
        "M": hnsw_m, "efConstruction": hnsw_ef_construction})
    index.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
    return index


def check_schema(client: MilvusClient, name: str, dim: int) -> None:
    """Raise `KnowledgeSchemaError` unless collection ``name`` has every field this module
    defines and stores ``dim``-d vectors."""
    fields = {f["name"]: f for f in client.describe_collection(name)["fields"]}
    missing = sorted((set(OUTPUT_FIELDS) | {"dense", "sparse", "bm25_text"}) - set(fields))
    if missing:
        raise KnowledgeSchemaError(f"collection {name!r} lacks fields {missing}")
    stored = int(fields["dense"].get("params", {}).get("dim", -1))
    if stored != dim:
        raise KnowledgeSchemaError(f"collection {name!r} stores {stored}-d vectors, the "
                                   f"embedder makes {dim}-d ones")
