"""The promotion gate on a real classifier (MiniLM + LoRA): a candidate trained on clean labels
is promoted over the base model; one trained on flipped labels is rejected and the champion stays.
"""

from __future__ import annotations

import random
from pathlib import Path

from learner.cycle import run_cycle
from learner.examples import Example
from schemas.tasks import TaskConfig
from tests.support.learning import Sent, make_ctx

FRAUD = TaskConfig.model_validate(
    {
        "name": "fraud",
        "kind": "classification",
        "base_model": "all-minilm-l6-v2",
        "labels": ["fraud", "legit"],
        "max_seq_len": 32,
        "training": {
            "batch_size": 16,
            "max_steps": 12,
            "learning_rate": 3e-3,
            "epochs": 3,
            "holdout_percent": 30,
        },
        "ewc": {"fisher_samples": 8},
        "replay": {"ratio": 0.0},
        "gate": {"bootstrap_samples": 300, "max_forgetting": 0.05},
    }
)


def _fraud_examples(start: int, count: int, seed: int, flip: bool = False) -> list[Example]:
    rng = random.Random(seed)
    out = []
    for n in range(start, start + count):
        fraud = rng.random() < 0.5
        amount = rng.randint(5000, 9000) if fraud else rng.randint(5, 90)
        text = (
            f"wire transfer of {amount} dollars to a new overseas account at 3am"
            if fraud
            else f"coffee shop purchase of {amount} dollars near home"
        )
        label = "fraud" if fraud != flip else "legit"
        out.append(Example(f"fb:t{n}:label:-", "fraud", "label", text=text, label=label))
    return out


def test_a_clean_classifier_is_promoted_and_one_trained_on_flipped_labels_is_rejected(
    tmp_path: Path,
) -> None:
    sent = Sent()
    ctx = make_ctx(tmp_path, tmp_path / "models", sent)
    ctx.pending.add(_fraud_examples(0, 70, seed=1), 30)
    first = run_cycle(FRAUD, ctx)
    assert first is not None and first.promoted, first
    assert ctx.store.champion("fraud").version == first.version  # type: ignore[union-attr]

    ctx.pending.add(_fraud_examples(1000, 50, seed=2, flip=True), 30)
    second = run_cycle(FRAUD, ctx)

    assert second is not None and not second.promoted, second
    assert second.reason.startswith("rejected")
    assert ctx.store.champion("fraud").version == first.version  # type: ignore[union-attr]
    assert sent.types()[-2:] == ["adapter_published", "adapter_rejected"]
    assert ctx.store.read_manifest("fraud", second.version).parent_version == first.version
