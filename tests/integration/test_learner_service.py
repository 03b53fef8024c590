"""The learner as a real process on the real stack: feedback and knowledge in, gated adapter
versions out (store, champion pointer, model.events, feedback.dlq, pending SQLite), through
redelivery, bad input, record deletion, crashes at every failpoint, a standby taking over, a
DeepSeek-V3 base, and operator rollback / pin from the CLI. Tiny models, a few steps each."""

from __future__ import annotations

import hashlib
import json
import signal
from pathlib import Path

import psutil
import pytest

from learner.examples import is_heldout
from lorafeed.stores import make_redis
from schemas import DeadLettered, RecordCleaned, Topic
from schemas.audit import AuditRecorded
from schemas.feedback import FeedbackReceived
from schemas.manifest import manifest_sha256
from tests.support.learner_proc import (
    NOW,
    LearnerScenario,
    assert_consistent,
    rating,
    split_ids,
    task_table,
    unsent_outbox,
)
from tests.support.stack import RunningStack
from tests.support.workers import running, wait_for

pytestmark = pytest.mark.integration

TIMEOUT_S = 150


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


def _feedback(task: str, train: int, heldout: int, start: int = 0) -> list[FeedbackReceived]:
    """Ratings and corrections teaching "Order N ships on Monday."; exactly `train` of their
    sft examples fall in the train split (the trigger's count) and `heldout` in the gate's."""
    numbers = split_ids(lambda n: f"fb:{task}-{n}:sft:-", train, heldout, start=start)
    events = []
    for i, n in enumerate(numbers):
        question, answer = f"When does order {n} ship?", f"Order {n} ships on Monday."
        if i % 2:
            events.append(rating(f"{task}-{n}", task, question, answer))
        else:
            events.append(
                rating(
                    f"{task}-{n}",
                    task,
                    question,
                    "I do not know.",
                    kind="correction",
                    rating=None,
                    correction=answer,
                )
            )
    return events


def _trained(events: list[FeedbackReceived]) -> list[str]:
    return [e.request_id for e in events if not is_heldout(f"fb:{e.request_id}:sft:-", 25)]


def _wait_verdict(world: LearnerScenario, task: str, version: str) -> list[str]:
    """The model event types of task@version, once its verdict is on model.events."""

    def verdict() -> list[str] | None:
        types = [e.type for e in world.model_events(task) if getattr(e, "version", None) == version]
        return types if {"adapter_promoted", "adapter_rejected"} & set(types) else None

    wait_for(lambda: version in world.store.versions(task), TIMEOUT_S, f"{task}@{version}")
    return wait_for(verdict, TIMEOUT_S, f"the verdict on {task}@{version}")


def test_feedback_becomes_a_version_with_lineage_and_redelivery_adds_nothing(
    stack: RunningStack, tmp_path: Path, models_dir: Path
) -> None:
    world = LearnerScenario.create(stack, tmp_path, models_dir, {"chat": task_table()})
    events = _feedback("chat", train=12, heldout=4)
    positions = dict(
        zip((e.request_id for e in events), world.send(Topic.FEEDBACK_EVENTS, events), strict=True)
    )
    trained = _trained(events)
    with running() as procs:
        procs["learner"], _ = world.spawn()
        types = _wait_verdict(world, "chat", "1.0.0")

        manifest = world.store.verify("chat", "1.0.0")
        assert manifest.parent_version is None
        assert manifest.lineage.request_ids == sorted(trained)
        offsets = manifest.lineage.offsets
        assert {o.topic for o in offsets} == {f"{world.prefix}feedback.events"}
        covered = {(o.partition, n) for o in offsets for n in range(o.first, o.last + 1)}
        assert covered == {positions[rid] for rid in trained}
        assert types == ["adapter_published", "adapter_promoted"], manifest.gate.reason
        assert world.store.champion("chat").manifest_sha256 == manifest_sha256(manifest)  # type: ignore[union-attr]
        rows = world.examples("chat")
        assert {eid: r[1:4] for eid, r in rows.items() if r[2] == "consumed"} == {
            f"fb:{rid}:sft:-": ("train", "consumed", "1.0.0") for rid in trained
        }
        held = [f"fb:{e.request_id}:sft:-" for e in events if e.request_id not in trained]
        assert [rows[eid][1:3] for eid in held] == [("heldout", "pending")] * 4

        # The same events again: the store counts each once and nothing new trains.
        again = world.send(Topic.FEEDBACK_EVENTS, events)
        wait_for(lambda: world.committed(Topic.FEEDBACK_EVENTS, again), 60, "redelivery read")
        assert world.examples("chat") == rows
        assert world.store.versions("chat") == ["1.0.0"]
        assert procs["learner"].is_alive()


