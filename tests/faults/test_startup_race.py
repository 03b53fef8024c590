"""Several streams workers starting at once on a fresh collection (the fault suite's world and
`lorafeed up` with replicas do exactly that): each one's `ensure_collection` must succeed, the
losers of the creation race using the winner's collection, instead of exiting "cannot start"
with Milvus Lite's "already exists" / "File exists"."""

from __future__ import annotations

import threading
import uuid

import pytest

from lorafeed.knowledge import KnowledgeBase, KnowledgeConfig
from lorafeed.stores import make_milvus
from tests.support.stack import RunningStack

pytestmark = pytest.mark.integration
WORKERS = 4


def _race(uri: str, name: str) -> list[str]:
    """WORKERS threads, each with its own client, call ensure_collection at the same moment;
    what each would have died of."""
    barrier = threading.Barrier(WORKERS)
    errors: list[str] = []

    def start() -> None:
        client = make_milvus(uri)
        try:
            kb = KnowledgeBase(client, KnowledgeConfig(collection=name, dim=8))
            barrier.wait(30)
            kb.ensure_collection()
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            client.close()

    threads = [threading.Thread(target=start) for _ in range(WORKERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return errors


def test_workers_racing_to_create_one_collection_all_start(stack: RunningStack) -> None:
    for _round in range(3):  # the race was lost in most rounds before the fix
        name = f"race_{uuid.uuid4().hex[:10]}"
        assert _race(stack.milvus_uri, name) == []
        client = make_milvus(stack.milvus_uri)
        try:
            kb = KnowledgeBase(client, KnowledgeConfig(collection=name, dim=8))
            assert kb.exists() and kb.count() == 0
            kb.drop()
        finally:
            client.close()
