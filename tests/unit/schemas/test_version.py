"""Semantic versions parse strictly, order numerically and bump as DESIGN.md defines."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from schemas.version import PART_MAX, SemVer, Version

SEMVER = TypeAdapter(SemVer)
PARTS = st.integers(min_value=0, max_value=PART_MAX)


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("0.0.0", (0, 0, 0)),
        ("2.3.1", (2, 3, 1)),
        ("10.20.30", (10, 20, 30)),
        ("999999999.0.1", (999_999_999, 0, 1)),
    ],
)
def test_parse_valid(text: str, parts: tuple[int, int, int]) -> None:
    version = Version.parse(text)
    assert (version.major, version.minor, version.patch) == parts
    assert str(version) == text


@pytest.mark.parametrize(
    "text",
    [
        "01.0.0",
        "1.02.0",
        "1.2",
        "1.2.3.4",
        "v1.2.3",
        "1.2.3-rc1",
        "1.2.3+b",
        "１.2.3",
        "1.2.3\n",
        " 1.2.3",
        "",
        "1..3",
        "-1.2.3",
        "1000000000.0.0",
        "1.2.x",
    ],
)
def test_parse_rejects_with_the_text(text: str) -> None:
    with pytest.raises(ValueError, match="MAJOR.MINOR.PATCH") as info:
        Version.parse(text)
    assert repr(text) in str(info.value)


def test_semver_field_uses_the_same_rule() -> None:
    assert SEMVER.validate_python("1.2.3") == "1.2.3"
    with pytest.raises(ValidationError, match="'1.2'"):
        SEMVER.validate_python("1.2")


def test_ordering_is_numeric_not_lexical() -> None:
    assert Version.parse("1.10.0") > Version.parse("1.9.9")
    assert Version.parse("2.0.0") > Version.parse("1.99.99")
    texts = ["1.10.0", "0.9.0", "1.2.10", "1.2.9"]
    assert [str(v) for v in sorted(map(Version.parse, texts))] == [
        "0.9.0",
        "1.2.9",
        "1.2.10",
        "1.10.0",
    ]


def test_bumps() -> None:
    version = Version.parse("2.3.1")
    assert str(version.bump_major()) == "3.0.0"
    assert str(version.bump_minor()) == "2.4.0"
    assert str(version.bump_patch()) == "2.3.2"


@pytest.mark.parametrize("parts", [(-1, 0, 0), (0, PART_MAX + 1, 0), (0, 0, True)])
def test_constructor_validates_parts(parts: tuple[int, int, int]) -> None:
    with pytest.raises(ValueError, match="must be an integer"):
        Version(*parts)


@given(PARTS, PARTS, PARTS)
def test_text_round_trip(major: int, minor: int, patch: int) -> None:
    version = Version(major, minor, patch)
    assert Version.parse(str(version)) == version
    assert SEMVER.validate_python(str(version)) == str(version)
