"""Token choice of a generation: greedy at 0, seeded sampling above, finite at any temperature."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from serving.generation import pick_token

LOGITS = torch.tensor([0.5, 3.0, 2.9, -1.0, 40.0, 39.5])  # (vocab,)


@pytest.mark.parametrize("temperature", [1e-320, 1e-300, 1e-30, 1e-6])
def test_a_tiny_temperature_samples_the_argmax_instead_of_failing(temperature: float) -> None:
    # logits / temperature overflows to inf; unshifted, softmax gives NaN and sampling raises
    picks = {pick_token(LOGITS, temperature, torch.Generator().manual_seed(s)) for s in range(20)}
    assert picks == {4}


def test_temperature_zero_is_argmax_and_sampling_follows_the_distribution() -> None:
    assert pick_token(LOGITS, 0.0, None) == 4
    counts = Counter(pick_token(LOGITS, 1.0, torch.Generator().manual_seed(s)) for s in range(400))
    # softmax: token 4 ~0.62, token 5 ~0.38, the rest ~0
    assert set(counts) == {4, 5} and 200 < counts[4] < 300
    same = [pick_token(LOGITS, 2.0, torch.Generator().manual_seed(7)) for _ in range(3)]
    assert len(set(same)) == 1
