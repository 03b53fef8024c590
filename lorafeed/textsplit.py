"""Chinese-aware text for BM25: what goes into Milvus's BM25 field, and CJK helpers.

Probe (Milvus Lite 3.2.2, pymilvus 3.0.2, jieba 0.42.1): a VARCHAR field with
``enable_analyzer=True, analyzer_params={"tokenizer": "jieba"}`` feeding a BM25 Function
segments Chinese: the query "退款" finds "我们的退款政策规定，订单签收后七天内可以申请无理由退货。"
and English words still match. With no ``analyzer_params`` or ``{"tokenizer": "standard"}``
the same Chinese queries return nothing (``\\w+`` keeps a whole unspaced run as one term).
On 400 generated records (``generate_corpus(400, seed=5)``), Chinese labelled queries hit a
relevant record in the BM25 top 5 for 38/43 queries with jieba, 0/43 with the default.
``{"type": "chinese"}`` is rejected at create_collection ("unknown tokenizer type: 'chinese'").
Lite runs jieba inside the engine process, so ``jieba`` must be installed where Milvus Lite
runs (create_collection fails loudly otherwise); it loads its dictionary (~1-2 s) on first use.
Lite silently ignores string filters such as ``"cnalphanumonly"`` and jieba's ``hmm`` option;
jieba makes BM25 inserts ~7x slower there (~5 ms per 1 KB document).
Milvus >= 2.5 accepts the same ``{"tokenizer": "jieba"}`` (default mode "search"), so the
default mode ``"analyzer"`` sends raw text and lets Milvus segment it. Mode ``"presegment"`` is
the fallback for engines without jieba: CJK runs are cut by jieba here and joined by spaces;
other text is left alone (real Milvus's standard tokenizer would still split the CJK words into
single ideographs, so prefer ``"analyzer"`` wherever it works).
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any, Literal

Bm25Mode = Literal["analyzer", "presegment"]

# Scripts written without spaces between words: Han ideographs (basic, extension A,
# compatibility, supplementary planes) and Japanese kana. Hangul is written with spaces.
_CJK_RANGES: tuple[tuple[int, int], ...] = (
    (0x3040, 0x30FF),  # Hiragana, Katakana
    (0x3400, 0x4DBF),  # CJK Unified Ideographs Extension A
    (0x4E00, 0x9FFF),  # CJK Unified Ideographs
    (0xF900, 0xFAFF),  # CJK Compatibility Ideographs
    (0x20000, 0x323AF),  # Extensions B..H and compatibility supplement
)
# Body of a regex character class matching exactly the characters ``is_cjk`` accepts.
CJK_CHAR_CLASS = "".join(f"{chr(lo)}-{chr(hi)}" for lo, hi in _CJK_RANGES)
_CJK_RUN = re.compile(f"[{CJK_CHAR_CLASS}]+")

_lock = threading.Lock()
_segmenter: Any = None  # jieba.Tokenizer, loaded once on first use


def is_cjk(char: str) -> bool:
    """True if ``char`` (one character) belongs to a script written without word spaces."""
    if len(char) != 1:
        raise ValueError(f"is_cjk expects one character, got {char!r}")
    code = ord(char)
    return any(lo <= code <= hi for lo, hi in _CJK_RANGES)


def cjk_ratio(text: str) -> float:
    """Share of the non-whitespace characters of ``text`` that are CJK (0.0 for blank text)."""
    chars = [c for c in text if not c.isspace()]
    if not chars:
        return 0.0
    return sum(1 for c in chars if is_cjk(c)) / len(chars)


def bm25_analyzer_params(mode: Bm25Mode = "analyzer") -> dict[str, str]:
    """``analyzer_params`` for the VARCHAR field that feeds the BM25 Function in ``mode``."""
    if mode == "analyzer":
        return {"tokenizer": "jieba"}
    if mode == "presegment":
        return {"tokenizer": "standard"}
    raise ValueError(f"unknown BM25 mode {mode!r}: expected 'analyzer' or 'presegment'")


def bm25_text(text: str, mode: Bm25Mode = "analyzer") -> str:
    """What to store in (and send as a query to) the BM25 field for ``text`` in ``mode``.

    Apply it to documents at insert time and to queries at search time alike.
    """
    if mode == "analyzer":
        return text
    if mode == "presegment":
        return presegment(text)
    raise ValueError(f"unknown BM25 mode {mode!r}: expected 'analyzer' or 'presegment'")


def presegment(text: str) -> str:
    """``text`` with each CJK run cut into words by jieba and set off by single spaces.

    Non-CJK text is kept as it is; jieba's search mode also emits the shorter words inside
    long ones ("共和国" -> "共和 共和国"), as Milvus's jieba tokenizer does by default.
    """
    if _CJK_RUN.search(text) is None:
        return text
    segmenter = _load_segmenter()
    out: list[str] = []
    last = 0
    for match in _CJK_RUN.finditer(text):
        out.append(text[last : match.start()])
        words = [w for w in segmenter.cut_for_search(match.group(), HMM=True) if w.strip()]
        out.append(" " + " ".join(words) + " ")
        last = match.end()
    out.append(text[last:])
    return re.sub(r" {2,}", " ", "".join(out)).strip(" ")


def warm_up() -> None:
    """Load jieba's dictionary now (about 1 s) instead of on the first Chinese text."""
    _load_segmenter()


def _load_segmenter() -> Any:
    """Import jieba and load its dictionary exactly once, thread-safely, with its logs muted."""
    global _segmenter
    if _segmenter is None:
        with _lock:
            if _segmenter is None:
                import jieba  # type: ignore[import-untyped]

                jieba.setLogLevel(logging.WARNING)
                segmenter = jieba.Tokenizer()
                segmenter.initialize()
                _segmenter = segmenter
    return _segmenter
