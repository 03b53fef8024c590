"""Operators' actions from the CLI leave audit records keyed by their audit_id (the contract's
key): pin, unpin, rollback, and a review decision, which also lands in the pending store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from learner.aggregate import Vote
from learner.pending import PendingStore
from lorafeed.adapters_cli import pin, rollback, unpin
from lorafeed.publish import PublishError
from lorafeed.review_cli import run_review_resolve
from schemas import Topic
from schemas.audit import AuditRecorded
from tests.support.adapters import store_with_versions

TASKS = """
[tasks.intent]
kind = "classification"
base_model = "tiny"
labels = ["billing", "other"]
"""


class Sent:
    def __init__(self) -> None:
        self.events: list[tuple[Topic, str, Any]] = []

    def __call__(self, events: list[tuple[Topic, str, Any]]) -> None:
        self.events.extend(events)

    def audits(self) -> list[tuple[str, AuditRecorded]]:
        return [(key, e) for topic, key, e in self.events if topic is Topic.AUDIT_EVENTS]


@pytest.fixture
def learner_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    tasks = tmp_path / "tasks.toml"
    tasks.write_text(TASKS)
    monkeypatch.setenv("LEARNER_TASKS_FILE", str(tasks))
    monkeypatch.delenv("LEARNER_DATA_DIR", raising=False)
    (tmp_path / "learner").mkdir()
    store = PendingStore(tmp_path / "learner" / "pending.sqlite3")
    for annotator, label in (("a", "billing"), ("b", "other")):
        store.add_vote(Vote("intent", "req-9", annotator, label, "refund my card fee"), 0)
    store.close()
    return tmp_path


def test_a_review_decision_is_audited_by_its_audit_id(learner_dir: Path) -> None:
    sent = Sent()
    code = run_review_resolve("intent", "req-9", "billing", "alice", learner_dir,
                              Console(width=200), sent)

    assert code == 0
    [(key, audit)] = sent.audits()
    assert key == audit.audit_id and (audit.action, audit.actor) == ("review.resolve", "alice")
    assert audit.detail == {"item": "req-9", "label": "billing",
                            "example_id": "fb:req-9:label:alice"}
    store = PendingStore(learner_dir / "learner" / "pending.sqlite3")
    assert [e.label for e, _ in store.pending("intent")] == ["billing"]


def test_a_refused_audit_record_is_reported_and_the_decision_stands(learner_dir: Path) -> None:
    def refuse(_events: list[tuple[Topic, str, Any]]) -> None:
        raise PublishError("0 events refused, 1 unacknowledged: []")

    console = Console(width=200, record=True)
    code = run_review_resolve("intent", "req-9", "other", "alice", learner_dir, console, refuse)

    assert code == 1 and "audit record failed" in console.export_text()
    store = PendingStore(learner_dir / "learner" / "pending.sqlite3")
    assert [e.label for e, _ in store.pending("intent")] == ["other"]


def test_an_unknown_item_changes_nothing_and_audits_nothing(learner_dir: Path) -> None:
    sent = Sent()
    code = run_review_resolve("intent", "req-404", "billing", "alice", learner_dir,
                              Console(width=200), sent)
    assert code == 2 and sent.events == []


def test_pin_unpin_and_rollback_key_their_audit_records_by_audit_id(tmp_path: Path) -> None:
    store = store_with_versions(tmp_path / "adapters")  # chat: 1.0.0 champion, 1.1.0
    sent, console = Sent(), Console(width=200)

    pin(store, "chat", "1.0.0", "ops", "incident 7", sent, console)
    unpin(store, "chat", "ops", sent, console)
    rollback(store, "chat", None, "ops", "bad answers", sent, console, to_base=True)

    audits = sent.audits()
    assert [a.action for _key, a in audits] == ["adapter.pin", "adapter.unpin", "adapter.rollback"]
    assert all(key == a.audit_id for key, a in audits)
    assert len({a.audit_id for _key, a in audits}) == 3
