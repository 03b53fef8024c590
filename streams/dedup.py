"""Exact and near-duplicate keys for cleaned record text (pure; Redis claims happen elsewhere).

Exact: ``content_sha256`` of ``normalized_for_hash`` (NFKC, casefold, punctuation, symbols and
whitespace folded into single spaces), so trivially reformatted copies share one hash.
Near: MinHash (datasketch, ``affine32`` scheme, SHA-1 based 32-bit hashing, fixed seed) over
shingles, then LSH band keys. Shingles are ``shingle_size``-grams of units of the normalized
text, where a unit is one CJK character (Chinese has no word spaces) or one space-delimited
word otherwise, so English gets word 5-grams, Chinese character 5-grams and mixed text both.
Every key and digest is derived from bytes with fixed hashes, never from Python's ``hash``,
so workers in different processes agree on them. Detection is probabilistic: with the
defaults (b=8 bands of r=16 rows) a pair shares a band with probability 0.46 at Jaccard 0.85,
0.81 at 0.90, 0.99 at 0.95 and 0.03 at 0.70; confirm candidates with ``estimated_jaccard``.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, TypeAlias

import numpy as np
from datasketch import MinHash, MinHashLSH  # type: ignore[import-untyped]
from datasketch.hashfunc import sha1_hash32  # type: ignore[import-untyped]
from numpy.typing import NDArray

from lorafeed.textsplit import CJK_CHAR_CLASS

# A datasketch MinHash, or its hash values (as stored in Redis or passed between workers).
Signature: TypeAlias = "MinHash | NDArray[np.uint32] | Sequence[int]"

_SCHEME = "affine32"
_EMPTY_HASH = 0xFFFFFFFF  # affine32 initial value: no shingle was ever added
_KEY_VERSION = b"lorafeed-lsh-v1"
# One CJK character, or a run of anything else up to whitespace or a CJK character.
_UNIT = re.compile(f"[{CJK_CHAR_CLASS}]|[^\\s{CJK_CHAR_CLASS}]+")


@dataclass(frozen=True)
class NearDupConfig:
    """Knobs of near-duplicate detection.

    threshold: Jaccard similarity of shingle sets above which two texts are near-duplicates
        (default 0.85); it sets the LSH bands b and rows r as datasketch's MinHashLSH does.
    shingle_size: units per shingle (default 5: word 5-grams, CJK character 5-grams).
    num_perm: MinHash permutations (default 128); more is more precise and slower.
    seed: MinHash permutation seed (default 1); every worker must use the same one.
    false_negative_weight: weight of missed pairs against false candidates when choosing
        b and r (default 0.99, giving 14 bands of 9 rows). Recall matters more than candidate
        count here: two workers racing on a pair index exactly one only if the pair shares a
        band, and a false candidate costs one signature comparison. At Jaccard 0.85 a pair
        shares a band with probability 0.975 (0.46 with datasketch's default 0.5), at 0.90
        0.999; unrelated texts at 0.5 become candidates 2.7% of the time.
    """

    threshold: float = 0.85
    shingle_size: int = 5
    num_perm: int = 128
    seed: int = 1
    false_negative_weight: float = 0.99

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {self.threshold!r}")
        if not 1 <= self.shingle_size <= 32:
            raise ValueError(f"shingle_size must be in [1, 32], got {self.shingle_size!r}")
        if not 16 <= self.num_perm <= 1024:
            raise ValueError(f"num_perm must be in [16, 1024], got {self.num_perm!r}")
        if not 0 <= self.seed < 2**32:
            raise ValueError(f"seed must be in [0, 2**32), got {self.seed!r}")
        if not 0.0 < self.false_negative_weight < 1.0:
            raise ValueError(
                f"false_negative_weight must be in (0, 1), got {self.false_negative_weight!r}"
            )

    @property
    def bands(self) -> tuple[int, int]:
        """(b, r): number of LSH bands and rows per band for this threshold and num_perm."""
        return _bands(self.threshold, self.num_perm, self.false_negative_weight)


def normalized_for_hash(text: str) -> str:
    """Fold ``text`` so that copies differing in case, width, punctuation or spacing match.

    NFKC, casefold, punctuation/symbols/separators/control characters to spaces, invisible
    format characters (zero-width spaces, BOM) removed, whitespace collapsed and stripped.
    """
    folded = unicodedata.normalize("NFKC", text).casefold()
    out: list[str] = []
    for char in folded:
        category = unicodedata.category(char)
        if category == "Cf":
            continue
        out.append(" " if category[0] in "PSZC" else char)
    return " ".join("".join(out).split())


def content_sha256(text: str) -> str:
    """Hex SHA-256 of ``normalized_for_hash(text)``: the exact-duplicate key."""
    return hashlib.sha256(normalized_for_hash(text).encode("utf-8")).hexdigest()


def shingles(text: str, config: NearDupConfig) -> set[str]:
    """The shingle set of ``text``: ``shingle_size``-grams of units (CJK chars, other words).

    A text with fewer units than ``shingle_size`` gives one shingle of all its units; a text
    without units gives the empty set.
    """
    units = _units(normalized_for_hash(text))
    k = config.shingle_size
    if len(units) <= k:
        return {" ".join(units)} if units else set()
    return {" ".join(units[i : i + k]) for i in range(len(units) - k + 1)}


def minhash(text: str, config: NearDupConfig) -> MinHash:
    """MinHash signature of ``text``'s shingles (all-empty when the text has no units)."""
    permutations = _permutations(config.num_perm, config.seed)
    signature = MinHash(
        num_perm=config.num_perm,
        seed=config.seed,
        hashfunc=sha1_hash32,
        permutations=permutations,
        scheme=_SCHEME,
    )
    signature.update_batch(sorted(s.encode("utf-8") for s in shingles(text, config)))
    return signature


def band_keys(signature: Signature, config: NearDupConfig) -> list[str]:
    """One key per LSH band, ``"lsh:{band}:{32 hex}"``, for SET NX claims in Redis.

    Two texts are near-duplicate candidates when they share at least one key. The digest
    covers the config (seed, num_perm, shingle size, b, r) as well as the band's hash values,
    so keys made under different configs never collide. An empty signature (no shingles)
    gets no keys: there is nothing to compare.
    """
    values = _values(signature, config)
    if bool(np.all(values == _EMPTY_HASH)):
        return []
    b, r = config.bands
    prefix = _KEY_VERSION + (
        f"|{config.num_perm}|{config.seed}|{config.shingle_size}|{b}|{r}|".encode("ascii")
    )
    keys: list[str] = []
    for band in range(b):
        chunk = values[band * r : (band + 1) * r].astype(">u4").tobytes()
        digest = hashlib.blake2b(prefix + chunk, digest_size=16).hexdigest()
        keys.append(f"lsh:{band}:{digest}")
    return keys


def estimated_jaccard(sig_a: Signature, sig_b: Signature) -> float:
    """Share of equal MinHash values: an unbiased estimate of the shingle sets' Jaccard."""
    a = _as_array(sig_a)
    b = _as_array(sig_b)
    if a.shape != b.shape:
        raise ValueError(f"signatures differ in length: {a.shape[0]} vs {b.shape[0]}")
    return float(np.count_nonzero(a == b)) / float(a.shape[0])


def _units(normalized: str) -> list[str]:
    """Split normalized text into units: each CJK character alone, other words whole."""
    return _UNIT.findall(normalized)


def _values(signature: Signature, config: NearDupConfig) -> NDArray[np.uint32]:
    values = _as_array(signature)
    if values.shape[0] != config.num_perm:
        raise ValueError(
            f"signature has {values.shape[0]} values, config.num_perm is {config.num_perm}"
        )
    return values


def _as_array(signature: Signature) -> NDArray[np.uint32]:
    raw = signature.hashvalues if isinstance(signature, MinHash) else signature
    return np.asarray(raw, dtype=np.uint32)


@lru_cache(maxsize=16)
def _permutations(num_perm: int, seed: int) -> Any:
    """datasketch draws permutations from a RandomState per MinHash; do it once per config."""
    return MinHash(num_perm=num_perm, seed=seed, scheme=_SCHEME).permutations


@lru_cache(maxsize=16)
def _bands(threshold: float, num_perm: int, false_negative_weight: float) -> tuple[int, int]:
    """(b, r) exactly as datasketch's MinHashLSH picks them for the same parameters."""
    lsh = MinHashLSH(
        threshold=threshold,
        num_perm=num_perm,
        weights=(1.0 - false_negative_weight, false_negative_weight),
    )
    return int(lsh.b), int(lsh.r)
