"""One learner cycle end to end on local files: pending examples -> trained candidate -> gate ->
immutable version with lineage -> champion pointer -> model events; rejection of a candidate
trained on flipped labels; and recovery of a publication a crash interrupted."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from learner.batches import plan_batches
from learner.cycle import RECORDED, CycleContext, record, recover, run_cycle, step_budget
from learner.examples import Example, is_heldout
from learner.pending import OffsetRef
from schemas.tasks import TaskConfig
from tests.support.learning import Sent, make_ctx

GEN = TaskConfig.model_validate(
    {
        "name": "faq",
        "kind": "generation",
        "base_model": "tiny-llama",
        "max_seq_len": 64,
        "training": {"batch_size": 8, "max_steps": 4, "learning_rate": 1e-2, "holdout_percent": 25},
        "ewc": {"fisher_samples": 4},
        "gate": {"bootstrap_samples": 200, "min_heldout": 4},
    }
)


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


def _sft(n: int) -> Example:
    return Example(
        f"fb:r{n}:rating:-",
        "faq",
        "sft",
        prompt=(("user", f"When does order {n} ship?"),),
        text=f"Order {n} ships on Monday.",
        request_id=f"r{n}",
    )


def test_a_generation_cycle_publishes_a_version_that_explains_itself(
    tmp_path: Path, models_dir: Path
) -> None:
    sent = Sent()
    ctx = make_ctx(tmp_path, models_dir, sent)
    examples = [_sft(n) for n in range(24)]
    for n, example in enumerate(examples):
        ctx.pending.add([example], 25, OffsetRef("feedback.events", 0, 100 + n))
    trained = [e for e in examples if not is_heldout(e.example_id, 25)]

    result = run_cycle(GEN, ctx)

    assert result is not None and result.version == "1.0.0"
    manifest = ctx.store.verify("faq", "1.0.0")
    assert manifest.parent_version is None and manifest.kind == "generation"
    assert manifest.lineage.request_ids == sorted(e.request_id for e in trained)  # type: ignore[type-var]
    covered = {n for o in manifest.lineage.offsets for n in range(o.first, o.last + 1)}
    assert covered == {100 + n for n, e in enumerate(examples) if e in trained}
    assert manifest.configs["training"]["fisher_samples"] == 4  # type: ignore[index,call-overload]
    # The tiny model learns the answers: held-out loss drops, the general probe barely moves.
    assert manifest.gate.promoted and "95% lower bound" in manifest.gate.reason
    assert manifest.gate.numbers["target.n"] == len(examples) - len(trained)
    assert sent.types() == ["adapter_published", "adapter_promoted"]
    assert ctx.store.champion("faq").version == "1.0.0"  # type: ignore[union-attr]
    assert ctx.pending.stats("faq")[0] == 0  # every trainable example went into 1.0.0
    assert run_cycle(GEN, ctx) is None  # nothing new: no version


def _files_of(ctx: CycleContext, version: str, tmp_path: Path) -> Path:
    """A copy of a version's files without its manifest (what a writer hands the store)."""
    target = tmp_path / f"files-{version}-{len(list(tmp_path.iterdir()))}"
    shutil.copytree(
        ctx.store.root / "faq" / version, target, ignore=shutil.ignore_patterns("manifest.json")
    )
    return target