def test_invalid_feedback_is_dead_lettered_with_its_reason_and_the_learner_goes_on(
    stack: RunningStack, tmp_path: Path, models_dir: Path
) -> None:
    tasks = {
        "chat": task_table(min_examples=1000),
        "intent": task_table(
            min_examples=1000, kind="classification", labels=["billing", "shipping"]
        ),
    }
    world = LearnerScenario.create(stack, tmp_path, models_dir, tasks)
    good = json.loads(rating("x", "chat", "Where is my parcel?", "On its way.").model_dump_json())
    bad: dict[str, tuple[bytes, str]] = {
        "unknown-task": (_json(good, request_id="unknown-task", task="billing"), "unknown_task"),
        "off-label": (
            _json(
                good,
                request_id="off-label",
                task="intent",
                kind="label",
                rating=None,
                label="refund",
                input="I was charged twice",
            ),
            "label_not_in_set",
        ),
        "label-on-chat": (
            _json(good, request_id="label-on-chat", kind="label", rating=None, label="billing"),
            "kind_not_for_task",
        ),
        "correction-on-intent": (
            _json(
                good,
                request_id="correction-on-intent",
                task="intent",
                kind="correction",
                rating=None,
                correction="billing",
                input="I was charged twice",
            ),
            "kind_not_for_task",
        ),
        "not-json": (b'{"schema_version": 1, "request_id": ', "not_json"),
        "missing-field": (
            json.dumps({k: v for k, v in good.items() if k != "output"}).encode(),
            "invalid_field",
        ),
        "future-schema": (
            _json(good, request_id="future-schema", schema_version=7),
            "schema_version",
        ),
        "extra-field": (_json(good, request_id="extra-field", colour="red"), "unknown_field"),
    }
    positions = world.produce(Topic.FEEDBACK_EVENTS, [(k, v) for k, (v, _r) in bad.items()])
    with running() as procs:
        procs["learner"], _ = world.spawn()

        def dead() -> dict[str, DeadLettered] | None:
            letters = {
                d.key: d
                for d in world.scenario.read_all(Topic.FEEDBACK_DLQ)
                if isinstance(d, DeadLettered)
            }
            return letters if set(bad) <= set(letters) else None

        letters = wait_for(dead, TIMEOUT_S, "every bad feedback event dead-lettered")
        assert {k: letters[k].reason.value for k in bad} == {k: r for k, (_v, r) in bad.items()}
        for (key, (value, _reason)), (partition, offset) in zip(
            bad.items(), positions, strict=True
        ):
            letter = letters[key]
            assert letter.original_bytes() == value
            assert (letter.partition, letter.offset) == (partition, offset)
            assert letter.source_topic == f"{world.prefix}feedback.events"
        assert "refund" in letters["off-label"].detail

        # Still consuming: a valid event after the bad ones is stored.
        world.send(Topic.FEEDBACK_EVENTS, [rating("after", "chat", "Hi?", "Hello.")])
        wait_for(lambda: "fb:after:sft:-" in world.examples("chat"), 60, "the good event stored")
        assert len(world.scenario.read_all(Topic.FEEDBACK_DLQ)) == len(bad)
        assert procs["learner"].is_alive()


def _json(base: dict, **changes: object) -> bytes:
    return json.dumps(base | changes).encode()


def _record(
    record_id: str, source: str, question: str = "", answer: str = "", op: str = "upsert"
) -> RecordCleaned:
    text = f"{question}\n{answer}" if op == "upsert" else ""
    return RecordCleaned(
        schema_version=1,
        record_id=record_id,
        op=op,
        source=source,  # type: ignore[arg-type]
        content_type="text/plain",
        text=text,
        metadata={"question": question, "answer": answer} if op == "upsert" else {},
        occurred_at=NOW,
        content_sha256=hashlib.sha256(text.encode()).hexdigest(),
        cleaned_at=NOW,
    )


