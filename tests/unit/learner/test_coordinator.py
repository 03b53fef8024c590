"""The coordinator resends events a broker outage left in the outbox at its next tick, and its
online watch acts on a node's load failure recorded before a restart."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from learner.coordinator import Coordinator
from learner.cycle import CycleContext
from lorafeed.publish import PublishError
from schemas import AdapterManifest, Event, GateDecision, LoraSettings, Topic
from schemas.tasks import TaskConfig
from tests.support.learning import Sent, make_ctx


class FlakyBroker(Sent):
    """Refuses the first `failures` sends, then records like `Sent`."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    def __call__(self, events: Sequence[tuple[Topic, str, Event | bytes]]) -> None:
        if self.failures:
            self.failures -= 1
            raise PublishError("1 events refused, 0 unacknowledged: [broker down]")
        super().__call__(events)


def test_queued_events_go_out_at_the_next_tick_after_an_outage(tmp_path: Path) -> None:
    broker = FlakyBroker(failures=1)
    ctx = make_ctx(tmp_path, tmp_path / "models", broker)
    ctx.pending.outbox_add("faq", "1.0.0", [(Topic.MODEL_EVENTS.value, "faq", b"{}")])
    coordinator = Coordinator(tasks={}, ctx=ctx, locks={})

    coordinator.tick()  # the broker refuses: nothing lost, nothing raised
    assert broker.events == [] and len(ctx.pending.outbox_unsent()) == 1

    coordinator.tick()
    assert broker.events == [(Topic.MODEL_EVENTS, "faq", b"{}")]
    assert ctx.pending.outbox_unsent() == []


def _two_versions(ctx: CycleContext, tmp_path: Path) -> None:
    """Task `chat`: 1.0.0, then its child 1.1.0 as the champion."""
    files = tmp_path / "files"
    files.mkdir()
    (files / "adapter_model.safetensors").write_bytes(b"weights")
    for version, parent in (("1.0.0", None), ("1.1.0", "1.0.0")):
        fields = AdapterManifest(
            schema_version=1, task="chat", version=version, parent_version=parent,
            kind="generation", base_model_id="tiny", base_model_sha256="b" * 64,
            files={"x": "0" * 64}, lora=LoraSettings(r=4, alpha=8, target_modules=["q_proj"]),
            gate=GateDecision(promoted=True, reason="test"),
            created_at=datetime(2026, 1, 1, tzinfo=UTC),
        ).model_dump(mode="json")  # fmt: skip
        del fields["files"]
        ctx.store.write_version("chat", version, files, fields)
        ctx.store.set_champion("chat", version)


def test_a_load_failure_survives_a_restart_and_rolls_the_champion_back(tmp_path: Path) -> None:
    broker = Sent()
    ctx = make_ctx(tmp_path, tmp_path / "models", broker)
    _two_versions(ctx, tmp_path)
    task = TaskConfig(name="chat", kind="generation", base_model="tiny")
    assert ctx.pending.load_failure_add("chat", "1.1.0", "node-a", "sha256 mismatch")
    assert not ctx.pending.load_failure_add("chat", "1.1.0", "node-a", "again")  # first kept
    ctx.pending.close()

    restarted = make_ctx(tmp_path, tmp_path / "models", broker)  # a new process, same files
    reason = Coordinator(tasks={"chat": task}, ctx=restarted, locks={}).watch(task)

    assert reason == "nodes failed to load it (node node-a: sha256 mismatch)"
    assert restarted.store.champion("chat").version == "1.0.0"  # type: ignore[union-attr]
    assert broker.types() == ["adapter_rolled_back"]
