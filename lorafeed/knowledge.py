"""The Milvus knowledge collection: the streams sink writes records' chunks through it, serving and
the CLI read through it. Primary keys are deterministic (``record_id#00042``) and rows are always
upserted, so redelivery is harmless; pymilvus errors become `KnowledgeError` subclasses.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
from pymilvus import MilvusClient  # type: ignore[import-untyped]
from pymilvus.exceptions import MilvusException  # type: ignore[import-untyped]

from lorafeed.knowledge_errors import (
    KnowledgeInputError,
    KnowledgeSchemaError,
    is_not_loaded,
    is_unavailable,
    translated,
)
from lorafeed.knowledge_schema import (
    MAX_ID_BYTES,
    MAX_TEXT_BYTES,
    OUTPUT_FIELDS,
    check_schema,
    collection_schema,
    index_params,
)
from lorafeed.textsplit import Bm25Mode, bm25_analyzer_params, bm25_text

T = TypeVar("T")
_COLLECTION_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_RECONNECT_WAIT_S = 0.5
_QUERY_LIMIT = 16384  # Milvus caps offset + limit of one query at 16384
_FETCH_BATCH = 1024  # pks per fetch query, keeping expressions short


def quote_str(value: str) -> str:
    """``value`` as a double-quoted Milvus expression string literal, safe for any user data."""
    return '"' + "".join(_ESCAPES.get(char, char) for char in value) + '"'


def _in_list(field_name: str, values: Sequence[str]) -> str:
    return f"{field_name} in [" + ", ".join(quote_str(v) for v in values) + "]"


def chunk_pk(record_id: str, chunk_index: int) -> str:
    """The primary key of a record's chunk: unique, since the suffix after the last '#' is fixed."""
    return f"{record_id}#{chunk_index:05d}"


def record_id_of(pk: str) -> str:
    """The record id of a chunk primary key (`chunk_pk`'s inverse: "kb-7#00001" -> "kb-7")."""
    return pk.rsplit("#", 1)[0]


