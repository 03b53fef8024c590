"""Semantic versions of adapters: the `SemVer` field type and the `Version` value object.

Strict `MAJOR.MINOR.PATCH`: ASCII digits, no leading zeros (except a lone 0), no suffixes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Final

from pydantic import AfterValidator, Field

from schemas.fields import show

PART_MAX: Final = 999_999_999
SEMVER_PATTERN: Final = r"^(0|[1-9][0-9]{0,8})\.(0|[1-9][0-9]{0,8})\.(0|[1-9][0-9]{0,8})$"
_SEMVER_RE: Final = re.compile(SEMVER_PATTERN[1:-1])


@dataclass(frozen=True, order=True)
class Version:
    """A parsed semantic version; instances compare by (major, minor, patch)."""

    major: int
    minor: int
    patch: int

    def __post_init__(self) -> None:
        for name in ("major", "minor", "patch"):
            part = getattr(self, name)
            if type(part) is not int or not 0 <= part <= PART_MAX:
                raise ValueError(
                    f"version {name} must be an integer in 0..{PART_MAX}, got {part!r}"
                )

    @classmethod
    def parse(cls, text: str) -> Version:
        """Parse `MAJOR.MINOR.PATCH`; raise ValueError naming the text otherwise."""
        match = _SEMVER_RE.fullmatch(text) if isinstance(text, str) else None
        if match is None:
            raise ValueError(
                f"version {show(text)} is not MAJOR.MINOR.PATCH "
                "(digits only, no leading zeros, at most 9 digits each)"
            )
        major, minor, patch = (int(group) for group in match.groups())
        return cls(major, minor, patch)

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"

    def bump_major(self) -> Version:
        """Next incompatible version: base model, tokenizer or label set changed."""
        return Version(self.major + 1, 0, 0)

    def bump_minor(self) -> Version:
        """Next version after a new data domain or knowledge source entered training."""
        return Version(self.major, self.minor + 1, 0)

    def bump_patch(self) -> Version:
        """Next version after a regular feedback update on the same data domains."""
        return Version(self.major, self.minor, self.patch + 1)


def _check_semver(value: str) -> str:
    Version.parse(value)
    return value


SemVer = Annotated[
    str,
    AfterValidator(_check_semver),
    Field(json_schema_extra={"pattern": SEMVER_PATTERN}),
]
"""A version string such as "2.3.1"; use `Version.parse` to compare or bump it."""
