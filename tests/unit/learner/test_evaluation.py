"""The evaluator scores candidate and champion on one loaded base, paired by example, and the
probe texts and small metrics have known answers."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from learner.errors import TrainingError
from learner.evaluation import EvalScores, Evaluator, general_probe_texts, macro_f1, token_f1
from learner.examples import Example
from learner.update import UpdateInputs, run_update
from lorafeed.task_models import resolve_base_model
from schemas.tasks import TaskConfig

GEN = TaskConfig.model_validate(
    {
        "name": "faq",
        "kind": "generation",
        "base_model": "tiny-llama",
        "max_seq_len": 64,
        "training": {"batch_size": 4, "max_steps": 6, "epochs": 3, "learning_rate": 2e-2},
        "ewc": {"lambda": 0.0},
    }
)


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def sft(n: int) -> Example:
    return Example(f"e{n}", "faq", "sft", prompt=(("user", f"When does order {n} ship?"),),
                   text="The parcel ships on Monday.")  # fmt: skip


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """The tiny base dir and two adapters: one trained on the answers, one barely trained."""
    base = resolve_base_model("tiny-llama", tmp_path_factory.mktemp("models"))
    trained = tmp_path_factory.mktemp("trained")
    run_update(UpdateInputs(GEN, base, None, [sft(n) for n in range(8)], []), trained)
    weak_training = GEN.training.model_copy(update={"max_steps": 1, "learning_rate": 1e-4})
    weak = tmp_path_factory.mktemp("weak")
    task = GEN.model_copy(update={"training": weak_training})
    run_update(UpdateInputs(task, base, None, [sft(n) for n in range(8)], []), weak)
    return base, trained, weak


def test_generation_scores_are_paired_and_the_base_is_unchanged(
    setup: tuple[Path, Path, Path],
) -> None:
    base_dir, trained, weak = setup
    evaluator = Evaluator(GEN, base_dir)
    examples = [sft(n) for n in range(20, 25)]
    before = evaluator.scores(None, examples)
    candidate = evaluator.scores(trained, examples, match=True)
    champion = evaluator.scores(weak, examples)
    after = evaluator.scores(None, examples)
    assert before == after  # attaching adapters leaves the bare base as it was
    assert candidate.metric == "neg_loss" and candidate.higher_is_better
    assert len(candidate.per_example) == len(champion.per_example) == 5
    assert candidate.value == pytest.approx(sum(candidate.per_example) / 5)
    assert candidate.value > champion.value > before.value - 0.05
    assert 0.0 <= candidate.extra["match"] <= 1.0 and "match" not in champion.extra
    assert evaluator.scores(trained, examples).per_example == candidate.per_example


def test_older_adapters_are_evicted_and_reload_the_same(
    setup: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    base_dir, trained, weak = setup
    copies = [shutil.copytree(weak, tmp_path / str(n)) for n in range(3)]
    evaluator = Evaluator(GEN, base_dir)
    examples = [sft(30)]
    first = evaluator.scores(trained, examples)
    for adapter in copies:  # the fourth distinct adapter evicts the first
        evaluator.scores(adapter, examples)
    assert len(evaluator.model.peft_config) == 3
    assert evaluator.scores(trained, examples) == first


def test_the_probe_reports_perplexity_per_text(setup: tuple[Path, Path, Path]) -> None:
    base_dir, trained, _weak = setup
    evaluator = Evaluator(GEN, base_dir)
    texts = general_probe_texts()[:3]
    probe = evaluator.probe(trained, texts)
    assert probe.metric == "perplexity" and not probe.higher_is_better
    assert len(probe.per_example) == 3 and all(p > 1.0 for p in probe.per_example)
    assert min(probe.per_example) <= probe.value <= max(probe.per_example)


def test_classification_scores_accuracy_and_macro_f1(tmp_path: Path) -> None:
    task = TaskConfig(
        name="intent", kind="classification", base_model="all-minilm-l6-v2", labels=["a", "b"]
    )
    evaluator = Evaluator(task, resolve_base_model(task.base_model, tmp_path))
    examples = [
        Example(f"l{n}", "intent", "label", text=f"text number {n}", label="ab"[n % 2])
        for n in range(6)
    ]
    scores = evaluator.scores(None, examples)
    assert scores.metric == "accuracy" and set(scores.per_example) <= {0.0, 1.0}
    assert scores.value == pytest.approx(sum(scores.per_example) / 6)
    assert 0.0 <= scores.extra["macro_f1"] <= 1.0
    with pytest.raises(TrainingError, match="needs a causal LM"):
        evaluator.probe(None, ["text"])
    with pytest.raises(TrainingError, match="no examples"):
        evaluator.scores(None, [])


def test_probe_texts_are_fixed_english_paragraphs() -> None:
    texts = general_probe_texts()
    assert texts == general_probe_texts() and len(texts) >= 8
    assert all(200 <= len(text) <= 600 and "\n" not in text for text in texts)
    assert any("scheduler" in text or "debugger" in text for text in texts)


def test_token_f1_and_macro_f1_known_answers() -> None:
    assert token_f1("It ships on Monday.", "it ships on monday") == 1.0
    assert token_f1("Monday", "It ships on Monday") == pytest.approx(2 * 1 * 0.25 / 1.25)
    assert token_f1("", "") == 1.0 and token_f1("x", "") == 0.0 and token_f1("a", "b") == 0.0
    assert macro_f1([0, 0, 1, 1], [0, 0, 1, 1], 2) == 1.0
    assert macro_f1([0, 0, 1, 1], [0, 0, 0, 0], 2) == pytest.approx((2 * 2 / (4 + 2) + 0) / 2)


def test_eval_scores_default_extra_is_empty() -> None:
    assert EvalScores("accuracy", 1.0, (1.0,), True).extra == {}