def _faq(
    source: str, template: tuple[str, str], train: int, heldout: int, start: int = 0
) -> list[RecordCleaned]:
    numbers = split_ids(lambda n: f"rec:{source}-{n}:0", train, heldout, start=start)
    question, answer = template
    return [
        _record(f"{source}-{n}", source, question.format(n=n), answer.format(n=n)) for n in numbers
    ]


def _record_trained(records: list[RecordCleaned]) -> list[str]:
    return sorted(r.record_id for r in records if not is_heldout(f"rec:{r.record_id}:0", 25))


def test_knowledge_records_train_bump_minor_for_a_new_source_and_deletes_purge(
    stack: RunningStack, tmp_path: Path, models_dir: Path
) -> None:
    task = task_table(min_examples=8, knowledge_sources=["kb", "manual"])
    world = LearnerScenario.create(stack, tmp_path, models_dir, {"help": task})
    kb = _faq("kb", ("When does order {n} ship?", "Order {n} ships on Monday."), 8, 3)
    manual = _faq(
        "manual", ("How do I reset router {n}?", "Hold the reset button of router {n}."), 8, 3
    )
    with running() as procs:
        procs["learner"], _ = world.spawn()
        world.send(Topic.RECORDS_CLEAN, kb + [_record("x-1", "elsewhere", "Q?", "A.")])
        assert _wait_verdict(world, "help", "1.0.0")[1] == "adapter_promoted"
        first = world.store.verify("help", "1.0.0")
        assert first.lineage.record_ids == _record_trained(kb)
        assert first.lineage.knowledge_sources == ["kb"]
        assert first.lineage.request_ids == [] and first.configs["bump"] == "major"

        world.send(Topic.RECORDS_CLEAN, manual)
        _wait_verdict(world, "help", "1.1.0")
        second = world.store.verify("help", "1.1.0")
        assert second.parent_version == "1.0.0" and second.configs["bump"] == "minor"
        assert second.lineage.record_ids == _record_trained(manual)
        assert second.lineage.knowledge_sources == ["kb", "manual"]
        assert "rec:x-1:0" not in world.examples("help")  # not a knowledge source of "help"

        # A late record waits (below the trigger); deleting it and a trained record purges both.
        late = _faq(
            "kb", ("When does order {n} ship?", "Order {n} ships on Monday."), 1, 0, start=500
        )[0]
        world.send(Topic.RECORDS_CLEAN, [late])
        wait_for(lambda: f"rec:{late.record_id}:0" in world.examples("help"), 60, "late stored")
        gone = first.lineage.record_ids[0]
        world.send(
            Topic.RECORDS_CLEAN,
            [_record(late.record_id, "kb", op="delete"), _record(gone, "kb", op="delete")],
        )

        def purged() -> bool:
            rows = world.examples("help")
            return all(rows[f"rec:{r}:0"][2] == "purged" for r in (late.record_id, gone))

        wait_for(purged, 60, "the deleted records' examples purged")
        assert not any(gone in eid for eid in world.replay_ids("help"))
        assert world.cli("adapters", "affected", gone).stdout.split() == ["help@1.0.0"]
        assert "no version" in world.cli("adapters", "affected", late.record_id).stdout
        assert world.store.versions("help") == ["1.0.0", "1.1.0"]


FAILPOINTS = [
    "learner.mid_training",
    "adapter_store.before_rename",
    "adapter_store.after_rename",
    "learner.after_consume",
    "learner.after_pointer",
]


def _crash_state(world: LearnerScenario, point: str) -> None:
    """What the store and pending SQLite hold right after the crash at `point`."""
    store, rows = world.store, world.examples("chat")
    consumed = {r[3] for r in rows.values() if r[2] == "consumed"}
    task_dir = store.root / "chat"
    temps = [p.name for p in task_dir.glob(".tmp-*")] if task_dir.exists() else []
    if point == "learner.mid_training":
        assert store.versions("chat") == [] and not (task_dir / ".claims").exists()
    elif point == "adapter_store.before_rename":
        assert store.versions("chat") == [] and temps and temps[0].startswith(".tmp-1.0.0-")
    elif point == "adapter_store.after_rename":
        assert store.versions("chat") == ["1.0.0"] and consumed == set()
    else:
        assert consumed == {"1.0.0"} and len(unsent_outbox(world)) == 2
        champion = store.champion("chat")
        assert (champion is not None) == (point == "learner.after_pointer")


