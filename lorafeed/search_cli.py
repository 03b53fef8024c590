"""`lorafeed search TEXT`: one query against a knowledge collection, printed as a ranked table (or
JSON). The CLI command calls `run_search` and exits with its return code (0 ok, 1 Milvus
failure, 2 bad arguments or missing collection).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from lorafeed.embedder import Embedder, SentenceEmbedder
from lorafeed.knowledge import KnowledgeBase, KnowledgeConfig
from lorafeed.knowledge_errors import KnowledgeError
from lorafeed.retrieval import MODES, Hit, RetrievalConfig, RetrievalError, Retriever
from lorafeed.stores import make_milvus

SNIPPET_CHARS = 120


def run_search(
    milvus_uri: str,
    collection: str,
    text: str,
    top_k: int,
    mode: str,
    as_json: bool,
    console: Console | None = None,
    *,
    model_dir: Path | None = None,
    embedder: Embedder | None = None,
) -> int:
    """Search ``collection`` for ``text`` and print the hits; returns the exit code.

    ``embedder`` (else one loaded from ``model_dir``, default the packaged MiniLM) must be the
    one the collection was indexed with.
    """
    out = console or Console()
    if mode not in MODES or top_k < 1 or not text.strip():
        out.print(f"[red]error:[/] need a non-empty text, top_k >= 1 and a mode in {MODES}; "
                  f"got {text!r}, {top_k!r}, {mode!r}", highlight=False)
        return 2
    try:
        kb = KnowledgeBase(make_milvus(milvus_uri), KnowledgeConfig(collection=collection))
        if not kb.exists():
            out.print(f"[red]error:[/] collection {collection!r} does not exist at {milvus_uri}; "
                      "index some records first", highlight=False)
            return 2
        hits = _search(kb, text, top_k, mode, embedder or SentenceEmbedder(model_dir))
    except (KnowledgeError, RetrievalError, ValueError) as exc:
        out.print(f"[red]error:[/] search failed: {exc}", highlight=False)
        return 1
    if as_json:
        # Console.out writes plain text: no wrapping at the console width, no markup.
        out.out(json.dumps([hit_json(rank, hit) for rank, hit in enumerate(hits, 1)],
                           ensure_ascii=False), highlight=False)
    else:
        out.print(hits_table(text, hits, mode))
    return 0


def _search(kb: KnowledgeBase, text: str, top_k: int, mode: str, model: Embedder) -> list[Hit]:
    """Check the collection against the embedder, then run one query with the defaults."""
    kb = KnowledgeBase(kb.client, KnowledgeConfig(collection=kb.name, dim=model.dim))
    kb.ensure_collection(create=False)
    config = RetrievalConfig(top_k=top_k, candidates=max(30, top_k), mode=mode)  # type: ignore[arg-type]
    return Retriever(kb, model, config).search(text)


def hit_json(rank: int, hit: Hit) -> dict[str, object]:
    """One hit as a JSON-ready dict (without its vector)."""
    data = asdict(hit)
    data.pop("vector", None)
    return {"rank": rank, **data, "metadata": dict(hit.metadata)}


def hits_table(query: str, hits: list[Hit], mode: str) -> Table:
    table = Table(title=f"{len(hits)} hits for {query!r} ({mode})", title_justify="left")
    for name, justify in (("#", "right"), ("score", "right"), ("record", "left"),
                          ("chunk", "right"), ("source", "left"), ("text", "left")):
        table.add_column(name, justify=justify, overflow="fold")  # type: ignore[arg-type]
    for rank, hit in enumerate(hits, start=1):
        # Record ids and texts are user data: Text() keeps rich from reading them as markup.
        table.add_row(str(rank), f"{hit.score:.4f}", Text(hit.record_id), str(hit.chunk_index),
                      Text(hit.source), Text(snippet(hit.text)))
    return table


def snippet(text: str, limit: int = SNIPPET_CHARS) -> str:
    """``text`` on one line, cut to ``limit`` characters with an ellipsis."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
