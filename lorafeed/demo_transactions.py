"""Seeded card and bank transactions for the demo's fraud task, with their true labels (pure).

Two fraud patterns an untrained classifier cannot know: a *gift-card run* (prepaid cards or
crypto bought online from a new device abroad by a days-old account, several tries in minutes)
and an *account takeover* (a large night-time transfer to a new payee right after a password
reset, from home and a known device as often as any customer, so a model that knows only
gift-card runs misses it).
Legitimate look-alikes share single signals with them (travel bookings abroad, transfers to
known payees, a new phone), so a model must learn the combination. Same seed, same data.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

Label = Literal["fraud", "legit"]
Pattern = Literal["everyday", "travel", "gift_card", "transfer", "takeover"]
PATTERNS: Final[tuple[Pattern, ...]] = ("everyday", "travel", "gift_card", "transfer", "takeover")
LABEL_OF: Final[dict[Pattern, Label]] = {
    "everyday": "legit",
    "travel": "legit",
    "gift_card": "fraud",
    "transfer": "legit",
    "takeover": "fraud",
}

_EVERYDAY = (
    ("groceries", ("FreshMart", "Hema Market", "Olé Supermarket")),
    ("restaurants", ("Noodle House", "Dim Sum Garden", "Green Bowl")),
    ("utilities", ("City Power", "Metro Water", "FiberNet Broadband")),
    ("pharmacy", ("HealthPlus Pharmacy", "Kangda Drugstore")),
    ("electronics", ("Qilin Home Store", "Digital Plaza")),
    ("bookstore", ("Xinhua Books", "Page One")),
)
_TRAVEL = (("airline", ("SkyWing Air", "Eastern Cloud Airlines")),
           ("hotel", ("Harbour View Hotel", "Lotus Inn")))
_GIFT = (("gift cards", ("CardVault Online", "GiftHub Express")),
         ("crypto exchange", ("CoinSwift", "BitHarbor")),
         ("prepaid vouchers", ("TopUp Now", "VoucherKing")))
_HOME = "CN"
_ABROAD = ("US", "GB", "RU", "NG", "BR", "VN", "DE", "TH", "JP")


@dataclass(frozen=True)
class Transaction:
    """One transaction as an app would score it: `fields` for /v1/score, the true `label`."""

    txn_id: str
    pattern: Pattern
    fields: dict[str, str | int | float]

    @property
    def label(self) -> Label:
        return LABEL_OF[self.pattern]


def make_transactions(
    counts: dict[Pattern, int], *, seed: int, id_prefix: str = "txn"
) -> list[Transaction]:
    """`counts[pattern]` transactions of each pattern, shuffled, deterministic in `seed`."""
    for pattern, count in counts.items():
        if pattern not in LABEL_OF:
            raise ValueError(f"unknown transaction pattern {pattern!r}; known: {PATTERNS}")
        if count < 0:
            raise ValueError(f"count of {pattern!r} transactions must be >= 0, got {count}")
    rng = random.Random(f"lorafeed-demo-transactions:{seed}")
    patterns = [p for p in PATTERNS for _ in range(counts.get(p, 0))]
    rng.shuffle(patterns)
    return [
        Transaction(f"{id_prefix}-{seed}-{n:05d}", pattern, _fields(rng, pattern))
        for n, pattern in enumerate(patterns)
    ]


def balanced(n: int, fraud: Sequence[Pattern], legit: Sequence[Pattern]) -> dict[Pattern, int]:
    """About `n` transactions, half fraud and half legit, each half split evenly over patterns."""
    if n < 2 or not fraud or not legit:
        raise ValueError(f"a balanced set needs n >= 2 and patterns on both sides, got n={n}")
    counts: dict[Pattern, int] = {}
    for side in (fraud, legit):
        share, extra = divmod(n // 2, len(side))
        for i, pattern in enumerate(side):
            counts[pattern] = counts.get(pattern, 0) + share + (1 if i < extra else 0)
    return counts


def _fields(rng: random.Random, pattern: Pattern) -> dict[str, str | int | float]:
    new_device = rng.random() < 0.15  # as common in every pattern but the gift-card run
    fields: dict[str, str | int | float]
    if pattern in ("everyday", "travel"):
        category, merchants = rng.choice(_EVERYDAY if pattern == "everyday" else _TRAVEL)
        abroad = pattern == "travel" and rng.random() < 0.7
        fields = {
            "type": "card payment",
            "merchant": rng.choice(merchants),
            "category": category,
            "channel": "online" if pattern == "travel" or rng.random() < 0.3 else "in store",
            "amount_cny": round(rng.uniform(12, 900 if pattern == "everyday" else 4200), 2),
            "ip_country": rng.choice(_ABROAD) if abroad else _HOME,
            "device": "new device" if new_device or (abroad and rng.random() < 0.3) else "known",
            "account_age_days": rng.randint(120, 3000),
            "attempts_last_10_min": 1,
        }
    elif pattern == "gift_card":
        category, merchants = rng.choice(_GIFT)
        fields = {
            "type": "card payment",
            "merchant": rng.choice(merchants),
            "category": category,
            "channel": "online",
            "amount_cny": round(rng.uniform(300, 2500), 2),
            "ip_country": rng.choice(_ABROAD),
            "device": "new device",
            "account_age_days": rng.randint(0, 20),
            "attempts_last_10_min": rng.randint(3, 9),
        }
    else:
        takeover = pattern == "takeover"
        fields = {
            "type": "bank transfer",
            "payee": "new payee added today" if takeover else rng.choice(
                ("landlord (paid monthly)", "mother (known payee)", "utility company",
                 "employer payroll refund")),
            "amount_cny": round(rng.uniform(8000, 60000) if takeover else rng.uniform(300, 9000),
                                2),
            "password_reset": "2 hours ago" if takeover else rng.choice(("never", "last year")),
            # a takeover comes from the victim's own country and often a known device (a SIM
            # swap or a stolen phone): the signals of a gift-card run do not reveal it
            "ip_country": _HOME if not takeover or rng.random() < 0.8 else rng.choice(_ABROAD),
            "device": "new device" if new_device else "known",
            "account_age_days": rng.randint(200, 4000),
            "hour": rng.randint(1, 4) if takeover else rng.randint(8, 21),
        }
    return fields
