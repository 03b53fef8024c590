"""Quality filter: each rejection reason on a minimal example, good texts pass, config checks."""

from __future__ import annotations

import dataclasses

import pytest

from schemas.dead_letters import DeadLetterReason
from streams.quality import QualityConfig, QualityConfigError, QualityVerdict, check_quality

ENGLISH = (
    "To reset your password, open the account settings page and choose Security. We send a "
    "link to your registered address; it expires after 24 hours, so request a new one if needed."
)
CHINESE = (
    "如需重置密码，请打开账户设置页面并选择安全选项。我们会向您注册的邮箱发送一个链接，"
    "该链接在二十四小时后失效，如有需要请重新申请。"
)
HINDI = "नमस्ते दुनिया, यह एक परीक्षण वाक्य है जो मात्राओं के साथ लिखा गया है।"


@pytest.mark.parametrize("text", [ENGLISH, CHINESE, HINDI, f"{ENGLISH}\n\n{CHINESE}"])
def test_good_paragraphs_pass(text: str) -> None:
    assert check_quality(text) == QualityVerdict(ok=True)


@pytest.mark.parametrize(
    ("text", "config", "reason", "detail"),
    [
        ("Thanks!", QualityConfig(), DeadLetterReason.QUALITY_TOO_SHORT, "length 7 < 20"),
        (" 谢谢您的反馈。\n", QualityConfig(), DeadLetterReason.QUALITY_TOO_SHORT, "length 7 < 20"),
        (
            ENGLISH,
            QualityConfig(max_chars=100),
            DeadLetterReason.QUALITY_TOO_LONG,
            f"length {len(ENGLISH)} > 100",
        ),
        (
            "#### $$$$ %%%% &&&& ~~~~ ok ok ok",
            QualityConfig(),
            DeadLetterReason.QUALITY_SYMBOLS,
            "symbol ratio 0.77 > 0.50",
        ),
        (
            "订单 20240101 12345678 99887766 55",
            QualityConfig(),
            DeadLetterReason.QUALITY_SYMBOLS,
            "digit ratio 0.93 > 0.50",
        ),
        (
            "Buy now, great deal!\nBuy now, great deal!\nBuy now, great deal!\nCall today",
            QualityConfig(),
            DeadLetterReason.QUALITY_REPEATED,
            "repeated line ratio 0.50 > 0.40",
        ),
        (
            "spam spam spam spam spam spam spam",
            QualityConfig(),
            DeadLetterReason.QUALITY_LOW_INFORMATION,
            "distinct tokens 1 < 5",
        ),
        (
            "好好好好好好好好好好好好好好好好好好好好好好",
            QualityConfig(),
            DeadLetterReason.QUALITY_LOW_INFORMATION,
            "distinct tokens 1 < 5",
        ),
        (
            "alpha beta gamma delta epsilon " * 30,
            QualityConfig(),
            DeadLetterReason.QUALITY_LOW_INFORMATION,
            "distinct token ratio 0.03 < 0.10 over the first 150 tokens",
        ),
    ],
)
def test_each_reason_is_named_with_value_and_threshold(
    text: str, config: QualityConfig, reason: DeadLetterReason, detail: str
) -> None:
    if reason is DeadLetterReason.QUALITY_REPEATED:
        config = dataclasses.replace(config, max_repeated_line_ratio=0.4)
    verdict = check_quality(text, config)
    assert verdict == QualityVerdict(ok=False, reason=reason, detail=detail)


def test_thresholds_are_strict_bounds() -> None:
    assert check_quality("x" * 19 + "y", QualityConfig(min_distinct_tokens=1)).ok
    half = "ab,," * 10  # symbols are exactly half of the visible characters
    assert check_quality(half, QualityConfig(min_distinct_tokens=1)).ok
    line, last = "Some line here", "And a last one"
    assert check_quality("\n".join([line] * 3 + [last])).ok  # 2 of 4 lines repeat: 0.50
    rejected = check_quality("\n".join([line] * 4 + [last]))  # 3 of 5 lines repeat: 0.60
    assert rejected.reason is DeadLetterReason.QUALITY_REPEATED


def test_window_bounds_the_information_check() -> None:
    varied = " ".join(f"word{i}" for i in range(200))
    spam_after_window = varied + " spam" * 5_000
    assert check_quality(spam_after_window, QualityConfig(token_window=200)).ok
    assert not check_quality(spam_after_window, QualityConfig(token_window=5_200)).ok


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_chars": -1}, "min_chars must be an int >= 0, got -1"),
        ({"max_chars": 2.5}, "max_chars must be an int >= 0, got 2.5"),
        ({"min_chars": 50, "max_chars": 10}, "max_chars must be >= min_chars.*got 10"),
        ({"token_window": 0}, "token_window must be >= 1, got 0"),
        ({"max_symbol_ratio": 1.5}, r"max_symbol_ratio must be in \[0, 1\], got 1.5"),
        ({"max_digit_ratio": -0.1}, r"max_digit_ratio must be in \[0, 1\], got -0.1"),
        ({"min_distinct_token_ratio": "0.1"}, "min_distinct_token_ratio must be a number"),
        ({"max_repeated_line_ratio": True}, "max_repeated_line_ratio must be a number, got True"),
    ],
)
def test_bad_config_is_rejected_naming_the_value(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(QualityConfigError, match=message):
        QualityConfig(**kwargs)  # type: ignore[arg-type]


def test_verdict_is_consistent_and_frozen() -> None:
    with pytest.raises(ValueError, match="ok=True cannot have reason"):
        QualityVerdict(ok=True, reason=DeadLetterReason.QUALITY_TOO_SHORT)
    with pytest.raises(ValueError, match="ok=False cannot have reason None"):
        QualityVerdict(ok=False)
    with pytest.raises(dataclasses.FrozenInstanceError):
        check_quality(ENGLISH).ok = False  # type: ignore[misc]
