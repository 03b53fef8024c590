"""SentenceEmbedder on the real packaged all-MiniLM-L6-v2: shapes, unit norm, order kept under
length sorting, adaptive batch size; and the hashing test double."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from lorafeed.embedder import Embedder, EmbedderError, HashingEmbedder, SentenceEmbedder

pytestmark = pytest.mark.slow

TEXTS = [
    "How do I get a refund?",
    "Standard shipping to Shanghai takes three to five business days; express shipping takes "
    "one to two. Orders over 99 yuan ship free of charge within mainland China.",
    "极光智能音箱怎么申请退款？",
    "",
    "Turn on two-step verification.",
    "reset " * 40,
]


@pytest.fixture(scope="module")
def embedder() -> Iterator[SentenceEmbedder]:
    yield SentenceEmbedder(batch_size=4)


def test_metadata_and_protocol(embedder: SentenceEmbedder) -> None:
    assert isinstance(embedder, Embedder)
    assert embedder.dim == 384
    assert embedder.max_tokens == 256
    assert embedder.model_id == "sentence-transformers/all-MiniLM-L6-v2"
    encoding = embedder.tokenizer("退款 refund", return_offsets_mapping=True)
    assert embedder.tokenizer.is_fast and encoding["offset_mapping"]


def test_vectors_are_float32_unit_norm_and_in_input_order(embedder: SentenceEmbedder) -> None:
    vectors = embedder.embed(TEXTS)
    assert vectors.shape == (len(TEXTS), 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    one_by_one = np.stack([embedder.embed([text])[0] for text in TEXTS])
    np.testing.assert_allclose(vectors, one_by_one, atol=1e-4)
    reversed_vectors = embedder.embed(TEXTS[::-1])
    np.testing.assert_allclose(reversed_vectors[::-1], vectors, atol=1e-4)


def test_meaning_is_captured_for_english(embedder: SentenceEmbedder) -> None:
    query, near, far = embedder.embed(
        ["how long does delivery take", "shipping times and delivery", "reset your password"]
    )
    assert float(query @ near) > float(query @ far) + 0.2


def test_empty_input_and_single_string(embedder: SentenceEmbedder) -> None:
    empty = embedder.embed([])
    assert empty.shape == (0, 384) and empty.dtype == np.float32
    with pytest.raises(EmbedderError, match="single str"):
        embedder.embed("not a list")


def test_batch_size_halves_when_calls_are_slow_and_stays_in_bounds() -> None:
    slow = SentenceEmbedder(batch_size=8, target_call_s=1e-6)
    slow.embed(TEXTS * 3)  # 18 texts: calls of 8, 4, 2, 1, ... each over the tiny target
    assert slow.batch_size == 1
    fast = SentenceEmbedder(batch_size=8, target_call_s=60.0)
    fast.batch_size = 2
    fast.embed(TEXTS * 2)
    assert 2 < fast.batch_size <= 8


@pytest.mark.parametrize("kwargs", [{"batch_size": 0}, {"target_call_s": 0}, {"threads": 0}])
def test_bad_knobs_are_named(kwargs: dict[str, float]) -> None:
    name = next(iter(kwargs))
    with pytest.raises(ValueError, match=name):
        SentenceEmbedder(**kwargs)  # type: ignore[arg-type]


def test_missing_model_dir_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(EmbedderError, match="not a sentence-transformers model directory"):
        SentenceEmbedder(tmp_path)


def test_hashing_embedder_is_deterministic_and_normalized() -> None:
    double = HashingEmbedder(32)
    first, again = double.embed(["退款 refund", ""]), double.embed(["退款 refund", ""])
    np.testing.assert_array_equal(first, again)
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-6)
    assert isinstance(double, Embedder)
    with pytest.raises(ValueError, match="dim"):
        HashingEmbedder(1)
