"""One incremental update end to end on tiny models: reproducible bytes, EWC from the champion,
online Fisher, DPO wiring, and a classification update that learns a clear signal."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from learner.errors import TrainingError
from learner.evaluation import Evaluator
from learner.ewc import load_ewc_state
from learner.examples import Example
from learner.update import EWC_STATE_NAME, UpdateInputs, run_update
from lorafeed.task_models import ADAPTER_FILES, resolve_base_model
from schemas.tasks import TaskConfig

GEN = TaskConfig.model_validate(
    {
        "name": "faq",
        "kind": "generation",
        "base_model": "tiny-llama",
        "max_seq_len": 64,
        "training": {"batch_size": 4, "max_steps": 3, "learning_rate": 1e-2},
        "ewc": {"fisher_samples": 6, "lambda": 100.0, "decay": 0.5},
    }
)
FILES = (*ADAPTER_FILES, EWC_STATE_NAME)


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def tiny_dir(models_dir: Path) -> Path:
    return resolve_base_model("tiny-llama", models_dir)


def sft(n: int) -> Example:
    return Example(f"e{n}", "faq", "sft", prompt=(("user", f"When does order {n} ship?"),),
                   text=f"Order {n} ships on Monday.")  # fmt: skip


def update(task: TaskConfig, base: Path, champion: Path | None, out: Path, **kw: object):  # type: ignore[no-untyped-def]
    examples = kw.pop("train", [sft(n) for n in range(10)])
    replay = kw.pop("replay", [sft(100), sft(101)])
    inputs = UpdateInputs(task, base, champion, examples, replay)  # type: ignore[arg-type]
    return run_update(inputs, out, **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def champion(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("champion")
    update(GEN, tiny_dir, None, out)
    return out


def test_the_same_seed_writes_the_same_bytes(
    tiny_dir: Path, champion: Path, tmp_path: Path
) -> None:
    steps: list[tuple[int, int]] = []
    outcome = update(GEN, tiny_dir, None, tmp_path, progress=lambda s, n: steps.append((s, n)))
    for name in FILES:
        assert (tmp_path / name).read_bytes() == (champion / name).read_bytes(), name
    assert outcome.steps == 3 and len(outcome.losses) == 3
    assert steps == [(1, 3), (2, 3), (3, 3)]
    assert outcome.examples == 11 and outcome.tokens > 0
    assert outcome.fisher_samples == 6
    assert outcome.ewc_penalty is None  # no champion, nothing to anchor to
    assert "q_proj" in outcome.target_modules
    other = GEN.model_copy(update={"training": GEN.training.model_copy(update={"seed": 1})})
    update(other, tiny_dir, None, tmp_path / "other")
    model = "adapter_model.safetensors"
    assert (tmp_path / "other" / model).read_bytes() != (champion / model).read_bytes()


def test_continuing_from_a_champion_adds_the_ewc_penalty(
    tiny_dir: Path, champion: Path, tmp_path: Path
) -> None:
    outcome = update(GEN, tiny_dir, champion, tmp_path)
    assert outcome.ewc_penalty is not None and outcome.ewc_penalty > 0.0
    old_fisher, old_anchor = load_ewc_state(champion / EWC_STATE_NAME)
    new_fisher, new_anchor = load_ewc_state(tmp_path / EWC_STATE_NAME)
    assert set(new_fisher) == set(old_fisher)
    for name, value in new_fisher.items():  # online: decay * old + new, the new part >= 0
        assert bool((value >= 0.5 * old_fisher[name] - 1e-12).all()), name
    assert any(not torch.equal(new_anchor[n], old_anchor[n]) for n in new_anchor)


def test_lambda_zero_trains_without_ewc_or_fisher(
    tiny_dir: Path, champion: Path, tmp_path: Path
) -> None:
    task = GEN.model_copy(update={"ewc": GEN.ewc.model_copy(update={"lambda_": 0.0})})
    outcome = update(task, tiny_dir, champion, tmp_path)
    assert outcome.ewc_penalty is None and outcome.fisher_samples == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(ADAPTER_FILES)


def test_gradient_checkpointing_gives_the_same_losses(tiny_dir: Path, tmp_path: Path) -> None:
    plain = update(GEN, tiny_dir, None, tmp_path / "plain")
    training = GEN.training.model_copy(update={"gradient_checkpointing": True})
    checkpointed = update(GEN.model_copy(update={"training": training}), tiny_dir, None, tmp_path)
    assert checkpointed.losses == pytest.approx(plain.losses, rel=1e-5)


def _pairs(count: int, rejected: str) -> list[Example]:
    """`count` preference pairs p0.. on one question: chosen "Monday.", `rejected` rejected."""
    return [
        Example(f"p{n}", "faq", "preference", prompt=(("user", "When?"),), text="Monday.",
                rejected=rejected)
        for n in range(count)
    ]  # fmt: skip


def test_dpo_runs_with_and_without_sft_examples(tiny_dir: Path, tmp_path: Path) -> None:
    training = GEN.training.model_copy(update={"preference_loss": "dpo", "dpo_weight": 1.0})
    task = GEN.model_copy(update={"training": training})
    pairs = _pairs(3, rejected="Never, sorry.")
    plain = update(GEN, tiny_dir, None, tmp_path / "plain")
    mixed = update(
        task, tiny_dir, None, tmp_path / "mixed", train=[sft(n) for n in range(10)] + pairs
    )
    assert mixed.losses[0] == pytest.approx(plain.losses[0] + 0.6931, abs=1e-3)  # + log 2
    only = update(task, tiny_dir, None, tmp_path / "only", train=pairs, replay=[])
    assert only.steps == 1 and only.losses[0] == pytest.approx(0.6931, abs=1e-3)
    assert only.fisher_samples == 0


def test_the_outcome_names_only_the_examples_some_step_used(tiny_dir: Path, tmp_path: Path) -> None:
    # batch 4, 3 steps, replay 0.25: each step takes 3 new examples, so 9 of 10 fit; the 5
    # preference pairs make 2 pair batches and both are reached.
    training = GEN.training.model_copy(update={"preference_loss": "dpo"})
    task = GEN.model_copy(update={"training": training})
    pairs = _pairs(5, rejected="Never.")
    outcome = update(
        task, tiny_dir, None, tmp_path / "out", train=[sft(n) for n in range(10)] + pairs
    )
    plain_used = {i for i in outcome.trained_ids if i.startswith("e")}
    assert len(plain_used) == 9 and "e100" not in outcome.trained_ids  # replay is not "trained"
    assert {i for i in outcome.trained_ids if i.startswith("p")} == {f"p{n}" for n in range(5)}
    short = task.model_copy(update={"training": training.model_copy(update={"max_steps": 1})})
    one = update(short, tiny_dir, None, tmp_path / "one", train=[sft(0)] + pairs, replay=[])
    assert one.trained_ids == {"e0", "p0", "p1", "p2", "p3"}  # one step reaches one pair batch


def test_unusable_inputs_are_refused(tiny_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match="no trainable examples among 0"):
        update(GEN, tiny_dir, None, tmp_path, train=[])
    inputs = UpdateInputs(GEN, tiny_dir, None, [sft(1)], [], dtype="float8")
    with pytest.raises(TrainingError, match="dtype 'float8'"):
        run_update(inputs, tmp_path)


def labelled(n: int, rng: random.Random) -> Example:
    label = ("refund", "shipping")[n % 2]
    stems = {
        "refund": ["I want my money back for", "Please refund the broken", "Refund my purchase of"],
        "shipping": ["Where is my parcel with", "When will you ship the", "Track the delivery of"],
    }[label]
    return Example(f"c{n}", "intent", "label", text=f"{rng.choice(stems)} item {n}", label=label)


def test_a_classification_update_learns_a_clear_signal(models_dir: Path, tmp_path: Path) -> None:
    task = TaskConfig.model_validate(
        {
            "name": "intent",
            "kind": "classification",
            "base_model": "all-minilm-l6-v2",
            "labels": ["refund", "shipping"],
            "training": {"batch_size": 8, "max_steps": 8, "learning_rate": 3e-3},
            "ewc": {"fisher_samples": 4},
        }
    )
    rng = random.Random(0)
    train = [labelled(n, rng) for n in range(48)]
    heldout = [labelled(n, rng) for n in range(100, 132)]
    base = resolve_base_model(task.base_model, models_dir)
    outcome = run_update(UpdateInputs(task, base, None, train, []), tmp_path)
    evaluator = Evaluator(task, base)
    before = evaluator.scores(None, heldout)
    after = evaluator.scores(tmp_path, heldout)
    assert outcome.steps == 6 and outcome.fisher_samples == 4
    assert after.value >= 0.9 > before.value