def test_recover_finishes_a_publication_interrupted_before_the_pointer_moved(
    tmp_path: Path, models_dir: Path
) -> None:
    ctx = make_ctx(tmp_path, models_dir, Sent())
    ctx.pending.add([_sft(n) for n in range(24)], 25)
    result = run_cycle(GEN, ctx)
    assert result is not None and result.promoted
    manifest = ctx.store.read_manifest("faq", result.version)

    # The same version, as a crash between "consumed + queued" and "pointer moved" leaves it:
    sent = Sent()
    fresh = make_ctx(tmp_path / "again", models_dir, sent)
    fresh.store.write_version(
        "faq",
        manifest.version,
        _files_of(ctx, manifest.version, tmp_path),
        manifest.model_dump(exclude={"files"}),
    )
    fresh.pending.add([_sft(n) for n in range(24)], 25)
    record(GEN, manifest, fresh)
    assert fresh.pending.version_state("faq", manifest.version) == RECORDED
    assert fresh.store.champion("faq") is None and fresh.pending.stats("faq")[0] == 0

    assert recover(fresh, [GEN]) == [f"faq@{manifest.version}"]
    assert fresh.store.champion("faq").version == manifest.version  # type: ignore[union-attr]
    assert sent.types() == ["adapter_published", "adapter_promoted"]
    assert recover(fresh, [GEN]) == []  # idempotent
    assert sent.types() == ["adapter_published", "adapter_promoted"]


def test_recover_records_a_version_written_before_a_crash(tmp_path: Path, models_dir: Path) -> None:
    ctx = make_ctx(tmp_path, models_dir, Sent())
    ctx.pending.add([_sft(n) for n in range(24)], 25)
    result = run_cycle(GEN, ctx)
    assert result is not None
    manifest = ctx.store.read_manifest("faq", result.version)
    sent = Sent()
    fresh = make_ctx(tmp_path / "again", models_dir, sent)
    fresh.store.write_version(
        "faq",
        manifest.version,
        _files_of(ctx, manifest.version, tmp_path),
        manifest.model_dump(exclude={"files"}),
    )
    fresh.pending.add([_sft(n) for n in range(24)], 25)

    assert recover(fresh, [GEN]) == [f"faq@{manifest.version}"]
    assert fresh.pending.stats("faq")[0] == 0  # its examples are not trained again
    assert sent.types() == ["adapter_published", "adapter_promoted"]


@pytest.mark.parametrize("batch_size", [1, 3, 4, 8, 16])
@pytest.mark.parametrize("ratio", [0.0, 0.1, 0.25, 0.3, 0.5, 0.7])
@pytest.mark.parametrize(("epochs", "max_steps"), [(1, 1), (1, 40), (2, 7), (3, 10)])
def test_every_example_within_the_budget_gets_a_step(
    batch_size: int, ratio: float, epochs: int, max_steps: int
) -> None:
    task = GEN.model_copy(
        update={
            "training": GEN.training.model_copy(
                update={"batch_size": batch_size, "epochs": epochs, "max_steps": max_steps}
            ),
            "replay": GEN.replay.model_copy(update={"ratio": ratio}),
        }
    )
    train = [_sft(n) for n in range(step_budget(task))]
    for replay in ([], [_sft(1000), _sft(1001)]):
        plan = plan_batches(
            train, replay, batch_size=batch_size, ratio=ratio, epochs=epochs,
            max_steps=max_steps, seed=0,
        )  # fmt: skip
        assert {e.example_id for step in plan for e in step} >= {e.example_id for e in train}


def test_an_update_waits_until_the_held_out_pool_can_show_a_gain(
    tmp_path: Path, models_dir: Path
) -> None:
    ctx = make_ctx(tmp_path, models_dir, Sent())
    ctx.pending.add([_sft(n) for n in range(24)], 25)
    waiting = GEN.model_copy(update={"gate": GEN.gate.model_copy(update={"min_heldout": 50})})
    before = ctx.pending.stats("faq")

    assert run_cycle(waiting, ctx) is None
    assert ctx.pending.stats("faq") == before and ctx.store.versions("faq") == []


def test_preference_pairs_the_gate_cannot_score_do_not_fill_the_held_out_pool(
    tmp_path: Path, models_dir: Path
) -> None:
    ctx = make_ctx(tmp_path, models_dir, Sent())
    pairs = [
        Example(f"fb:c{n}:correction:pref", "faq", "preference", prompt=_sft(n).prompt,
                text=f"Order {n} ships on Tuesday.", rejected=f"Order {n} ships on Monday.")
        for n in range(12)
    ]  # fmt: skip
    ctx.pending.add(pairs, 100)  # every pair held out: 12 >= min_heldout, none scorable
    ctx.pending.add([_sft(n) for n in range(100, 124)], 0)
    waiting = GEN.model_copy(update={"gate": GEN.gate.model_copy(update={"min_heldout": 10})})
    before = ctx.pending.stats("faq")

    assert len(ctx.pending.heldout("faq")) == 12
    assert run_cycle(waiting, ctx) is None
    assert ctx.pending.stats("faq") == before and ctx.store.versions("faq") == []