def test_a_crash_at_each_failpoint_leaves_one_consistent_version_after_restart(
    stack: RunningStack, tmp_path: Path, models_dir: Path
) -> None:
    worlds = {
        point: LearnerScenario.create(stack, tmp_path / point, models_dir, {"chat": task_table()})
        for point in FAILPOINTS
    }
    with running() as procs:
        crashing = {}
        for point, world in worlds.items():  # all at once: the waits overlap
            world.send(Topic.FEEDBACK_EVENTS, _feedback("chat", train=12, heldout=4))
            procs[f"crash-{point}"], crashing[point] = world.spawn(
                "crashing", LORAFEED_FAILPOINT=point
            )
        for point, popen in crashing.items():
            assert popen.wait(TIMEOUT_S) == -signal.SIGKILL, f"no crash at {point}"
            _crash_state(worlds[point], point)
        for point, world in worlds.items():
            procs[f"restart-{point}"], _ = world.spawn("restarted")
        for point, world in worlds.items():
            versions = assert_consistent(world, "chat", timeout_s=TIMEOUT_S)
            expected = ["2.0.0"] if point == "adapter_store.before_rename" else ["1.0.0"]
            assert versions == expected, point
            assert sum(r[2] == "consumed" for r in world.examples("chat").values()) == 12


def _lock_holder(stack: RunningStack, world: LearnerScenario, task: str) -> str | None:
    value = make_redis(stack.redis_url).get(f"lorafeed:learner:lock:{world.prefix}{task}")
    return None if value is None else value.decode() if isinstance(value, bytes) else str(value)


def test_a_standby_learner_takes_over_when_the_active_one_is_killed(
    stack: RunningStack, tmp_path: Path, models_dir: Path
) -> None:
    world = LearnerScenario.create(stack, tmp_path, models_dir, {"chat": task_table()})
    with running() as procs:
        procs["a"], _ = world.spawn("a", LEARNER_OWNER="learner-a", LEARNER_LOCK_TTL_S="5")
        wait_for(lambda: _lock_holder(stack, world, "chat") == "learner-a", 60, "a holds the lock")
        procs["b"], _ = world.spawn("b", LEARNER_OWNER="learner-b", LEARNER_LOCK_TTL_S="5")
        wait_for(lambda: "learner learner-b: tasks" in world.log(procs["b"]), 60, "b started")

        world.send(Topic.FEEDBACK_EVENTS, _feedback("chat", train=12, heldout=4))
        _wait_verdict(world, "chat", "1.0.0")
        assert "training chat" in world.log(procs["a"])
        assert "training chat" not in world.log(procs["b"])
        assert _lock_holder(stack, world, "chat") == "learner-a"

        psutil.Process(procs["a"].pid).kill()
        world.send(Topic.FEEDBACK_EVENTS, _feedback("chat", train=12, heldout=4, start=1000))
        _wait_verdict(world, "chat", "1.0.1")
        assert "training chat" in world.log(procs["b"])
        assert _lock_holder(stack, world, "chat") == "learner-b"
        assert world.store.read_manifest("chat", "1.0.1").parent_version == "1.0.0"
        assert assert_consistent(world, "chat", timeout_s=30) == ["1.0.0", "1.0.1"]


