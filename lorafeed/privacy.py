"""Keyed PII pseudonymization, shared by streams (records) and serving (request context).

E-mails, phones, mainland China IDs, bank cards, IPs and configured extras become `[KIND:hex]`
tokens: an HMAC-SHA256 of the normalized value, so the same value always gets the same token.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
import re
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Final

BUILTIN_KINDS: Final = ("email", "cn_id", "bank_card", "phone", "ipv6", "ipv4")
MIN_KEY_BYTES: Final = 16
# With extra patterns, whole passes repeat until nothing changes, at most this many times (an
# extra pattern might match its own tokens).
_MAX_PASSES: Final = 4
_KIND_RE: Final = re.compile(r"[a-z][a-z0-9_]{0,31}")
# A token must not begin or end with a character that PII patterns use, so it never merges with
# neighbouring text into something detectable.
_PATTERN_CHARS: Final = frozenset(".+-_%@:(){}")
_ID_WEIGHTS: Final = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK: Final = "10X98765432"
# Each rule consumes one character of a known class before looking behind (two characters
# wide), so the engine skips a rule on the first character alone; the lookbehinds are digit
# boundaries instead of \b, which does not exist between CJK and digits.
_NB: Final = r"(?<![0-9].)"
_NA: Final = r"(?![0-9])"
# (group, kind, pattern) in priority order for hits starting at the same place: IDs and cards
# before phones, so that a long number is not half-eaten as a phone.
_RULES: Final = (
    ("email", "email", r"[A-Za-z0-9._%+-](?<![A-Za-z0-9._%+-].)[A-Za-z0-9._%+-]{0,63}+"
     r"@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"),
    ("cn_id", "cn_id", rf"[1-9]{_NB}[0-9]{{5}}(?:18|19|20)[0-9]{{9}}[0-9Xx]{_NA}"),
    ("bank_card", "bank_card", rf"[0-9]{_NB}(?:[0-9]{{12,18}}|[0-9]{{3}}(?:[ -][0-9]{{4}}){{2,3}}"
     rf"(?:[ -][0-9]{{1,4}})?|[0-9]{{3}}[ -][0-9]{{6}}[ -][0-9]{{4,5}}){_NA}"),
    ("cn_mobile", "phone", rf"(?:(?:\+{_NB}86|0{_NB}086|\({_NB}\+86\))[ -]?1|1{_NB})"
     rf"[3-9][0-9][ -]?[0-9]{{4}}[ -]?[0-9]{{4}}{_NA}"),
    ("cn_landline", "phone", rf"(?:0{_NB}[0-9]{{2,3}}[ -]|\({_NB}0[0-9]{{2,3}}\) ?)"
     rf"[1-9][0-9]{{6,7}}{_NA}"),
    ("intl_phone", "phone", rf"\+{_NB}[1-9](?:[ .-]?[0-9]|[ .-]?\([0-9]{{1,4}}\)){{6,16}}{_NA}"),
    ("ipv6", "ipv6", r"[0-9A-Fa-f:](?<![0-9A-Za-z:.].)(?:(?<=:):|(?<!:)[0-9A-Fa-f]{0,3}:"
     r"[0-9A-Fa-f]{0,4}:)[0-9A-Fa-f:]{0,37}(?:(?<=:)[0-9]{1,3}(?:\.[0-9]{1,3}){3})?"
     r"(?![0-9A-Za-z:]|\.[0-9])"),
    ("ipv4", "ipv4", r"[0-9](?<![0-9.].)[0-9]{0,2}(?:\.[0-9]{1,3}){3}(?![0-9]|\.[0-9])"),
)


class PrivacyError(ValueError):
    """Base of every privacy error; messages name the bad value, never the key."""


class InvalidPrivacyConfig(PrivacyError):
    """A `PrivacyConfig` field is invalid (kind name, regex, token format or digest size)."""


class InvalidPrivacyKey(PrivacyError):
    """The pseudonymization key is not bytes or is shorter than `MIN_KEY_BYTES`."""


@dataclass(frozen=True)
class PrivacyConfig:
    """Knobs of the pseudonymizer; safe to save with artifacts (it never holds the key).

    extra_patterns: kind -> regex of more values to replace; kinds match `[a-z][a-z0-9_]*` and
        are not built-in; applied after the built-in kinds, the match hashed as written.
        Numbered backreferences work. Default: none.
    token_format: the replacement, with `{kind}` (upper-cased) and `{digest}` once each, and a
        delimiter such as `[ ] < > #` at both ends. Default `[{kind}:{digest}]`.
    digest_chars: hex characters of the HMAC kept in a token, 8..64. Default 12.
    """

    extra_patterns: Mapping[str, str] = field(default_factory=dict)
    token_format: str = "[{kind}:{digest}]"
    digest_chars: int = 12

    def __post_init__(self) -> None:
        object.__setattr__(self, "extra_patterns", dict(self.extra_patterns))
        for kind, pattern in self.extra_patterns.items():
            _validate_extra(kind, pattern)
        _validate_token_format(self.token_format)
        if isinstance(self.digest_chars, bool) or not isinstance(self.digest_chars, int):
            raise InvalidPrivacyConfig(f"digest_chars must be an int, got {self.digest_chars!r}")
        if not 8 <= self.digest_chars <= 64:
            raise InvalidPrivacyConfig(f"digest_chars must be in 8..64, got {self.digest_chars}")

    def token_regex(self) -> str:
        """A regex matching any token this config produces (tokens are never re-replaced)."""
        parts = re.split(r"(\{kind\}|\{digest\})", self.token_format)
        subs = {"{kind}": "[A-Z][A-Z0-9_]*", "{digest}": f"[0-9a-f]{{{self.digest_chars}}}"}
        return "".join(subs.get(part, re.escape(part)) for part in parts)


def _validate_extra(kind: object, pattern: object) -> None:
    if not isinstance(kind, str) or not _KIND_RE.fullmatch(kind):
        raise InvalidPrivacyConfig(f"extra pattern kind {kind!r} must match [a-z][a-z0-9_]*")
    if kind in BUILTIN_KINDS:
        raise InvalidPrivacyConfig(f"extra pattern kind {kind!r} is a built-in kind")
    if not isinstance(pattern, str):
        raise InvalidPrivacyConfig(f"extra pattern for {kind!r} must be a str, got {pattern!r}")
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise InvalidPrivacyConfig(
            f"extra pattern for {kind!r} does not compile: {pattern!r} ({exc})"
        ) from exc
    if compiled.fullmatch(""):
        raise InvalidPrivacyConfig(f"extra pattern for {kind!r} matches '': {pattern!r}")


def _validate_token_format(fmt: object) -> None:
    if not isinstance(fmt, str):
        raise InvalidPrivacyConfig(f"token_format must be a str, got {fmt!r}")
    for placeholder in ("{kind}", "{digest}"):
        if fmt.count(placeholder) != 1:
            raise InvalidPrivacyConfig(f"token_format {fmt!r} needs {placeholder} exactly once")
    if any(c.isspace() for c in fmt):
        raise InvalidPrivacyConfig(f"token_format {fmt!r} must not contain whitespace")
    for edge in (fmt[0], fmt[-1]):
        if edge.isalnum() or edge.isspace() or edge in _PATTERN_CHARS:
            raise InvalidPrivacyConfig(
                f"token_format {fmt!r} must begin and end with a delimiter, not {edge!r}"
            )


@dataclass(frozen=True)
class PseudonymizedText:
    """The text with PII replaced, and how many values of each kind were replaced."""

    text: str
    counts: dict[str, int]


def _id_number(raw: str) -> str | None:
    """GB 11643 check character and a real birth date."""
    value = raw.upper()
    total = sum(int(d) * w for d, w in zip(value[:17], _ID_WEIGHTS, strict=True))
    if _ID_CHECK[total % 11] != value[17]:
        return None
    try:
        date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
    except ValueError:
        return None
    return value


def _card(raw: str) -> str | None:
    """Digits only, 13..19 of them, passing Luhn."""
    digits = re.sub(r"[^0-9]", "", raw)
    if not 13 <= len(digits) <= 19:
        return None
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return digits if total % 10 == 0 else None


def _phone(raw: str) -> str | None:
    """E.164-like `+digits`; mainland China numbers as +86 and the number without trunk 0."""
    digits = re.sub(r"[^0-9]", "", raw)
    if raw.lstrip("(").startswith("+") or digits.startswith("0086"):
        digits = digits.removeprefix("00")
        if not 8 <= len(digits) <= 15:
            return None
        if not digits.startswith("86"):
            return "+" + digits
        digits = digits[2:]
    return "+86" + digits.removeprefix("0")


def _ip(raw: str) -> str | None:
    """Compressed form; `::` and `0.0.0.0` are not addresses of anyone."""
    try:
        address = ipaddress.ip_address(raw)
    except ValueError:
        return None
    return None if address.is_unspecified else address.compressed


_NORMALIZERS: Final[dict[str, Callable[[str], str | None]]] = {
    "email": str.lower, "cn_id": _id_number, "bank_card": _card, "phone": _phone,
    "ipv6": _ip, "ipv4": _ip,
}


def _segment_regex(token_format: str) -> str:
    """Runs of characters that rules use, holding a digit, `@` or `:` (every value does).

    Spaces join words only before a digit, `+` or `(`, as inside phone and card numbers. Only
    these runs are scanned with the rules: most prose is skipped at C speed.
    """
    literal = set(re.sub(r"\{kind\}|\{digest\}", "", token_format)) | set("._%+-()[]")
    others = re.escape("".join(sorted(c for c in literal if not (c.isascii() and c.isalnum()))))
    word = f"A-Za-z0-9@:{others}"
    word_no_trigger = "A-Za-z" + re.escape("".join(sorted(set(others) - set("\\@:"))))
    glue = r" (?=[0-9+(])"
    return (
        rf"[{word}](?<![{word}].)(?:(?<=[0-9@:])|(?:[{word_no_trigger}]|{glue})*+[0-9@:])"
        rf"(?:[{word}]|{glue})*+"
    )


# Full-width ASCII forms (as a Chinese input method types them) map one to one to ASCII, so
# rules can run on a folded copy at the same offsets; only full-width digits, letters, @ or +
# make folding worth it.
_FULL_WIDTH: Final = re.compile("[\uff0b\uff10-\uff19\uff20-\uff3a\uff41-\uff5a]")
_TRAILING_GROUP: Final = re.compile(r"[ -][0-9]{1,4}$")
_FOLD_WIDTH: Final = {0xFF01 + i: 0x21 + i for i in range(94)} | {0x3000: 0x20}
# Called with (kind, normalized value, raw match); returns the replacement text.
_Replace = Callable[[str, str, str], str]


class _Scanner:
    """The compiled patterns of one config: finds PII and hands each hit to a callback.

    A hit that fails validation is scanned again with the rules after its own, so an invalid
    ID can still be a valid card. One combined regex does the whole pass.
    """

    def __init__(self, config: PrivacyConfig) -> None:
        token = config.token_regex()
        self._token_re = re.compile(token)
        self._segments = re.compile(_segment_regex(config.token_format))
        alts = [("tok", token)] + [(name, pattern) for name, _, pattern in _RULES]
        self._kinds = {name: kind for name, kind, _ in _RULES}
        self._index = {name: i for i, (name, _) in enumerate(alts)}
        # _tails[i]: the token rule and every rule after rule i, as one regex; each rule ends in
        # an empty named group telling which one matched (at the start it would slow it down).
        self._tails = [
            re.compile("|".join(f"{p}(?P<{n}>)" for n, p in [alts[0], *alts[i + 1 :]]))
            for i in range(len(alts))
        ]
        self._extras = [
            (kind, re.compile(f"(?:{token})|(?:{pattern})"))
            for kind, pattern in config.extra_patterns.items()
        ]

    def run(self, text: str, replace: _Replace) -> str:
        """Apply `replace` to every hit until the text stops changing (a fixed point).

        A replacement changes what its neighbours see (a digit next to a value becomes `]`),
        so another pass may find more; repeating makes pseudonymization idempotent.
        """
        for _ in range(_MAX_PASSES):
            result = self._scan(text, replace)
            for kind, regex in self._extras:
                result = regex.sub(self._extra_hit(kind, replace), result)
            if not self._extras or result == text:
                return result
            text = result
        return text

    def _scan(self, text: str, replace: _Replace) -> str:
        """The built-in rules, to a fixed point, on each segment that may hold a value.

        Segments are maximal and rules look no further than the characters next to a match,
        so a segment is processed alone, exactly as within the whole text. Rules see
        full-width forms as ASCII (a segment with a hit keeps the ASCII forms).
        """
        pieces: list[str] = []
        done = 0
        regex, hit = self._tails[0], self._hit_handler(0, replace)
        folded = text.translate(_FOLD_WIDTH) if _FULL_WIDTH.search(text) else text
        for segment in self._segments.finditer(folded):
            new = original = segment.group()
            # Ends: a pass that changes something turns raw characters into a token for good.
            while (old := new) != (new := regex.sub(hit, old)):
                pass
            if new != original:
                pieces += (text[done : segment.start()], new)
                done = segment.end()
        if not pieces:
            return text
        pieces.append(text[done:])
        return "".join(pieces)

    def _hit_handler(self, start: int, replace: _Replace) -> Callable[[re.Match[str]], str]:
        def hit(match: re.Match[str]) -> str:
            name, raw = match.lastgroup, match.group()
            if name is None or name == "tok":
                return raw
            kind = self._kinds[name]
            value = _NORMALIZERS[kind](raw)
            if value is None and kind == "bank_card":
                # "4111 1111 1111 1111 2 items": the optional last group took a digit that is
                # not the card's; the card without it is still a card
                head = _TRAILING_GROUP.sub("", raw)
                card = _card(head) if head != raw else None
                if card is not None:
                    return replace(kind, card, head) + raw[len(head):]
            if value is None:
                index = self._index[name]
                return self._tails[index].sub(self._hit_handler(index, replace), raw)
            return replace(kind, value, raw)

        return hit

    def _extra_hit(self, kind: str, replace: _Replace) -> Callable[[re.Match[str]], str]:
        tokens = self._token_re
        return lambda m: m[0] if tokens.fullmatch(m[0]) else replace(kind, m[0], m[0])


class Pseudonymizer:
    """Replaces PII with keyed tokens; built once per service from its secret key.

    Streams call `pseudonymize` on every cleaned record; serving calls it on request context
    before storing or publishing it. The key never appears in repr or messages. Full-width
    forms (`１３８…`, `＠`) are read as ASCII; other input is best NFKC-normalized first.
    """

    def __init__(self, key: bytes, config: PrivacyConfig | None = None) -> None:
        if not isinstance(key, bytes | bytearray):
            raise InvalidPrivacyKey(f"key must be bytes, got {type(key).__name__}")
        if len(key) < MIN_KEY_BYTES:
            raise InvalidPrivacyKey(f"key has {len(key)} bytes, at least {MIN_KEY_BYTES} needed")
        self._key = bytes(key)
        self._config = config if config is not None else PrivacyConfig()
        self._scanner = _Scanner(self._config)

    @property
    def config(self) -> PrivacyConfig:
        """The config this pseudonymizer was built with."""
        return self._config

    def __repr__(self) -> str:
        return f"Pseudonymizer(key=<redacted>, config={self._config!r})"

    def pseudonymize(self, text: str) -> PseudonymizedText:
        """Replace every detected value. Idempotent: tokens are left as they are."""
        counts: Counter[str] = Counter()

        def replace(kind: str, value: str, _raw: str) -> str:
            counts[kind] += 1
            return self._token(kind, value)

        result = self._scanner.run(text, replace)
        return PseudonymizedText(text=result, counts=dict(counts))

    def _token(self, kind: str, value: str) -> str:
        message = f"{kind}\x00{value}".encode("utf-8", "surrogatepass")
        digest = hmac.new(self._key, message, hashlib.sha256).hexdigest()
        token = self._config.token_format.replace("{kind}", kind.upper())
        return token.replace("{digest}", digest[: self._config.digest_chars])


@functools.cache
def _default_scanner() -> _Scanner:
    return _Scanner(PrivacyConfig())


def contains_raw_pii(text: str, config: PrivacyConfig | None = None) -> list[str]:
    """The sorted kinds of raw (not yet pseudonymized) PII in `text`; [] if none.

    For tests and scans of stored data; detection is exactly that of `Pseudonymizer`.
    """
    scanner = _default_scanner() if config is None else _Scanner(config)
    found: set[str] = set()

    def record(kind: str, _value: str, raw: str) -> str:
        found.add(kind)
        return raw

    scanner.run(text, record)
    return sorted(found)


def redact(text: str, keep: Callable[[str, str], bool] | None = None) -> str:
    """`text` with every detected value replaced by its kind alone (`[EMAIL]`), no key needed;
    `keep(kind, raw)` may spare a value (e.g. a loopback address in a log line).

    For human-readable text written where no pseudonymizer is at hand (dead-letter details and
    keys echoing bad input, log lines); detection is exactly that of `Pseudonymizer`.
    """

    def replace(kind: str, _value: str, raw: str) -> str:
        return raw if keep is not None and keep(kind, raw) else f"[{kind.upper()}]"

    return _default_scanner().run(text, replace)