@dataclass(frozen=True)
class KnowledgeConfig:
    """Knobs of one knowledge collection.

    collection: Milvus collection name (default "knowledge"; letters, digits, underscore).
    dim: dense vector size; must match the embedder (default 384, all-MiniLM-L6-v2).
    bm25_mode: "analyzer" (Milvus's jieba tokenizer segments text) or "presegment" (jieba runs
        here, for engines without it); see `lorafeed.textsplit` (default "analyzer").
    hnsw_m / hnsw_ef_construction: HNSW graph degree and build beam (defaults 16 and 200).
    search_ef: HNSW search beam; raised to the result count when smaller (default 64).
    """

    collection: str = "knowledge"
    dim: int = 384
    bm25_mode: Bm25Mode = "analyzer"
    hnsw_m: int = 16
    hnsw_ef_construction: int = 200
    search_ef: int = 64

    def __post_init__(self) -> None:
        if not _COLLECTION_NAME.match(self.collection):
            raise ValueError(
                f"collection must match {_COLLECTION_NAME.pattern}, got {self.collection!r}"
            )
        if not 1 <= self.dim <= 32768:
            raise ValueError(f"dim must be in [1, 32768], got {self.dim!r}")
        bm25_analyzer_params(self.bm25_mode)  # raises ValueError naming a bad mode
        for name in ("hnsw_m", "hnsw_ef_construction", "search_ef"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")


@dataclass(frozen=True)
class ChunkRow:
    """One chunk of a record as stored: times are epoch milliseconds; ``indexed_at`` None means
    "now" at upsert. ``dense`` is the chunk's unit-norm embedding."""

    record_id: str
    chunk_index: int
    text: str
    dense: Sequence[float] | np.ndarray = field(repr=False, compare=False)
    source: str = ""
    metadata: Mapping[str, Any] = field(default_factory=dict)
    start_char: int = 0
    end_char: int = 0
    occurred_at: int = 0
    indexed_at: int | None = None

    @property
    def pk(self) -> str:
        return chunk_pk(self.record_id, self.chunk_index)


class KnowledgeBase:
    """One knowledge collection on a Milvus (or Milvus Lite) server.

    Writers call `ensure_collection` once, then `upsert_record` / `delete_record` per record and
    `flush` before committing offsets. Every read loads the collection again and retries once
    if the server has it released (Milvus Lite after a restart).
    """

    def __init__(
        self,
        client: MilvusClient,
        config: KnowledgeConfig,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.config = config
        self._clock = clock

    @property
    def name(self) -> str:
        return self.config.collection

    def exists(self) -> bool:
        with translated(f"looking up collection {self.name!r}"):
            return bool(self.client.has_collection(self.name))

    def ensure_collection(self, *, create: bool = True) -> None:
        """Create the collection if missing (idempotent; with ``create=False`` a missing one is a
        `KnowledgeSchemaError`), check that its schema fits this config, and load it."""
        with translated(f"preparing collection {self.name!r}"):
            if not self.client.has_collection(self.name):
                if not create:
                    raise KnowledgeSchemaError(f"collection {self.name!r} does not exist")
                self._create()
            check_schema(self.client, self.name, self.config.dim)
            self._ensure_loaded()

    def _create(self, race_wait_s: float = 30.0) -> None:
        """Create the collection. Several writers starting on a fresh collection race here: a
        loser's create fails ("already exists", or Milvus Lite's "File exists" while the winner
        is still at it); once the collection shows up, the loser uses it (the schema check
        follows), instead of failing its start-up."""
        try:
            self.client.create_collection(
                self.name,
                schema=collection_schema(self.config.dim, self.config.bm25_mode),
                index_params=index_params(
                    self.client, self.config.hnsw_m, self.config.hnsw_ef_construction
                ),
            )
        except MilvusException:
            deadline = time.monotonic() + race_wait_s
            while not self.client.has_collection(self.name):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def drop(self) -> None:
        """Drop the collection and everything in it (tests, scratch benchmarks)."""
        with translated(f"dropping collection {self.name!r}"):
            self.client.drop_collection(self.name)

    def upsert_record(self, record_id: str, rows: Sequence[ChunkRow]) -> list[str]:
        """Make ``rows`` (chunk indexes 0..n-1) the record's exact chunk set; return the pks of
        stale chunks (index >= n) that were deleted. Safe to repeat after any crash."""
        return self.upsert_records({record_id: rows})[record_id]

    def upsert_records(self, records: Mapping[str, Sequence[ChunkRow]]) -> dict[str, list[str]]:
        """:meth:`upsert_record` for many records in three calls (upsert, find stale, delete)
        instead of two per record: a filtered query scans the collection on Milvus Lite."""
        now = int(self._clock() * 1000)
        data = []
        for record_id, rows in records.items():
            _check_id(record_id, "record_id")
            _check_rows(record_id, rows, self.config.dim)
            data += [_row_dict(row, now, self.config.bm25_mode) for row in rows]
        if data:
            with translated(f"upserting {len(data)} chunks of {len(records)} records"):
                self.client.upsert(self.name, data)
        ids = ", ".join(quote_str(record_id) for record_id in records)
        found = self._read(
            "finding stale chunks",
            lambda: self.client.query(
                self.name,
                filter=f"record_id in [{ids}]",
                output_fields=["pk", "record_id", "chunk_index"],
                limit=_QUERY_LIMIT,
            ),
        )
        stale: dict[str, list[str]] = {record_id: [] for record_id in records}
        for row in found:
            if int(row["chunk_index"]) >= len(records[str(row["record_id"])]):
                stale[str(row["record_id"])].append(str(row["pk"]))
        doomed = sorted(pk for pks in stale.values() for pk in pks)
        if doomed:
            with translated(f"deleting {len(doomed)} stale chunks from {self.name!r}"):
                self.client.delete(self.name, filter=_in_list("pk", doomed))
        return {record_id: sorted(pks) for record_id, pks in stale.items()}

    def delete_record(self, record_id: str) -> list[str]:
        """Delete every chunk of the record; return their pks (empty if it had none)."""
        _check_id(record_id, "record_id")
        return self._delete_where(f"record_id == {quote_str(record_id)}")

    def chunk_ids(self, record_id: str) -> list[str]:
        """Primary keys of the record's chunks in chunk order."""
        _check_id(record_id, "record_id")
        return [chunk.pk for chunk in self.all_chunks(record_id)]

    def count(self) -> int:
        """Number of chunks in the collection."""
        rows = self._read(
            "counting", lambda: self.client.query(self.name, filter="", output_fields=["count(*)"])
        )
        return int(rows[0]["count(*)"])

    def all_chunks(self, record_id: str | None = None) -> list[ChunkRow]:
        """Stored chunks (of one record, or all), ordered by record id and chunk index; for
        tests and invariant checks (at most 16384 rows)."""
        expr = 'pk != ""' if record_id is None else f"record_id == {quote_str(record_id)}"
        rows = self._read(
            "listing chunks",
            lambda: self.client.query(
                self.name, filter=expr, output_fields=[*OUTPUT_FIELDS, "dense"], limit=_QUERY_LIMIT
            ),
        )
        if len(rows) >= _QUERY_LIMIT:
            raise KnowledgeInputError(
                f"all_chunks lists at most {_QUERY_LIMIT} rows; "
                f"{self.name!r} has more, pass a record_id"
            )
        chunks = [_chunk_row(row) for row in rows]
        return sorted(chunks, key=lambda c: (c.record_id, c.chunk_index))

    def flush(self) -> None:
        """Make every write so far durable and fast to search (call before committing)."""
        with translated(f"flushing {self.name!r}"):
            self.client.flush(self.name)

    def search_dense(
        self, vectors: np.ndarray, limit: int, *, filter: str = ""
    ) -> list[list[tuple[str, float]]]:
        """(pk, cosine) of the nearest chunks for each row of ``vectors`` (n, dim), best first,
        in one Milvus call. ``filter`` is a Milvus expression built from quoted values."""
        params = {"metric_type": "COSINE", "params": {"ef": max(self.config.search_ef, limit)}}
        data = [row.tolist() for row in np.asarray(vectors, dtype=np.float32)]
        return [
            [(str(hit.id), float(hit["distance"])) for hit in per_query]
            for per_query in self._search(data, "dense", limit, filter, params)
        ]

    def search_bm25(
        self, texts: Sequence[str], limit: int, *, filter: str = ""
    ) -> list[list[tuple[str, float]]]:
        """(pk, BM25 score) of the best chunks for each query text, best first, in one call."""
        data = [bm25_text(text, self.config.bm25_mode) for text in texts]
        # Milvus reports BM25 as a positive score, Milvus Lite as its negation (a distance).
        return [
            [(str(hit.id), abs(float(hit["distance"]))) for hit in per_query]
            for per_query in self._search(data, "sparse", limit, filter, {})
        ]

    def fetch(self, pks: Sequence[str], *, with_vectors: bool = False) -> dict[str, ChunkRow]:
        """The stored chunks with these pks (missing ones are left out); ``dense`` is empty
        unless ``with_vectors``."""
        fields = [*OUTPUT_FIELDS, "dense"] if with_vectors else list(OUTPUT_FIELDS)
        wanted = sorted(set(pks))
        found: dict[str, ChunkRow] = {}
        for start in range(0, len(wanted), _FETCH_BATCH):
            expr = _in_list("pk", wanted[start : start + _FETCH_BATCH])
            rows = self._read(
                "fetching chunks",
                lambda e=expr: self.client.query(  # type: ignore[misc]
                    self.name, filter=e, output_fields=fields, limit=_QUERY_LIMIT
                ),
            )
            found.update((str(row["pk"]), _chunk_row(row)) for row in rows)
        return found

    def _search(
        self, data: list[Any], field_name: str, limit: int, expr: str, params: dict[str, Any]
    ) -> list[Any]:
        if not data:
            return []
        return self._read(
            f"searching {field_name}",
            lambda: list(
                self.client.search(
                    self.name,
                    data=data,
                    anns_field=field_name,
                    limit=limit,
                    filter=expr,
                    output_fields=["pk"],
                    search_params=params,
                )
            ),
        )

    def _delete_where(self, expr: str) -> list[str]:
        rows = self._read(
            "finding chunks to delete",
            lambda: self.client.query(
                self.name, filter=expr, output_fields=["pk"], limit=_QUERY_LIMIT
            ),
        )
        pks = sorted(str(row["pk"]) for row in rows)
        if pks:
            with translated(f"deleting {len(pks)} chunks from {self.name!r}"):
                # pymilvus builds ``pk in [...]`` from ids without escaping: quote them here.
                self.client.delete(self.name, filter=_in_list("pk", pks))
        return pks

    def _read(self, what: str, call: Callable[[], T]) -> T:
        """Run a read, recovering once from each transient state: a dropped connection (a
        GOAWAY, a restarted server: wait for the channel to reconnect) and a released
        collection (Milvus Lite after a restart: load it). A lasting outage still raises
        `KnowledgeUnavailable`."""
        recovered: set[str] = set()
        with translated(f"{what} in {self.name!r}"):
            while True:
                try:
                    return call()
                except Exception as exc:
                    state = (
                        "released"
                        if isinstance(exc, MilvusException) and is_not_loaded(exc)
                        else "unavailable"
                        if is_unavailable(exc)
                        else None
                    )
                    if state is None or state in recovered:
                        raise
                    recovered.add(state)
                    if state == "released":
                        self._ensure_loaded()
                    else:
                        time.sleep(_RECONNECT_WAIT_S)

    def _ensure_loaded(self) -> None:
        state = self.client.get_load_state(self.name)
        if "Loaded" not in str(state.get("state", "")):
            self.client.load_collection(self.name)


def _check_id(value: str, what: str) -> None:
    if not isinstance(value, str) or not value:
        raise KnowledgeInputError(f"{what} must be a non-empty str, got {value!r}")
    if len(value.encode("utf-8")) > MAX_ID_BYTES:
        raise KnowledgeInputError(f"{what} {value[:40]!r}... is over {MAX_ID_BYTES} UTF-8 bytes")


def _check_rows(record_id: str, rows: Sequence[ChunkRow], dim: int) -> None:
    for position, row in enumerate(rows):
        where = f"record {record_id!r} chunk {row.chunk_index}"
        if row.record_id != record_id:
            raise KnowledgeInputError(f"{where} names record {row.record_id!r}")
        if row.chunk_index != position:
            raise KnowledgeInputError(
                f"record {record_id!r}: chunk at position {position} has "
                f"index {row.chunk_index}; indexes must be 0..n-1 in order"
            )
        size = len(row.text.encode("utf-8"))
        if size > MAX_TEXT_BYTES:
            raise KnowledgeInputError(f"{where} is {size} UTF-8 bytes, over {MAX_TEXT_BYTES}")
        if len(row.dense) != dim:
            raise KnowledgeInputError(f"{where} has a {len(row.dense)}-d vector, expected {dim}")
        if len(row.source.encode("utf-8")) > MAX_ID_BYTES:
            raise KnowledgeInputError(f"{where}: source is over {MAX_ID_BYTES} UTF-8 bytes")


def _row_dict(row: ChunkRow, now_ms: int, mode: Bm25Mode) -> dict[str, Any]:
    return {
        "pk": row.pk,
        "record_id": row.record_id,
        "chunk_index": row.chunk_index,
        "text": row.text,
        "bm25_text": bm25_text(row.text, mode),
        "dense": np.asarray(row.dense, dtype=np.float32).tolist(),
        "source": row.source,
        "metadata": dict(row.metadata),
        "start_char": row.start_char,
        "end_char": row.end_char,
        "occurred_at": row.occurred_at,
        "indexed_at": now_ms if row.indexed_at is None else row.indexed_at,
    }


def _chunk_row(row: Mapping[str, Any]) -> ChunkRow:
    return ChunkRow(
        record_id=row["record_id"],
        chunk_index=int(row["chunk_index"]),
        text=row["text"],
        dense=np.asarray(row.get("dense", ()), dtype=np.float32),
        source=row["source"],
        metadata=row.get("metadata") or {},
        start_char=int(row["start_char"]),
        end_char=int(row["end_char"]),
        occurred_at=int(row["occurred_at"]),
        indexed_at=int(row["indexed_at"]),
    )
