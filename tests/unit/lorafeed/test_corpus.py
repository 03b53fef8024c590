"""The seeded support-knowledge corpus: shape, ratios, planted PII and ground truth."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from lorafeed.corpus import Corpus, generate_corpus, write_jsonl
from streams.dedup import NearDupConfig, band_keys, content_sha256, minhash

ROOT = Path(__file__).resolve().parents[3]
N = 500
REQUIRED = {"schema_version", "record_id", "op", "source", "content_type", "content",
            "metadata", "occurred_at"}


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    return generate_corpus(N, seed=0)


def _gb11643_valid(number: str) -> bool:
    if not re.fullmatch(r"\d{17}[\dX]", number):
        return False
    weights = [2 ** (17 - i) % 11 for i in range(17)]
    total = sum(int(d) * w for d, w in zip(number[:17], weights, strict=True))
    datetime.strptime(number[6:14], "%Y%m%d")  # a real birth date
    return number[17] == "10X98765432"[total % 11]


def _luhn_valid(number: str) -> bool:
    digits = [int(d) for d in number.replace(" ", "")][::-1]
    total = sum(d if i % 2 == 0 else (d * 2 - 9 if d * 2 > 9 else d * 2)
                for i, d in enumerate(digits))
    return total % 10 == 0


def _kind(value: str) -> str:
    if "@" in value:
        return "email"
    if re.fullmatch(r"\d{1,3}(\.\d{1,3}){3}", value):
        return "ip"
    if re.fullmatch(r"\d{17}[\dX]", value):
        return "id"
    if re.fullmatch(r"(\+86 )?1[3-9]\d[ -]?\d{4}[ -]?\d{4}", value):
        return "phone"
    return "card"


def test_validators_used_here_accept_known_good_numbers() -> None:
    assert _gb11643_valid("11010519491231002X")
    assert not _gb11643_valid("110105194912310021")
    assert _luhn_valid("4111 1111 1111 1111")
    assert not _luhn_valid("4111111111111112")


def test_same_seed_same_corpus_other_seed_differs(corpus: Corpus) -> None:
    again = generate_corpus(N, seed=0)
    assert again == corpus
    other = generate_corpus(N, seed=1)
    assert [r["content"] for r in other.records] != [r["content"] for r in corpus.records]


def test_records_have_the_raw_record_shape(corpus: Corpus, tmp_path: Path) -> None:
    path = tmp_path / "records.jsonl"
    assert write_jsonl(corpus, path) == N
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == N
    ids = set()
    for line, record in zip(lines, corpus.records, strict=True):
        parsed = json.loads(line)
        assert parsed == record
        assert set(parsed) == REQUIRED
        assert parsed["schema_version"] == 1 and parsed["op"] == "upsert"
        assert parsed["content_type"] in {"text/plain", "text/html", "text/markdown"}
        assert isinstance(parsed["metadata"], dict) and parsed["content"].strip()
        assert parsed["occurred_at"].endswith("Z")
        assert datetime.fromisoformat(parsed["occurred_at"]).utcoffset().total_seconds() == 0
        ids.add(parsed["record_id"])
    assert len(ids) == N


def test_ratios_are_met(corpus: Corpus) -> None:
    records = corpus.records
    zh = sum(1 for r in records if corpus.languages[r["record_id"]] == "zh") / N
    html = sum(1 for r in records if r["content_type"] == "text/html") / N
    pii = sum(1 for r in records if corpus.pii[r["record_id"]]) / N
    assert zh >= 1 / 3 and abs(zh - 0.4) < 0.05
    assert abs(html - 0.5) < 0.05
    assert abs(pii - 0.3) < 0.05
    assert len(corpus.exact_duplicates) == round(N * 0.05)
    assert len(corpus.near_duplicates) == round(N * 0.05)
    assert {r["content_type"] for r in records} == {"text/plain", "text/html", "text/markdown"}


def test_ratio_arguments_are_honoured() -> None:
    corpus = generate_corpus(200, seed=3, zh_ratio=1.0, html_ratio=0.0, exact_dup_ratio=0.1,
                             near_dup_ratio=0.0, pii_ratio=0.0)
    assert set(corpus.languages.values()) == {"zh"}
    assert all(r["content_type"] != "text/html" for r in corpus.records)
    assert len(corpus.exact_duplicates) == 20 and corpus.near_duplicates == []
    assert not any(corpus.pii.values())


@pytest.mark.parametrize(
    ("kwargs", "bad"),
    [({"n": -1}, "-1"), ({"zh_ratio": 1.5}, "1.5"), ({"pii_ratio": -0.1}, "-0.1"),
     ({"exact_dup_ratio": 0.3, "near_dup_ratio": 0.3}, "0.6")],
)
def test_bad_arguments_are_named(kwargs: dict[str, float], bad: str) -> None:
    args = {"n": 10, **kwargs}
    with pytest.raises(ValueError, match=re.escape(bad)):
        generate_corpus(**args)  # type: ignore[arg-type]


def test_planted_pii_is_valid_and_present(corpus: Corpus) -> None:
    kinds: set[str] = set()
    for record in corpus.records:
        for value in corpus.pii[record["record_id"]]:
            assert value in record["content"]
            kind = _kind(value)
            kinds.add(kind)
            if kind == "id":
                assert _gb11643_valid(value), value
            elif kind == "card":
                assert re.fullmatch(r"\d{4}( ?\d{4}){3}( ?\d{3})?", value), value
                assert _luhn_valid(value), value
            elif kind == "ip":
                assert all(0 <= int(octet) <= 255 for octet in value.split(".")), value
            elif kind == "email":
                assert re.fullmatch(r"[a-z.]+\d+@[a-z.]+\.[a-z]+", value), value
    assert kinds == {"email", "phone", "id", "card", "ip"}


def test_pages_have_the_promised_lengths(corpus: Corpus) -> None:
    for record_id, body in corpus.bodies.items():
        if corpus.languages[record_id] == "zh":
            size = sum(1 for c in body if not c.isspace())
        else:
            size = len(body.split())
        assert 80 <= size <= 600, (record_id, size)


def test_html_records_carry_boilerplate_noise(corpus: Corpus) -> None:
    pages = [r["content"] for r in corpus.records if r["content_type"] == "text/html"]
    for content in pages:
        assert "<script" in content and "<style>" in content and "<!--" in content
        assert "<nav" in content and "<footer>" in content and "&copy;" in content
    assert any(re.search(r"&#\d+;", c) for c in pages)
    assert any("&ldquo;" in c or "&mdash;" in c for c in pages)


def test_exact_duplicates_hash_alike_and_follow_their_original(corpus: Corpus) -> None:
    position = {r["record_id"]: i for i, r in enumerate(corpus.records)}
    content = {r["record_id"]: r["content"] for r in corpus.records}
    for duplicate, original in corpus.exact_duplicates.items():
        assert position[original] < position[duplicate]
        assert content_sha256(content[duplicate]) == content_sha256(content[original])
        assert corpus.pii[duplicate] == corpus.pii[original]


def test_duplicate_ground_truth_is_complete(corpus: Corpus) -> None:
    config = NearDupConfig()
    ids = list(corpus.bodies)
    signatures = {i: minhash(corpus.bodies[i], config) for i in ids}
    for original, near in corpus.near_duplicates:
        assert corpus.bodies[original] != corpus.bodies[near]
        keys = set(band_keys(signatures[original], config))
        assert keys & set(band_keys(signatures[near], config))
    labelled = {frozenset(p) for p in corpus.near_duplicates}
    labelled |= {frozenset(p) for p in corpus.exact_duplicates.items()}
    matrix = np.stack([signatures[i].hashvalues for i in ids])
    for a in range(len(ids)):
        similar = np.flatnonzero((matrix[a + 1 :] == matrix[a]).mean(axis=1) >= 0.8) + a + 1
        for b in similar:
            assert frozenset((ids[a], ids[b])) in labelled, (ids[a], ids[b])


def test_queries_reference_existing_records_of_their_language(corpus: Corpus) -> None:
    assert {q.lang for q in corpus.queries} == {"en", "zh"}
    assert len(corpus.queries) >= 40
    for query in corpus.queries:
        assert query.text.strip() and query.relevant_record_ids
        for record_id in query.relevant_record_ids:
            assert corpus.languages[record_id] == query.lang
    answered = {i for q in corpus.queries for i in q.relevant_record_ids}
    assert answered == set(corpus.languages)


def test_corpus_does_not_depend_on_hash_randomization(corpus: Corpus) -> None:
    code = (
        "import hashlib, json\n"
        "from lorafeed.corpus import generate_corpus\n"
        "c = generate_corpus(200, seed=0)\n"
        "blob = json.dumps([c.records, c.near_duplicates, [q.text for q in c.queries]])\n"
        "print(hashlib.sha256(blob.encode()).hexdigest())\n"
    )
    digests = set()
    for hash_seed in ("0", "99"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        done = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT,
                              capture_output=True, text=True, timeout=120, check=True)
        digests.add(done.stdout.strip())
    assert len(digests) == 1


@pytest.mark.parametrize("n", [0, 1, 2, 6, 7, 13])
def test_tiny_corpora_keep_their_size_even_with_many_duplicates(n: int) -> None:
    corpus = generate_corpus(n, seed=n, exact_dup_ratio=0.25, near_dup_ratio=0.25)
    assert len(corpus.records) == n
    originals = set(corpus.languages) - set(corpus.exact_duplicates)
    originals -= {near for _, near in corpus.near_duplicates}
    assert set(corpus.exact_duplicates.values()) <= originals
    assert {original for original, _ in corpus.near_duplicates} <= originals