def _label(n: int, label: str) -> Example:
    return Example(
        f"fb:l{n}:label:-", "intent", "label", text=f"please {label} order {n}", label=label
    )


def test_a_new_label_set_starts_a_fresh_adapter_as_a_major_version(
    tmp_path: Path, models_dir: Path
) -> None:
    two = TaskConfig.model_validate(
        {
            "name": "intent",
            "kind": "classification",
            "base_model": "tiny-llama",
            "labels": ["refund", "ship"],
            "max_seq_len": 32,
            "training": {"batch_size": 8, "max_steps": 4, "learning_rate": 1e-2},
            "ewc": {"fisher_samples": 4},
            "gate": {"bootstrap_samples": 50, "min_heldout": 2},
        }
    )
    ctx = make_ctx(tmp_path, models_dir, Sent())
    ctx.pending.add([_label(n, ("refund", "ship")[n % 2]) for n in range(20)], 20)
    first = run_cycle(two, ctx)
    assert first is not None and first.version == "1.0.0"
    if ctx.store.champion("intent") is None:  # promoted or not, 2.0.0 has a parent
        ctx.store.set_champion("intent", "1.0.0")

    three = two.model_copy(update={"labels": ["refund", "ship", "cancel"]})
    ctx.pending.add([_label(n, ("refund", "ship", "cancel")[n % 3]) for n in range(20, 44)], 20)
    second = run_cycle(three, ctx)  # a 2-way head cannot continue as a 3-way one

    assert second is not None and second.version == "2.0.0"
    manifest = ctx.store.read_manifest("intent", "2.0.0")
    assert manifest.parent_version == "1.0.0" and manifest.configs["bump"] == "major"
    assert "ewc_penalty" not in manifest.metrics  # nothing of 1.0.0's weights to stay close to


def test_chat_examples_train_with_their_passages_and_the_lineage_names_the_records(
    tmp_path: Path, models_dir: Path
) -> None:
    texts = {
        "kb-ship#00000": "Parcels ship on Mondays and Thursdays from the Leipzig depot.",
        "kb-ship#00001": "Express parcels ship the same day when ordered before noon.",
    }
    asked: list[list[str]] = []

    def lookup(pks: Sequence[str]) -> dict[str, str]:
        asked.append(list(pks))
        return {pk: texts[pk] for pk in pks if pk in texts}

    def grounded(n: int) -> Example:  # kb-gone was deleted upstream since it was served
        return replace(_sft(n), passages=("kb-ship#00000", "kb-gone#00000", "kb-ship#00001"))

    examples = [grounded(n) for n in range(24)]
    task = GEN.model_copy(update={"max_seq_len": 256})  # 64 tokens leave the passages no room
    tokens = {}
    for name, passages in (("with", lookup), ("without", None)):
        ctx = replace(make_ctx(tmp_path / name, models_dir, Sent()), passages=passages)
        for n, example in enumerate(examples):
            ctx.pending.add([example], 25, OffsetRef("feedback.events", 0, 100 + n))
        result = run_cycle(task, ctx)
        assert result is not None
        manifest = ctx.store.verify("faq", result.version)
        tokens[name] = manifest.configs["training"]["tokens"]  # type: ignore[index,call-overload]
        records = manifest.lineage.record_ids
        assert records == (["kb-ship"] if passages else []), records
    assert asked == [["kb-gone#00000", "kb-ship#00000", "kb-ship#00001"]]  # once per update
    assert tokens["with"] > tokens["without"]  # type: ignore[operator]
