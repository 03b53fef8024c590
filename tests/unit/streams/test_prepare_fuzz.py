"""Fuzzing the streams worker's pure steps end to end: whatever a record holds, `prepare` returns a
Prepared record free of raw PII or a Rejected verdict with a reason, and the steps after it
(quality, dedup normalisation, fingerprints, chunking with the real MiniLM tokenizer) never raise.
The hostile corpus (tests/security/hostile.py) seeds every strategy."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from lorafeed.corpus_pii import PII_MAKERS
from lorafeed.models import minilm_dir
from lorafeed.privacy import Pseudonymizer, contains_raw_pii, redact
from schemas import DeadLetterReason, RecordIngested
from streams.chunking import ChunkConfig, chunk_text
from streams.dedup import NearDupConfig, band_keys, content_sha256, minhash, normalized_for_hash
from streams.prepare import PrepareConfig, Prepared, Rejected, prepare
from streams.quality import check_quality
from tests.security.hostile import STRINGS, deep_html

FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
PSEUDONYMS = Pseudonymizer(b"fuzz-key-0123456789abcdef")
CONFIG = PrepareConfig()

_HOSTILE = st.sampled_from(sorted(STRINGS.values()))
_MARKUP = st.sampled_from(["<p>", "</p>", "<div>", "<br>", "<script>", "</script>", "<!--", "-->",
                           "<pre>", "&amp;", "&#0;", "# ", "> ", "* ", "```", "|a|b|", "\n\n"])
_WORDS = st.sampled_from(["refund", "order", "parcel", "退款", "订单", "invoice", "Lieferung",
                          "ship", "warehouse", "days"])


@st.composite
def _pii(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(sorted(PII_MAKERS)))
    return PII_MAKERS[kind](random.Random(draw(st.integers(0, 2**32))))


@st.composite
def _content(draw: st.DrawFn) -> tuple[str, list[str]]:
    """Text mixing words, markup, hostile strings, arbitrary characters and planted PII."""
    pieces, planted = [], []
    for _ in range(draw(st.integers(1, 25))):
        kind = draw(st.integers(0, 9))
        if kind <= 3:
            pieces.append(draw(_WORDS))
        elif kind == 4:
            pieces.append(draw(_MARKUP))
        elif kind == 5:
            pieces.append(draw(_HOSTILE)[:2000])
        elif kind == 6:
            pieces.append(draw(st.text(max_size=30)))
        else:
            value = draw(_pii())
            planted.append(value)
            pieces.append(value)
    separator = draw(st.sampled_from([" ", "\n", "", "\t", " | "]))
    # PII needs a boundary to be PII: "xjane@example.com" is not an address on its own
    return separator.join(f" {p} " if p in planted else p for p in pieces), planted


def _record(content: str, content_type: str, metadata: dict[str, Any]) -> RecordIngested:
    return RecordIngested(
        schema_version=1, record_id="fuzz-1", op="upsert", source="fuzz",
        content_type=content_type, content=content, metadata=metadata, occurred_at=NOW,
    )


@FUZZ
@given(data=_content(), content_type=st.sampled_from(["text/plain", "text/html", "text/markdown"]),
       key_pii=_pii())
def test_prepare_yields_pii_free_records_or_a_named_reason(
    data: tuple[str, list[str]], content_type: str, key_pii: str
) -> None:
    content, planted = data
    metadata: dict[str, Any] = {"contact": f"mail {key_pii} now", key_pii: [key_pii, 1, None]}
    result = prepare(_record(content, content_type, metadata), PSEUDONYMS, CONFIG, NOW)
    if isinstance(result, Rejected):
        assert isinstance(result.reason, DeadLetterReason) and result.detail
        texts = [result.detail]
    else:
        assert isinstance(result, Prepared)
        cleaned = result.cleaned
        assert check_quality(cleaned.text).ok
        assert cleaned.content_sha256 == content_sha256(cleaned.text) == result.sha
        # what came from the record (digests are hex: digit runs that can pass Luhn)
        texts = [cleaned.text, json.dumps(cleaned.metadata, ensure_ascii=False)]
    for text in texts:
        assert contains_raw_pii(text) == [], (redact(text) != text, _where_raw(text))
        assert key_pii not in text
        # a planted value may survive only where cleaning broke it up (e.g. markup inside it)
        assert not [v for v in planted if v in text and contains_raw_pii(v)], text[:300]


def _where_raw(text: str) -> list[str]:
    """The stretches of `text` around what the detector still sees, for the failure message."""
    redacted = redact(text)
    found, start = [], 0
    for index, (a, b) in enumerate(zip(text, redacted, strict=False)):
        if a != b:
            start = index
            break
    found.append(text[max(0, start - 40): start + 60])
    return found


@FUZZ
@given(text=st.one_of(st.text(), _content().map(lambda d: d[0]), _HOSTILE))
def test_dedup_normalisation_is_stable_and_fingerprints_never_raise(text: str) -> None:
    normalized = normalized_for_hash(text)
    assert normalized_for_hash(normalized) == normalized
    assert content_sha256(text) == content_sha256(normalized)
    config = NearDupConfig()
    keys = band_keys(minhash(text, config), config)
    assert len(set(keys)) == len(keys)
    assert all(isinstance(key, str) for key in keys)


@FUZZ
@given(text=st.one_of(st.text(), _HOSTILE, _content().map(lambda d: d[0])))
def test_quality_always_gives_a_verdict(text: str) -> None:
    verdict = check_quality(text)
    assert verdict.ok == (verdict.reason is None)
    assert verdict.ok or verdict.detail


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerBase:
    loaded: PreTrainedTokenizerBase = AutoTokenizer.from_pretrained(str(minilm_dir()))
    return loaded


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=_content())
def test_chunking_hostile_text_keeps_the_contract(
    tokenizer: PreTrainedTokenizerBase, data: tuple[str, list[str]]
) -> None:
    config = ChunkConfig(max_tokens=32, overlap_tokens=8, max_chars=200)
    text = data[0]
    chunks = chunk_text(text, tokenizer, config)
    assert [c.index for c in chunks] == list(range(len(chunks)))
    for chunk in chunks:
        assert text[chunk.start_char : chunk.end_char] == chunk.text
        assert len(chunk.text) <= config.max_chars
        ids = tokenizer(chunk.text, add_special_tokens=True, verbose=False)["input_ids"]
        assert len(ids) <= config.max_tokens


@pytest.mark.parametrize("name", sorted(STRINGS))
def test_every_hostile_string_is_prepared_or_rejected_with_a_reason(name: str) -> None:
    for content_type in ("text/plain", "text/html", "text/markdown"):
        hostile = _record(f"Refunds take five business days. {STRINGS[name]}", content_type,
                          {name: STRINGS[name][:100]})
        result = prepare(hostile, PSEUDONYMS, CONFIG, NOW)
        assert isinstance(result, Prepared) or (result.reason and result.detail)


def test_nesting_bombs_are_refused_by_name() -> None:
    for tag in ("div", "span", "table", "b", "svg"):
        result = prepare(_record(deep_html(5000, tag), "text/html", {}), PSEUDONYMS, CONFIG, NOW)
        assert isinstance(result, Rejected) and result.reason is DeadLetterReason.HTML_TOO_DEEP


def test_pii_in_metadata_keys_is_pseudonymized() -> None:
    email = "jane.roe@example.com"
    result = prepare(_record("Refunds take five business days after arrival at our warehouse.",
                             "text/plain", {email: "owner", "nested": {email: [email]}}),
                     PSEUDONYMS, CONFIG, NOW)
    assert isinstance(result, Prepared)
    dumped = result.cleaned.model_dump_json()
    assert email not in dumped and "[EMAIL:" in dumped
