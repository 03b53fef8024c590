"""`BlendReranker`, the default `retrieval.Reranker`: re-scores a query's candidate hits by a blend
of exact cosine and the idf-weighted coverage of the query's terms (jieba words for Chinese).
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from lorafeed.embedder import Embedder
from lorafeed.textsplit import cjk_ratio, presegment

if TYPE_CHECKING:  # retrieval imports this module at runtime
    from lorafeed.retrieval import Hit

ENGLISH_ONLY_EMBEDDERS = ("sentence-transformers/all-MiniLM-L6-v2",)
_WORD = re.compile(r"\w+")
_STOPWORD_LIST = (
    "a an and are as at be by can do does for from how i in is it my of on or the to what "
    "when where which with you your 的 了 吗 呢 是 怎么 如何 什么 我 我的 和 与 及 在 要 吧"
)
_STOPWORDS = frozenset(_STOPWORD_LIST.split())


def query_terms(text: str) -> list[str]:
    """Lowercased words of ``text`` (Chinese cut by jieba, search mode), stopwords removed."""
    return list(_terms(text))


@functools.lru_cache(maxsize=8192)  # popular chunks come back query after query
def _terms(text: str) -> tuple[str, ...]:
    return tuple(w for w in _WORD.findall(presegment(text).lower()) if w not in _STOPWORDS)


@dataclass(frozen=True)
class BlendConfig:
    """Knobs of `BlendReranker`: ``score = d * cosine + lexical_weight * coverage`` where
    ``d = dense_weight * (1 - cjk_discount * share of CJK characters in the query)``.

    dense_weight: weight of the exact query-chunk cosine (default 1.0).
    lexical_weight: weight of the idf-weighted share of query terms in the chunk (default 1.0).
    cjk_discount: how much of the dense weight a fully Chinese query loses; None (default)
        means 1.0 for an English-only embedder (`ENGLISH_ONLY_EMBEDDERS`), else 0.0.
    """

    dense_weight: float = 1.0
    lexical_weight: float = 1.0
    cjk_discount: float | None = None

    def __post_init__(self) -> None:
        for name in ("dense_weight", "lexical_weight"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if self.cjk_discount is not None and not 0.0 <= self.cjk_discount <= 1.0:
            raise ValueError(f"cjk_discount must be in [0, 1] or None, got {self.cjk_discount!r}")


class BlendReranker:
    """Re-scores candidates by a blend of exact cosine (stored vectors, or the embedder) and a
    normalized BM25-like coverage of the query's terms (jieba words for Chinese)."""

    def __init__(self, embedder: Embedder, config: BlendConfig | None = None) -> None:
        self.embedder = embedder
        self.config = config or BlendConfig()
        auto = 1.0 if embedder.model_id in ENGLISH_ONLY_EMBEDDERS else 0.0
        self.cjk_discount = auto if self.config.cjk_discount is None else self.config.cjk_discount

    def rerank(
        self, query: str, hits: Sequence[Hit], *, query_vector: np.ndarray | None = None
    ) -> list[Hit]:
        if not hits:
            return []
        if query_vector is None:
            query_vector = self.embedder.embed([query])[0]
        vectors = _hit_vectors(hits, self.embedder)  # (n, dim)
        cosines = vectors @ np.asarray(query_vector, dtype=np.float32)  # (n,)
        coverage = _coverage(query_terms(query), [query_terms(h.text) for h in hits])
        dense = self.config.dense_weight * (1.0 - self.cjk_discount * cjk_ratio(query))
        lexical = self.config.lexical_weight
        scored = [replace(h, score=float(dense * c + lexical * v))
                  for h, c, v in zip(hits, cosines, coverage, strict=True)]
        return sorted(scored, key=lambda h: (-h.score, h.pk))


def _hit_vectors(hits: Sequence[Hit], embedder: Embedder) -> np.ndarray:
    """Stored vectors of the hits, embedding the text of those fetched without one."""
    missing = [i for i, h in enumerate(hits) if h.vector is None]
    fresh = embedder.embed([hits[i].text for i in missing]) if missing else None
    by_index = dict(zip(missing, fresh, strict=True)) if fresh is not None else {}
    return np.stack([by_index[i] if h.vector is None else h.vector for i, h in enumerate(hits)])


def _coverage(query: list[str], docs: list[list[str]], k1: float = 1.2) -> list[float]:
    """Per doc: idf-weighted, tf-saturated share of the distinct query terms it contains
    (idf over the candidates themselves), in [0, 1)."""
    terms = set(query)
    if not terms:
        return [0.0] * len(docs)
    n = len(docs)
    counts = [{t: d.count(t) for t in terms} for d in docs]
    idf = {t: math.log(1 + (n - df + 0.5) / (df + 0.5))
           for t in terms for df in [sum(1 for c in counts if c[t])]}
    total = sum(idf.values())
    return [sum(idf[t] * c[t] / (c[t] + k1) for t in terms) / total for c in counts]
