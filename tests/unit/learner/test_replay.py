"""Reservoir slot arithmetic: fills first, then keeps offers with probability capacity/seen."""

from __future__ import annotations

from collections import Counter

import pytest

from learner.replay import reservoir_slot, sample_order


def test_first_offers_fill_slots_in_order() -> None:
    assert [reservoir_slot("t", s, 3, seed=0) for s in (1, 2, 3)] == [0, 1, 2]


def test_zero_capacity_keeps_nothing() -> None:
    assert reservoir_slot("t", 1, 0, seed=0) is None


def test_later_offers_are_kept_with_probability_capacity_over_seen() -> None:
    kept = [reservoir_slot("t", seen, 10, seed=3) for seen in range(11, 20_011)]
    expected = sum(10 / seen for seen in range(11, 20_011))
    assert abs(sum(slot is not None for slot in kept) - expected) < 4 * expected**0.5
    slots = Counter(slot for slot in kept if slot is not None)
    assert set(slots) == set(range(10))


def test_uniform_inclusion_over_many_streams() -> None:
    # Each of 20 offered items should end in a 5-slot reservoir ~25% of the time.
    hits: Counter[int] = Counter()
    for seed in range(2000):
        slots: dict[int, int] = {}
        for seen in range(1, 21):
            slot = reservoir_slot("t", seen, 5, seed)
            if slot is not None:
                slots[slot] = seen
        hits.update(slots.values())
    assert all(400 < hits[item] < 600 for item in range(1, 21)), hits


def test_draws_are_deterministic_and_seed_dependent() -> None:
    a = [reservoir_slot("t", s, 4, seed=1) for s in range(5, 200)]
    assert a == [reservoir_slot("t", s, 4, seed=1) for s in range(5, 200)]
    assert a != [reservoir_slot("t", s, 4, seed=2) for s in range(5, 200)]


def test_bad_seen_is_rejected() -> None:
    with pytest.raises(ValueError, match="seen 0"):
        reservoir_slot("t", 0, 4, seed=1)


def test_sample_order_is_a_seeded_permutation() -> None:
    ids = [f"e{i}" for i in range(50)]
    order = sample_order(ids, 7)
    assert sorted(order) == sorted(ids)
    assert order == sample_order(list(reversed(ids)), 7)
    assert order != sample_order(ids, 8)
