"""Node-local adapter operations for operators: pin a version, unpin, roll back to the version
loaded before. Each applied action is recorded as an AuditRecorded event on audit.events; if
that record is not acknowledged the answer is 503 saying the action was applied unaudited."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from schemas.audit import AuditRecorded
from schemas.codec import encode
from schemas.topics import Topic, topic_name
from serving.deps import ServingDeps, SwapOutcomeLike
from serving.guards import known_task, principal_of
from serving.json_body import StrictJsonRoute
from serving.openai_compat import BASE_VERSION
from serving.publisher import PublishError, PublishFailed
from serving.requests import PinRequest, RollbackRequest, UnpinRequest


def audit_event(deps: ServingDeps, actor: str, action: str, task: str, version: str | None,
                reason: str | None, outcome: SwapOutcomeLike) -> AuditRecorded:
    detail: dict[str, Any] = {"node_id": deps.settings.node_id, "scope": "node",
                              "status": outcome.status, "outcome": outcome.reason}
    if reason:
        detail["reason"] = reason
    return AuditRecorded(
        schema_version=1, audit_id=deps.new_id(), actor=actor, action=action, task=task,
        version=version, detail=detail, occurred_at=deps.clock(),
    )


async def record(deps: ServingDeps, event: AuditRecorded) -> None:
    """Publishes ``event``; PublishFailed naming the applied action when unacknowledged."""
    try:
        await deps.audit_publisher.publish(
            topic_name(Topic.AUDIT_EVENTS, deps.topic_prefix), event.audit_id, encode(event)
        )
    except PublishError as exc:
        raise PublishFailed(
            f"{event.action} of {event.task} on node {deps.settings.node_id} was applied, but "
            f"its audit record {event.audit_id} was not acknowledged: {exc}"
        ) from exc


def _version(value: str | None) -> str | None:
    return None if value in (None, BASE_VERSION) else value


def admin_router(deps: ServingDeps) -> APIRouter:
    router = APIRouter(prefix="/admin/tasks/{task}", route_class=StrictJsonRoute)

    async def done(request: Request, action: str, task: str, outcome: SwapOutcomeLike,
                   reason: str | None) -> dict[str, Any]:
        event = audit_event(deps, principal_of(request).name, f"adapter.{action}", task,
                            outcome.version, reason, outcome)
        await record(deps, event)
        return {"task": task, "action": action, "status": outcome.status,
                "version": outcome.version, "reason": outcome.reason,
                "node_id": deps.settings.node_id, "audit_id": event.audit_id}

    @router.post("/pin")
    async def pin(task: str, body: PinRequest, request: Request) -> dict[str, Any]:
        known_task(deps, request, task)
        actor = principal_of(request).name
        outcome = await deps.registry.pin(task, _version(body.version), actor)
        return await done(request, "pin", task, outcome, body.reason)

    @router.post("/unpin")
    async def unpin(task: str, request: Request,
                    body: UnpinRequest | None = None) -> dict[str, Any]:
        known_task(deps, request, task)
        outcome = await deps.registry.unpin(task, principal_of(request).name)
        return await done(request, "unpin", task, outcome, body.reason if body else None)

    @router.post("/rollback")
    async def rollback(task: str, request: Request,
                       body: RollbackRequest | None = None) -> dict[str, Any]:
        known_task(deps, request, task)
        body = body or RollbackRequest()
        target = (deps.registry.view(task).previous if body.to_version is None
                  else _version(body.to_version))
        outcome = await deps.registry.rollback(task, target, principal_of(request).name)
        return await done(request, "rollback", task, outcome, body.reason)

    return router
