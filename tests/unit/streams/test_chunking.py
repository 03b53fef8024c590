"""Token-aware chunking with the real all-MiniLM-L6-v2 tokenizer."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from lorafeed.models import minilm_dir
from streams.chunking import Chunk, ChunkConfig, chunk_text

Tok = PreTrainedTokenizerBase
CONFIG = ChunkConfig()
_WORDS = ("refund", "order", "shipping", "invoice", "router", "speaker", "password", "parcel")


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerBase:
    loaded: PreTrainedTokenizerBase = AutoTokenizer.from_pretrained(str(minilm_dir()))
    return loaded


def _english(paragraphs: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    out = []
    for p in range(paragraphs):
        sentences = [
            " ".join(rng.choice(_WORDS) for _ in range(rng.randint(6, 18))).capitalize() + "."
            for _ in range(rng.randint(3, 7))
        ]
        out.append(f"Section {p}: " + " ".join(sentences))
    return "\n\n".join(out)


def _chinese(sentences: int) -> str:
    sentence = "第{}条：退款会在七个工作日内原路退回，请注意查收短信通知。"
    return "".join(sentence.format(i) for i in range(sentences))


def _check(
    text: str, chunks: list[Chunk], tokenizer: Tok, config: ChunkConfig
) -> None:
    """The contract: exact slices, full coverage, token budget, ordering."""
    specials = tokenizer.num_special_tokens_to_add(pair=False)
    covered = [False] * len(text)
    for index, chunk in enumerate(chunks):
        assert chunk.index == index
        assert text[chunk.start_char : chunk.end_char] == chunk.text
        assert chunk.text and chunk.text == chunk.text.strip()
        ids = tokenizer(chunk.text, add_special_tokens=True, verbose=False)["input_ids"]
        assert len(ids) <= config.max_tokens
        assert chunk.token_count == len(ids) - specials
        for pos in range(chunk.start_char, chunk.end_char):
            covered[pos] = True
    assert all(covered[i] for i, char in enumerate(text) if not char.isspace())
    starts = [c.start_char for c in chunks]
    assert starts == sorted(starts) and len(set(starts)) == len(starts)


@pytest.mark.parametrize(
    ("kwargs", "bad"),
    [
        ({"overlap_tokens": 200}, "200"),
        ({"overlap_tokens": -1}, "-1"),
        ({"max_tokens": 300}, "300"),
        ({"max_tokens": 4}, "4"),
        ({"max_chars": 3}, "3"),
        ({"model_max_tokens": 2}, "2"),
    ],
)
def test_config_rejects_bad_values_naming_them(kwargs: dict[str, int], bad: str) -> None:
    with pytest.raises(ValueError, match=bad):
        ChunkConfig(**kwargs)


def test_config_validates_against_a_larger_model_limit() -> None:
    assert ChunkConfig(max_tokens=500, model_max_tokens=512).max_tokens == 500


def test_budget_must_exceed_overlap_after_special_tokens(tokenizer: Tok) -> None:
    with pytest.raises(ValueError, match="overlap_tokens=9"):
        chunk_text("some text", tokenizer, ChunkConfig(max_tokens=10, overlap_tokens=9))


@pytest.mark.parametrize("blank", ["", "   ", "\n\t \n"])
def test_blank_text_gives_no_chunks(tokenizer: Tok, blank: str) -> None:
    assert chunk_text(blank, tokenizer, CONFIG) == []


def test_short_text_is_one_chunk_without_surrounding_space(tokenizer: Tok) -> None:
    text = "  \n Refunds arrive within 7 days.  \n"
    (chunk,) = chunk_text(text, tokenizer, CONFIG)
    assert chunk == Chunk(0, "Refunds arrive within 7 days.", 4, 33, chunk.token_count)
    _check(text, [chunk], tokenizer, CONFIG)


def test_english_chunks_overlap_and_end_at_sentences(tokenizer: Tok) -> None:
    text = _english(40)
    chunks = chunk_text(text, tokenizer, CONFIG)
    _check(text, chunks, tokenizer, CONFIG)
    assert len(chunks) >= 5
    for before, after in zip(chunks, chunks[1:], strict=False):
        assert after.start_char < before.end_char  # overlap
    assert all(c.text.endswith(".") for c in chunks)
    assert sum(c.token_count for c in chunks) / len(chunks) > CONFIG.max_tokens / 2


def test_chinese_chunks_end_at_chinese_punctuation(tokenizer: Tok) -> None:
    text = _chinese(120)
    chunks = chunk_text(text, tokenizer, CONFIG)
    _check(text, chunks, tokenizer, CONFIG)
    assert len(chunks) >= 5
    assert all(c.text.endswith("。") for c in chunks)
    assert all(b.start_char < a.end_char for a, b in zip(chunks, chunks[1:], strict=False))


def test_without_overlap_chunks_tile_the_text(tokenizer: Tok) -> None:
    config = ChunkConfig(max_tokens=64, overlap_tokens=0)
    text = _english(10, seed=3)
    chunks = chunk_text(text, tokenizer, config)
    _check(text, chunks, tokenizer, config)
    for before, after in zip(chunks, chunks[1:], strict=False):
        assert text[before.end_char : after.start_char].strip() == ""


@pytest.mark.parametrize("word", ["x" * 10_000, "ab1" * 3_400, "退款" * 5_000, "a退" * 5_000])
def test_a_single_huge_word_is_split_within_limits(tokenizer: Tok, word: str) -> None:
    chunks = chunk_text(word, tokenizer, CONFIG)
    _check(word, chunks, tokenizer, CONFIG)
    assert len(chunks) >= 5
    assert all(len(c.text) <= CONFIG.max_chars for c in chunks)


@pytest.mark.parametrize("text", [
    "Z" + "\u0336\u0334\u0337\u0338\u0335" * 200,  # marks the normalizer strips, after a token
    "\u0301" * 500 + " refund " + "\u0301" * 500,  # before and after one
    "\x00\x01" * 400,  # nothing the tokenizer keeps
], ids=["zalgo tail", "marks around a word", "control characters only"])
def test_text_the_tokenizer_drops_still_respects_max_chars(tokenizer: Tok, text: str) -> None:
    config = ChunkConfig(max_tokens=32, overlap_tokens=8, max_chars=200)
    chunks = chunk_text(text, tokenizer, config)
    assert chunks and all(len(c.text) <= 200 for c in chunks)
    assert all(text[c.start_char : c.end_char] == c.text for c in chunks)
    covered = {n for c in chunks for n in range(c.start_char, c.end_char)}
    assert covered >= {n for n, char in enumerate(text) if not char.isspace()}  # nothing lost


def test_chunking_is_deterministic(tokenizer: Tok) -> None:
    text = _english(12, seed=9) + "\n" + _chinese(30)
    assert chunk_text(text, tokenizer, CONFIG) == chunk_text(text, tokenizer, CONFIG)


_ALPHABET = st.sampled_from([*"abc xyz  \n\n.,;!?。，！？；退款订单", "Hello", "unbelievable"])


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pieces=st.lists(_ALPHABET, min_size=60, max_size=600), max_tokens=st.integers(12, 64),
       overlap=st.integers(0, 8))
def test_contract_holds_for_arbitrary_text(
    tokenizer: Tok, pieces: list[str], max_tokens: int, overlap: int
) -> None:
    text = "".join(pieces)
    config = ChunkConfig(max_tokens=max_tokens, overlap_tokens=overlap)
    chunks = chunk_text(text, tokenizer, config)
    assert bool(chunks) == bool(text.strip())
    _check(text, chunks, tokenizer, config)
