"""Quality filter for cleaned records: accepts a text or names why not (a DLQ reason).

Pure and linear in the text; the records agent calls `check_quality` after cleaning and sends
rejected records to `records.dlq` with the verdict's reason and detail.
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from dataclasses import dataclass
from typing import Final

from schemas.dead_letters import DeadLetterReason

# Scripts written without spaces (Han, kana): each character is one token.
_UNSPACED: Final = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
_TOKEN: Final = re.compile(rf"[{_UNSPACED}]|[^\W_{_UNSPACED}]+")


class QualityConfigError(ValueError):
    """A `QualityConfig` field is out of range; the message names the field and value."""


@dataclass(frozen=True)
class QualityConfig:
    """Thresholds of the quality filter. Characters are counted after cleaning.

    min_chars / max_chars: length bounds of the stripped text (default 20 / 200_000).
    max_symbol_ratio: share of non-whitespace characters that are neither letters (any script,
        combining marks included) nor digits: punctuation, symbols, emoji (default 0.5).
    max_digit_ratio: share of non-whitespace characters that are digits, checked on its own so
        that number-heavy business text (orders, amounts) is judged apart (default 0.5).
    max_repeated_line_ratio: share of non-empty lines that repeat an earlier line (default 0.5).
    min_distinct_tokens: fewest distinct tokens (words; each Han or kana character counts as a
        token) a text needs (default 5).
    min_distinct_token_ratio: fewest distinct tokens per token among the first
        `token_window` tokens; a fixed window keeps the ratio comparable across lengths
        (defaults 0.1 over 1000).
    """

    min_chars: int = 20
    max_chars: int = 200_000
    max_symbol_ratio: float = 0.5
    max_digit_ratio: float = 0.5
    max_repeated_line_ratio: float = 0.5
    min_distinct_tokens: int = 5
    min_distinct_token_ratio: float = 0.1
    token_window: int = 1000

    def __post_init__(self) -> None:
        for name in ("min_chars", "max_chars", "min_distinct_tokens", "token_window"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise QualityConfigError(f"{name} must be an int >= 0, got {value!r}")
        if self.max_chars < max(self.min_chars, 1):
            raise QualityConfigError(
                f"max_chars must be >= min_chars and >= 1, got {self.max_chars}"
                f" (min_chars {self.min_chars})"
            )
        if self.token_window < 1:
            raise QualityConfigError(f"token_window must be >= 1, got {self.token_window}")
        for name in (
            "max_symbol_ratio",
            "max_digit_ratio",
            "max_repeated_line_ratio",
            "min_distinct_token_ratio",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise QualityConfigError(f"{name} must be a number, got {value!r}")
            if not 0.0 <= value <= 1.0:
                raise QualityConfigError(f"{name} must be in [0, 1], got {value!r}")


@dataclass(frozen=True)
class QualityVerdict:
    """Whether a text passed; if not, the DLQ reason and the measured value vs the threshold."""

    ok: bool
    reason: DeadLetterReason | None = None
    detail: str = ""

    def __post_init__(self) -> None:
        if self.ok != (self.reason is None):
            raise ValueError(f"a verdict with ok={self.ok} cannot have reason {self.reason!r}")


_PASSED: Final = QualityVerdict(ok=True)


def check_quality(text: str, config: QualityConfig | None = None) -> QualityVerdict:
    """The first failed check, in order: length, symbols, digits, repeated lines, information."""
    config = config if config is not None else QualityConfig()
    stripped = text.strip()
    length = len(stripped)
    if length < config.min_chars:
        return _reject(DeadLetterReason.QUALITY_TOO_SHORT, f"length {length} < {config.min_chars}")
    if length > config.max_chars:
        return _reject(DeadLetterReason.QUALITY_TOO_LONG, f"length {length} > {config.max_chars}")
    return (
        _check_characters(stripped, config)
        or _check_repeated_lines(stripped, config)
        or _check_information(stripped, config)
        or _PASSED
    )


def _reject(reason: DeadLetterReason, detail: str) -> QualityVerdict:
    return QualityVerdict(ok=False, reason=reason, detail=detail)


def _check_characters(text: str, config: QualityConfig) -> QualityVerdict | None:
    visible = len(text) - sum(map(str.isspace, text))
    if visible == 0:
        return None
    letters = sum(map(str.isalpha, text))
    digits = sum(map(str.isdigit, text))
    others = visible - letters - digits
    if others and others > config.max_symbol_ratio * visible:
        # Combining marks (Indic vowel signs, accents) belong to words: count them as letters.
        rest = (c for c in text if not (c.isalpha() or c.isdigit() or c.isspace()))
        others -= sum(1 for c in rest if unicodedata.category(c)[0] == "M")
    symbol_ratio, digit_ratio = others / visible, digits / visible
    if symbol_ratio > config.max_symbol_ratio:
        return _reject(
            DeadLetterReason.QUALITY_SYMBOLS,
            f"symbol ratio {symbol_ratio:.2f} > {config.max_symbol_ratio:.2f}",
        )
    if digit_ratio > config.max_digit_ratio:
        return _reject(
            DeadLetterReason.QUALITY_SYMBOLS,
            f"digit ratio {digit_ratio:.2f} > {config.max_digit_ratio:.2f}",
        )
    return None


def _check_repeated_lines(text: str, config: QualityConfig) -> QualityVerdict | None:
    lines = [line for line in (raw.strip() for raw in text.split("\n")) if line]
    if len(lines) < 2:
        return None
    ratio = (len(lines) - len(set(lines))) / len(lines)
    if ratio > config.max_repeated_line_ratio:
        return _reject(
            DeadLetterReason.QUALITY_REPEATED,
            f"repeated line ratio {ratio:.2f} > {config.max_repeated_line_ratio:.2f}",
        )
    return None


def _check_information(text: str, config: QualityConfig) -> QualityVerdict | None:
    window = [
        match.group().lower()
        for match in itertools.islice(_TOKEN.finditer(text), config.token_window)
    ]
    distinct = len(set(window))
    if distinct < config.min_distinct_tokens:
        return _reject(
            DeadLetterReason.QUALITY_LOW_INFORMATION,
            f"distinct tokens {distinct} < {config.min_distinct_tokens}",
        )
    ratio = distinct / len(window) if window else 0.0
    if ratio < config.min_distinct_token_ratio:
        return _reject(
            DeadLetterReason.QUALITY_LOW_INFORMATION,
            f"distinct token ratio {ratio:.2f} < {config.min_distinct_token_ratio:.2f}"
            f" over the first {len(window)} tokens",
        )
    return None
