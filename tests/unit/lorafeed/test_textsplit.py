"""CJK detection and the text that feeds Milvus's BM25 field (jieba pre-segmentation)."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from lorafeed import textsplit
from lorafeed.textsplit import bm25_analyzer_params, bm25_text, cjk_ratio, is_cjk, presegment

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("char", ["退", "款", "㐀", "豈", "あ", "カ", "𠀀"])
def test_is_cjk_accepts_ideographs_and_kana(char: str) -> None:
    assert is_cjk(char)


@pytest.mark.parametrize("char", ["a", "Z", "1", "。", "，", " ", "é", "한", "—"])
def test_is_cjk_rejects_latin_digits_punctuation_and_hangul(char: str) -> None:
    assert not is_cjk(char)


def test_is_cjk_wants_exactly_one_character() -> None:
    with pytest.raises(ValueError, match="'ab'"):
        is_cjk("ab")


def test_cjk_ratio_counts_non_space_characters() -> None:
    assert cjk_ratio("") == 0.0
    assert cjk_ratio("   \n") == 0.0
    assert cjk_ratio("退款 ab") == pytest.approx(0.5)
    assert cjk_ratio("退款。") == pytest.approx(2 / 3)
    assert cjk_ratio("refund") == 0.0


def test_analyzer_mode_sends_raw_text_to_milvus_jieba() -> None:
    text = "我们的退款政策规定，订单签收后七天内可以申请无理由退货。Refund E1001"
    assert bm25_text(text) == text
    assert bm25_analyzer_params() == {"tokenizer": "jieba"}
    assert bm25_analyzer_params("presegment") == {"tokenizer": "standard"}


def test_presegment_splits_unspaced_chinese_into_words() -> None:
    text = "我们的退款政策规定，订单签收后七天内可以申请无理由退货。"
    words = bm25_text(text, "presegment").split()
    assert "退款" in words
    assert "政策" in words
    assert "退货" in words


def test_presegment_leaves_english_alone_and_spaces_mixed_runs() -> None:
    assert presegment("Refund API error E1001, see docs.") == "Refund API error E1001, see docs."
    words = presegment("API返回错误码E1001表示签名无效").split()
    assert words[0] == "API"
    assert "E1001" in words
    assert "签名" in words
    assert "错误码" in words or "错误" in words


def test_unknown_mode_is_named_in_the_error() -> None:
    with pytest.raises(ValueError, match="'chinese'"):
        bm25_text("x", "chinese")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'chinese'"):
        bm25_analyzer_params("chinese")  # type: ignore[arg-type]


def test_segmenter_loads_once_under_concurrency() -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        loaded = list(pool.map(lambda _: textsplit._load_segmenter(), range(16)))
    assert all(s is loaded[0] for s in loaded)


def test_jieba_dictionary_load_is_silent() -> None:
    code = "from lorafeed.textsplit import presegment; print(presegment('我们的退款政策'))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=True, cwd=ROOT)
    assert "退款" in done.stdout.split()
    assert "prefix dict" not in done.stderr
    assert "Loading model" not in done.stderr
