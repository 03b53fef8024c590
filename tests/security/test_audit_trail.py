"""The audit trail is complete and append-only: every admin action through the serving node's
admin API (pin, unpin, rollback) and through the CLI (`lorafeed adapters pin|unpin|rollback`)
appears on audit.events exactly once, in the order it was done, naming who did what; refused
attempts (wrong role, bad version, unknown version) leave no trace and change nothing; the CLI
rollback's model event appears once; nothing already on either topic is rewritten, and the
broker keeps both topics uncompacted and forever."""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka.admin import ConfigResource
from typer.testing import CliRunner

from lorafeed.cli import app as cli_app
from lorafeed.kafka_clients import make_admin, topic_configs
from schemas import TOPICS, SchemaError, Topic, decode, topic_name
from schemas.audit import AuditRecorded
from schemas.model_events import AdapterRolledBack
from tests.security.world import Landed, SecureWorld, wait_until

pytestmark = pytest.mark.integration

TIMEOUT_S = 120


def _decodable(messages: list[Landed]) -> list[object]:
    """Model events as decoded (the hostile tests leave undecodable ones on the topic)."""
    events = []
    for message in messages:
        try:
            events.append(decode(Topic.MODEL_EVENTS, message.value))
        except SchemaError:
            continue
    return events


def _audits(messages: list[Landed]) -> list[AuditRecorded]:
    return [e for e in (decode(Topic.AUDIT_EVENTS, m.value) for m in messages)
            if isinstance(e, AuditRecorded)]


def test_admin_and_cli_actions_are_audited_once_in_order_and_never_rewritten(
    world: SecureWorld,
) -> None:
    before = {t: world.messages(t) for t in (Topic.AUDIT_EVENTS, Topic.MODEL_EVENTS)}
    store = world.serving.store
    champion_before = store.champion("intent")
    done: list[tuple[str, str]] = []  # (how to find it, action), in the order performed

    with world.http("admin") as admin, world.http("app") as app:
        # refused attempts first: none may be audited or change anything
        assert app.post("/admin/tasks/intent/pin", json={"version": "1.0.0"}).status_code == 403
        assert admin.post("/admin/tasks/intent/pin", json={"version": "../1.0.0"}).status_code \
            == 422
        assert admin.post("/admin/tasks/intent/pin", json={"version": "7.7.7"}).status_code in (
            404, 409)
        assert admin.post("/admin/tasks/nosuchtask/pin", json={"version": "1.0.0"}) \
            .status_code == 404
        for path, body in (("/admin/tasks/intent/pin", {"version": "1.0.0", "reason": "audit-1"}),
                           ("/admin/tasks/intent/unpin", {"reason": "audit-2"}),
                           ("/admin/tasks/intent/rollback", {"to_version": "base",
                                                             "reason": "audit-3"}),
                           ("/admin/tasks/intent/unpin", {"reason": "audit-4"})):
            answer = admin.post(path, json=body)
            assert answer.status_code == 200, answer.text
            done.append((f"id:{answer.json()['audit_id']}", f"adapter.{path.rsplit('/', 1)[1]}"))

    actor = f"sec-cli-{uuid.uuid4().hex[:6]}"
    runner, env = CliRunner(), world.env(COLUMNS="200")
    for args, action in ((["pin", "intent", "1.1.0"], "adapter.pin"),
                         (["unpin", "intent"], "adapter.unpin"),
                         (["rollback", "intent", "1.0.0"], "adapter.rollback"),
                         (["unpin", "intent"], "adapter.unpin"),
                         (["pin", "intent", "../1.0.0"], None),  # refused: no trace
                         (["rollback", "nosuchtask"], None)):
        result = runner.invoke(cli_app, ["adapters", *args, "--actor", actor], env=env)
        assert (result.exit_code == 0) == (action is not None), result.output
        if action is not None:
            done.append((f"actor:{actor}", action))

    expected_audits = len(done)

    def landed() -> list[AuditRecorded] | None:
        new = _audits(world.messages(Topic.AUDIT_EVENTS)[len(before[Topic.AUDIT_EVENTS]):])
        mine = [e for e in new if f"id:{e.audit_id}" in {k for k, _ in done}
                or e.actor == actor]
        return mine if len(mine) >= expected_audits else None

    mine = wait_until(landed, TIMEOUT_S, "every admin action on audit.events", world)
    assert len(mine) == expected_audits, [(e.actor, e.action) for e in mine]
    for event, (key, action) in zip(mine, done, strict=True):  # once each, in order
        assert event.action == action and event.task == "intent", (event, key)
        if key.startswith("id:"):
            assert event.audit_id == key[3:] and event.actor == "ops"
            assert event.detail["node_id"] == "sec-node"
        else:
            assert event.actor == actor
    assert len({e.audit_id for e in mine}) == len(mine)
    assert [e.detail.get("reason") for e in mine[:4]] == [f"audit-{n}" for n in range(1, 5)]

    rollbacks = [e for e in _decodable(world.messages(Topic.MODEL_EVENTS)
                                       [len(before[Topic.MODEL_EVENTS]):])
                 if isinstance(e, AdapterRolledBack) and e.task == "intent"]
    assert [(e.from_version, e.to_version, e.automatic) for e in rollbacks] == [
        ("1.1.0", "1.0.0", False)]
    assert store.champion("intent") != champion_before  # the CLI rollback moved the pointer

    for topic, old in before.items():  # append-only: what was there is there, unchanged
        now = world.messages(topic)
        assert now[: len(old)] == old, f"{topic} was rewritten"


@pytest.mark.parametrize("topic", [Topic.AUDIT_EVENTS, Topic.MODEL_EVENTS])
def test_trail_topics_are_never_compacted_or_expired(world: SecureWorld, topic: Topic) -> None:
    spec = TOPICS[topic]
    assert not spec.compacted and spec.retention_ms is None and spec.partitions == 1
    assert topic_configs(topic)["cleanup.policy"] == "delete"
    admin = make_admin(world.serving.scenario.stack.bootstrap)
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic_name(topic, world.prefix))
    [future] = admin.describe_configs([resource]).values()
    config = {name: entry.value for name, entry in future.result(timeout=30).items()}
    assert (config["cleanup.policy"], config["retention.ms"]) == ("delete", "-1"), config