def test_a_deepseek_v3_update_is_published_and_loads_and_changes_the_output(
    stack: RunningStack, tmp_path: Path, models_dir: Path
) -> None:
    import torch

    from lorafeed.task_catalog import load_catalog
    from lorafeed.task_models import load_base, open_adapter, resolve_base_model

    table = task_table("tiny-deepseek-v3", training={"learning_rate": 0.05})
    world = LearnerScenario.create(stack, tmp_path, models_dir, {"ds": table})
    world.send(Topic.FEEDBACK_EVENTS, _feedback("ds", train=12, heldout=4))
    with running() as procs:
        procs["learner"], _ = world.spawn()
        _wait_verdict(world, "ds", "1.0.0")
    manifest = world.store.verify("ds", "1.0.0")
    assert manifest.base_model_id == "tiny-deepseek-v3"
    assert {"q_b_proj", "kv_b_proj"} <= set(manifest.lora.target_modules or [])  # MLA

    task = load_catalog(world.root / "tasks.toml").task("ds")
    base, tokenizer = load_base(task, resolve_base_model("tiny-deepseek-v3", models_dir))
    assert type(base).__name__ == "DeepseekV3ForCausalLM"
    prompt = tokenizer("When does order 7 ship?", return_tensors="pt")

    def run(model: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            logits = model(**prompt).logits
            out = model.generate(
                **prompt, max_new_tokens=8, do_sample=False, pad_token_id=tokenizer.pad_token_id
            )
        return logits, out[0, prompt["input_ids"].shape[1] :]

    base_logits, base_tokens = run(base)
    adapted = open_adapter(task, base, world.store.root / "ds" / "1.0.0", trainable=False)
    new_logits, new_tokens = run(adapted)
    assert len(new_tokens) > 0 and torch.isfinite(new_logits).all()
    assert (new_logits - base_logits).abs().max() > 1e-3
    assert not torch.equal(new_tokens, base_tokens)


def test_operators_roll_back_list_show_pin_and_unpin_from_the_cli(
    stack: RunningStack, tmp_path: Path, models_dir: Path
) -> None:
    world = LearnerScenario.create(stack, tmp_path, models_dir, {"chat": task_table()})
    world.send(Topic.FEEDBACK_EVENTS, _feedback("chat", train=12, heldout=4))
    with running() as procs:
        procs["learner"], _ = world.spawn()
        assert _wait_verdict(world, "chat", "1.0.0")[1] == "adapter_promoted"

        world.cli("adapters", "rollback", "chat", "--actor", "ops-1", "--reason", "bad answers")
        assert world.store.champion("chat") is None
        pin = world.store.pinned("chat")
        assert pin is not None and pin.version is None and pin.actor == "ops-1"
        rolled = [e for e in world.model_events("chat") if e.type == "adapter_rolled_back"]
        assert [(e.from_version, e.to_version, e.automatic) for e in rolled] == [  # type: ignore[attr-defined]
            ("1.0.0", None, False)
        ]
        listed = world.cli("adapters", "list", "chat").stdout
        assert "1.0.0" in listed and "promoted" in listed and "champion" not in listed
        shown = json.loads(world.cli("adapters", "show", "chat", "1.0.0", "--json").stdout)
        assert shown["version"] == "1.0.0" and shown["lineage"]["request_ids"]

        # Pinned: the next update passes the gate but is not promoted, and says why.
        world.send(Topic.FEEDBACK_EVENTS, _feedback("chat", train=12, heldout=4, start=1000))
        assert _wait_verdict(world, "chat", "2.0.0")[1] == "adapter_rejected"
        gate = world.store.read_manifest("chat", "2.0.0").gate
        assert not gate.promoted and "pinned" in gate.reason and "ops-1" in gate.reason
        assert world.store.champion("chat") is None

        world.cli("adapters", "pin", "chat", "2.0.0", "--actor", "ops-1")
        assert world.store.champion("chat").version == "2.0.0"  # type: ignore[union-attr]
        assert world.store.pinned("chat").version == "2.0.0"  # type: ignore[union-attr]
        # Nodes hear of it: the pin moved the champion off the base model.
        assert [e.version for e in world.model_events("chat") if e.type == "adapter_promoted"] == [
            "1.0.0",
            "2.0.0",
        ]
        world.cli("adapters", "unpin", "chat", "--actor", "ops-2")
        assert world.store.pinned("chat") is None
        assert world.store.champion("chat").version == "2.0.0"  # type: ignore[union-attr]
        assert "champion" in world.cli("adapters", "list", "chat").stdout

    audit = [e for e in world.scenario.read_all(Topic.AUDIT_EVENTS) if isinstance(e, AuditRecorded)]
    assert [(a.action, a.actor, a.version) for a in audit] == [
        ("adapter.rollback", "ops-1", None),
        ("adapter.pin", "ops-1", "2.0.0"),
        ("adapter.unpin", "ops-2", None),
    ]
