"""The learner's passage lookup on a real Milvus Lite server: texts by chunk pk (hostile ids
included), nothing for missing chunks or a collection not created yet, and a clear
`KnowledgeError` while the server is down, after which a fresh client is used."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import numpy as np
import pytest

from learner.passages import MilvusPassages
from lorafeed import procs
from lorafeed.knowledge import ChunkRow, KnowledgeBase, KnowledgeConfig, chunk_pk
from lorafeed.knowledge_errors import KnowledgeError
from lorafeed.stores import make_milvus
from tests.support.stack import RunningStack

pytestmark = pytest.mark.integration

DIM = 8
RECORDS = {
    "kb-ship": ["Parcels ship on Mondays.", "Express parcels ship the same day."],
    'a" or pk != "': ["a hostile record id is still just an id"],
    "退款": ["收到商品后 30 天内可申请退款。"],
}


@pytest.fixture()
def collection(stack: RunningStack) -> Iterator[str]:
    name = f"kn_{uuid.uuid4().hex[:10]}"
    kb = KnowledgeBase(make_milvus(stack.milvus_uri), KnowledgeConfig(collection=name, dim=DIM))
    kb.ensure_collection()
    unit = np.eye(DIM, dtype=np.float32)
    for record_id, texts in RECORDS.items():
        kb.upsert_record(record_id, [ChunkRow(record_id, i, text, unit[i], "faq")
                                     for i, text in enumerate(texts)])  # fmt: skip
    kb.flush()
    try:
        yield name
    finally:
        kb.drop()
        kb.client.close()


def test_texts_by_chunk_pk_and_nothing_for_what_is_gone(
    stack: RunningStack, collection: str
) -> None:
    lookup = MilvusPassages(stack.milvus_uri, collection)
    wanted = {chunk_pk(r, i): text for r, texts in RECORDS.items() for i, text in enumerate(texts)}
    try:
        assert lookup([*wanted, "kb-deleted#00000", "kb-ship#00009"]) == wanted
        assert lookup([]) == {}
    finally:
        lookup.close()
    not_yet = MilvusPassages(stack.milvus_uri, f"{collection}_not_created")
    try:
        assert not_yet(["kb-ship#00000"]) == {}
    finally:
        not_yet.close()


def test_an_unreachable_server_is_a_knowledge_error_and_a_fresh_client_follows() -> None:
    lookup = MilvusPassages(f"http://127.0.0.1:{procs.free_port()}", "knowledge")
    with pytest.raises(KnowledgeError, match="Milvus"):
        lookup(["kb-ship#00000"])
    assert lookup._kb is None  # the next update connects again
