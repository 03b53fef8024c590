"""Exact hashes and MinHash LSH band keys for near-duplicate detection."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from streams.dedup import (
    NearDupConfig,
    band_keys,
    content_sha256,
    estimated_jaccard,
    minhash,
    normalized_for_hash,
    shingles,
)

CONFIG = NearDupConfig()
_VOCAB = (
    "order", "refund", "shipping", "invoice", "account", "password", "router", "speaker",
    "tracker", "backup", "bulb", "vacuum", "customer", "support", "payment", "bank", "card",
    "address", "warehouse", "parcel", "carrier", "delivery", "return", "warranty",
    "firmware", "update", "reset", "light", "button", "app", "device", "network", "signal",
    "battery", "charge", "business", "plan", "discount", "coupon", "tax", "company", "name",
    "number", "email", "phone", "chat", "team", "hours", "day", "week", "month", "first",
    "second", "third", "quick", "slow", "new", "old", "open", "close", "check", "change",
    "cancel", "confirm",
)
_HANZI = (
    "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会"
    "可主发年动同工也能下过子说产种面而方后多定行学法所民得经十三之进着等部"
    "度家电力里如水化高自二理起小物现实加量都两体制机当使点从业"
)

ROOT = Path(__file__).resolve().parents[3]


def _english(seed: int, words: int = 200) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(_VOCAB) for _ in range(words)) + "."


def _chinese(seed: int, chars: int = 300) -> str:
    rng = random.Random(seed)
    return "".join(rng.choice(_HANZI) for _ in range(chars)) + "。"


def _replace_word(text: str, index: int, word: str) -> str:
    words = text.split(" ")
    assert words[index] != word
    words[index] = word
    return " ".join(words)


def _replace_chars(text: str, positions: list[int]) -> str:
    chars = list(text)
    for pos in positions:
        chars[pos] = "龘" if chars[pos] != "龘" else "靐"
    return "".join(chars)


def test_normalization_ignores_case_width_punctuation_and_spacing() -> None:
    a = "Refund policy:  Returns within 7 days!\nSee ＦＡＱ."
    b = "refund policy returns within 7 days see faq"
    c = "REFUND\u200b POLICY — returns, within 7 days… see FAQ"
    assert normalized_for_hash(a) == b
    assert normalized_for_hash(c) == b
    assert normalized_for_hash("退款政策：七天内，可退货。") == "退款政策 七天内 可退货"


def test_content_sha256_matches_trivial_reformatting_only() -> None:
    original = "Refund policy: returns within 7 days."
    assert content_sha256(original) == content_sha256("  REFUND policy returns\r\nwithin 7 days")
    assert content_sha256(original) != content_sha256("Refund policy: returns within 8 days.")
    digest = content_sha256(original)
    assert len(digest) == 64 and int(digest, 16) >= 0


@pytest.mark.parametrize(
    ("kwargs", "bad"),
    [
        ({"threshold": 1.5}, "1.5"),
        ({"threshold": 0.0}, "0.0"),
        ({"shingle_size": 0}, "0"),
        ({"num_perm": 8}, "8"),
        ({"seed": -1}, "-1"),
        ({"false_negative_weight": 1.0}, "1.0"),
    ],
)
def test_config_rejects_bad_values_naming_them(kwargs: dict[str, float], bad: str) -> None:
    with pytest.raises(ValueError, match=bad):
        NearDupConfig(**kwargs)  # type: ignore[arg-type]


def test_bands_follow_datasketch_optimum() -> None:
    b, r = CONFIG.bands
    assert (b, r) == (14, 9)
    # The default favours recall: a pair at the threshold shares a band almost always.
    assert 1 - (1 - CONFIG.threshold**r) ** b > 0.97
    assert NearDupConfig(false_negative_weight=0.5).bands == (8, 16)
    assert b * r <= CONFIG.num_perm
    precise_b, precise_r = NearDupConfig(false_negative_weight=0.8).bands
    assert precise_b * precise_r <= 128 and precise_r > r


def test_shingles_are_word_grams_for_english_and_char_grams_for_chinese() -> None:
    config = NearDupConfig(shingle_size=3)
    assert shingles("One two, THREE four", config) == {"one two three", "two three four"}
    assert shingles("我们的退款", config) == {"我 们 的", "们 的 退", "的 退 款"}
    assert shingles("API返回E1001", config) == {"api 返 回", "返 回 e1001"}
    assert shingles("just two", config) == {"just two"}
    assert shingles(" ,. ", config) == set()


def test_english_one_word_edit_is_a_near_duplicate() -> None:
    text = _english(1)
    edited = _replace_word(text, 100, "zebra")
    sig, sig_copy, sig_edit = minhash(text, CONFIG), minhash(text, CONFIG), minhash(edited, CONFIG)
    assert band_keys(sig, CONFIG) == band_keys(sig_copy, CONFIG)
    assert estimated_jaccard(sig, sig_copy) == 1.0
    assert set(band_keys(sig, CONFIG)) & set(band_keys(sig_edit, CONFIG))
    assert estimated_jaccard(sig, sig_edit) >= 0.85


def test_unrelated_english_texts_share_no_band() -> None:
    sig_a, sig_b = minhash(_english(1), CONFIG), minhash(_english(2), CONFIG)
    assert not set(band_keys(sig_a, CONFIG)) & set(band_keys(sig_b, CONFIG))
    assert estimated_jaccard(sig_a, sig_b) < 0.2


def test_chinese_two_character_edit_is_a_near_duplicate() -> None:
    text = _chinese(3)
    edited = _replace_chars(text, [60, 220])
    sig, sig_edit = minhash(text, CONFIG), minhash(edited, CONFIG)
    assert set(band_keys(sig, CONFIG)) & set(band_keys(sig_edit, CONFIG))
    assert estimated_jaccard(sig, sig_edit) >= 0.85
    unrelated = minhash(_chinese(4), CONFIG)
    assert not set(band_keys(sig, CONFIG)) & set(band_keys(unrelated, CONFIG))
    assert estimated_jaccard(sig, unrelated) < 0.2


def test_reformatted_copy_has_identical_keys() -> None:
    text = _english(5)
    shouted = text.upper().replace(" ", "  \n", 20).replace("order", "order,")
    assert band_keys(minhash(text, CONFIG), CONFIG) == band_keys(minhash(shouted, CONFIG), CONFIG)


def test_keys_have_the_documented_shape_and_accept_raw_arrays() -> None:
    sig = minhash(_english(6), CONFIG)
    keys = band_keys(sig, CONFIG)
    assert len(keys) == CONFIG.bands[0]
    for band, key in enumerate(keys):
        prefix, number, digest = key.split(":")
        assert (prefix, int(number), len(digest)) == ("lsh", band, 32)
    assert band_keys(np.asarray(sig.hashvalues), CONFIG) == keys
    assert band_keys(list(sig.hashvalues), CONFIG) == keys


def test_keys_depend_on_config() -> None:
    text = _english(7)
    other = NearDupConfig(seed=2)
    assert not set(band_keys(minhash(text, CONFIG), CONFIG)) & set(
        band_keys(minhash(text, other), other)
    )


def test_empty_text_has_no_keys() -> None:
    assert band_keys(minhash("  ... ", CONFIG), CONFIG) == []


def test_length_mismatches_are_reported() -> None:
    sig = minhash(_english(8), CONFIG)
    with pytest.raises(ValueError, match="64"):
        band_keys(sig.hashvalues[:64], CONFIG)
    with pytest.raises(ValueError, match="64"):
        estimated_jaccard(sig, sig.hashvalues[:64])


def test_keys_do_not_depend_on_hash_randomization() -> None:
    texts = [_english(9), _chinese(9)]
    code = (
        "import json, sys\n"
        "from streams.dedup import NearDupConfig, band_keys, content_sha256, minhash\n"
        "texts = json.loads(sys.stdin.read())\n"
        "c = NearDupConfig()\n"
        "print(json.dumps([[band_keys(minhash(t, c), c), content_sha256(t)] for t in texts]))\n"
    )
    expected = [[band_keys(minhash(t, CONFIG), CONFIG), content_sha256(t)] for t in texts]
    for hash_seed in ("1", "4242"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        done = subprocess.run([sys.executable, "-c", code], input=json.dumps(texts), env=env,
                              capture_output=True, text=True, timeout=120, check=True, cwd=ROOT)
        assert json.loads(done.stdout) == expected
