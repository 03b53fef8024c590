"""Passage texts for grounding chat examples: read from the knowledge collection by chunk pk, the
ids serving recorded in each feedback event. A thin adapter over `KnowledgeBase.fetch`; the
client is made on first use and made again after a failure (Milvus restarted or not up yet)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from lorafeed.knowledge import KnowledgeBase, KnowledgeConfig
from lorafeed.knowledge_errors import KnowledgeError, translated
from lorafeed.stores import make_milvus

log = logging.getLogger(__name__)


class MilvusPassages:
    """`PassageLookup` over one knowledge collection. A collection that does not exist yet holds
    no passages; an unreachable server raises `KnowledgeError` (the update waits for it)."""

    def __init__(self, milvus_uri: str, collection: str) -> None:
        self.milvus_uri, self.collection = milvus_uri, collection
        self._kb: KnowledgeBase | None = None

    def __call__(self, pks: Sequence[str]) -> dict[str, str]:
        if not pks:
            return {}
        try:
            kb = self._knowledge_base()
            if not kb.exists():
                return {}
            return {pk: row.text for pk, row in kb.fetch(pks).items()}
        except KnowledgeError:
            self.close()  # a fresh client next time
            raise

    def close(self) -> None:
        if self._kb is not None:
            kb, self._kb = self._kb, None
            try:
                kb.client.close()
            except Exception as exc:  # closing a broken channel: nothing left to save
                log.debug("closing the Milvus client: %s", exc)

    def _knowledge_base(self) -> KnowledgeBase:
        if self._kb is None:
            with translated(f"connecting to Milvus at {self.milvus_uri}"):
                client = make_milvus(self.milvus_uri)
            self._kb = KnowledgeBase(client, KnowledgeConfig(collection=self.collection))
        return self._kb
