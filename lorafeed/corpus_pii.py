"""Fake PII values the seeded corpus generator plants in pages: e-mail addresses, mainland mobile
numbers, GB 11643 resident ID numbers, Luhn-valid card numbers and IPv4 addresses."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Final

from lorafeed.corpus_templates import AREA_CODES, EMAIL_DOMAINS, EMAIL_NAMES, MOBILE_PREFIXES


def fake_email(rng: random.Random) -> str:
    """An address at one of the reserved example domains."""
    return f"{rng.choice(EMAIL_NAMES)}{rng.randint(1, 99)}@{rng.choice(EMAIL_DOMAINS)}"


def fake_mobile(rng: random.Random) -> str:
    """An 11-digit mainland mobile number: bare, as +86 xxx xxxx xxxx, or as xxx-xxxx-xxxx."""
    digits = rng.choice(MOBILE_PREFIXES) + f"{rng.randint(0, 10**8 - 1):08d}"
    style = rng.random()
    if style < 0.6:
        return digits
    if style < 0.8:
        return f"+86 {digits[:3]} {digits[3:7]} {digits[7:]}"
    return f"{digits[:3]}-{digits[3:7]}-{digits[7:]}"


def fake_resident_id(rng: random.Random) -> str:
    """A mainland China resident ID number with a valid GB 11643-1999 check character."""
    born = datetime(1960, 1, 1) + timedelta(days=rng.randint(0, 46 * 365))
    first17 = f"{rng.choice(AREA_CODES)}{born:%Y%m%d}{rng.randint(0, 999):03d}"
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    total = sum(int(d) * w for d, w in zip(first17, weights, strict=True))
    return first17 + "10X98765432"[total % 11]


def fake_card(rng: random.Random) -> str:
    """A Luhn-valid card number (Visa, Mastercard or UnionPay), sometimes grouped by four."""
    prefix, length = rng.choice((("4", 16), ("5" + str(rng.randint(1, 5)), 16), ("62", 16),
                                 ("62", 19)))
    payload = prefix + "".join(str(rng.randint(0, 9)) for _ in range(length - 1 - len(prefix)))
    total = 0
    for i, digit in enumerate(reversed(payload)):
        value = int(digit) * (2 if i % 2 == 0 else 1)
        total += value - 9 if value > 9 else value
    number = payload + str((10 - total % 10) % 10)
    if rng.random() < 0.3:
        return " ".join(number[i : i + 4] for i in range(0, len(number), 4))
    return number


def fake_ipv4(rng: random.Random) -> str:
    """An IPv4 address outside 0-10, loopback, link-local, 172.x, 192.x and multicast."""
    first = rng.choice([a for a in range(11, 224) if a not in (127, 169, 172, 192)])
    return f"{first}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"


PII_MAKERS: Final[dict[str, Callable[[random.Random], str]]] = {
    "email": fake_email, "phone": fake_mobile, "id": fake_resident_id, "card": fake_card,
    "ip": fake_ipv4,
}
