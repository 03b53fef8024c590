"""POST /v1/score and POST /v1/feedback: classify and remember what was scored; turn an app's
verdict on a served answer into a FeedbackReceived event, answered 202 only after the broker
acknowledged it. Feedback is idempotent per (request_id, kind, annotator)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from lorafeed import failpoints
from schemas.codec import encode
from schemas.feedback import FeedbackReceived
from schemas.tasks import TaskConfig
from schemas.topics import Topic, topic_name
from serving.contexts import ClaimConflict, ClaimInProgress, ClaimSame, ServedContext
from serving.deps import ServingDeps
from serving.errors import InvalidRequest
from serving.guards import deadline, known_task, require_kind
from serving.http_errors import (
    ContextNotFound,
    FeedbackConflict,
    FeedbackInProgress,
    StoreUnavailable,
    describe_errors,
)
from serving.json_body import StrictJsonRoute
from serving.openai_compat import parse_model
from serving.requests import FeedbackRequest, ScoreRequest, score_text

DAY_S = 24 * 3600
AFTER_PUBLISH = failpoints.declare(
    "serving.feedback_after_publish", "feedback event acknowledged by the broker, no 202 sent"
)


def context_ttl_s(deps: ServingDeps, context: ServedContext) -> int:
    """Chat contexts live ``context_ttl_s``; score contexts the task's label horizon."""
    task = deps.registry.tasks.get(context.task)
    if context.kind == "score" and task is not None:
        return task.label_horizon_days * DAY_S
    return deps.settings.context_ttl_s


def check_feedback_fits(body: FeedbackRequest, context: ServedContext,
                        task: TaskConfig | None) -> None:
    """InvalidRequest when the feedback cannot apply to what was served."""
    if body.kind == "label" and context.kind != "score":
        raise InvalidRequest(f"label feedback applies to scored requests; {body.request_id!r} "
                             "was a chat answer (send a rating or a correction)")
    if body.kind == "correction" and context.kind != "chat":
        raise InvalidRequest(f"correction feedback applies to chat answers; {body.request_id!r} "
                             "was scored (send a label)")
    if body.label is not None and task is not None and task.labels is not None \
            and body.label not in task.labels:
        raise InvalidRequest(f"label {body.label!r} is not one of task {task.name!r}'s labels "
                             f"{task.labels}")


def feedback_event(body: FeedbackRequest, context: ServedContext, correction: str | None,
                   deps: ServingDeps, annotator: str | None = None) -> FeedbackReceived:
    """The event to publish; ``correction`` and ``annotator`` already pseudonymized."""
    return FeedbackReceived(
        schema_version=1, request_id=body.request_id, task=context.task, kind=body.kind,
        rating=body.rating, correction=correction, label=body.label, annotator=annotator,
        adapter_version=context.adapter_version, input=context.input, output=context.output,
        retrieved_passage_ids=context.passage_ids, served_at=context.served_at,
        received_at=deps.clock(),
    )


def feedback_router(deps: ServingDeps) -> APIRouter:
    router = APIRouter(route_class=StrictJsonRoute)
    settings = deps.settings

    @router.post("/v1/score")
    async def score(body: ScoreRequest, request: Request) -> dict[str, Any]:
        task_name, version = parse_model(body.task)
        task = known_task(deps, request, task_name)
        require_kind(task, "classification", "scoring")
        text = score_text(body.text, body.fields)
        request_id = deps.new_id()
        async with deadline(settings.request_timeout_s):
            async with deps.registry.lease(task_name, version) as lease:
                [result] = await lease.engine.score([text], lease.version)
                served_version = lease.version
            context = ServedContext(task=task_name, kind="score", input=text, output=result.label,
                                    adapter_version=served_version, served_at=deps.clock())
            await deps.contexts.put(request_id, context, task.label_horizon_days * DAY_S)
        return {
            "request_id": request_id, "task": task_name, "label": result.label,
            "probabilities": dict(result.probabilities), "low_margin": result.low_margin,
            "adapter_version": served_version,
        }

    @router.post("/v1/feedback", status_code=202)
    async def feedback(body: FeedbackRequest, request: Request) -> JSONResponse:
        async with deadline(settings.request_timeout_s):
            context = await deps.contexts.get(body.request_id)
            if context is None:
                raise ContextNotFound(body.request_id)
            task = deps.registry.tasks.get(context.task)
            if task is not None:
                request.state.task = context.task
            check_feedback_fits(body, context, task)
            return await _publish_once(deps, body, context)

    return router


async def _publish_once(deps: ServingDeps, body: FeedbackRequest,
                        context: ServedContext) -> JSONResponse:
    key = (body.request_id, body.kind, body.annotator)
    digest = body.payload_sha256()
    claim = await deps.contexts.claim(*key, digest)
    if isinstance(claim, ClaimSame):
        return JSONResponse(claim.response, status_code=202)
    if isinstance(claim, ClaimConflict):
        raise FeedbackConflict(
            f"{body.kind} feedback on {body.request_id!r} by annotator {body.annotator!r} was "
            "already accepted with a different payload"
        )
    if isinstance(claim, ClaimInProgress):
        raise FeedbackInProgress(
            f"{body.kind} feedback on {body.request_id!r} by annotator {body.annotator!r} is "
            "being published; retry shortly for its answer"
        )
    try:
        correction = annotator = None
        pseudonymize = deps.pseudonymizer.pseudonymize
        if body.correction is not None:
            correction = (await asyncio.to_thread(pseudonymize, body.correction)).text
        if body.annotator is not None:  # annotators are often named by their e-mail address
            annotator = pseudonymize(body.annotator).text
        try:
            event = feedback_event(body, context, correction, deps, annotator)
        except ValidationError as exc:  # e.g. the pseudonymized correction grew too long
            raise InvalidRequest(
                f"feedback does not form a valid event: {describe_errors(exc.errors())}"
            ) from exc
        topic = topic_name(Topic.FEEDBACK_EVENTS, deps.topic_prefix)
        await deps.feedback_publisher.publish(topic, body.request_id, encode(event))
        failpoints.failpoint(AFTER_PUBLISH)
    except BaseException:
        with contextlib.suppress(StoreUnavailable):  # a pending claim expires on its own
            await asyncio.shield(deps.contexts.release(*key, digest))
        raise
    # kept in Redis for identical retries: it names the annotator as recorded (pseudonymized)
    response = {"status": "accepted", "request_id": body.request_id, "kind": body.kind,
                "annotator": event.annotator, "received_at": event.received_at.isoformat()}
    await deps.contexts.complete(*key, digest, response, context_ttl_s(deps, context))
    return JSONResponse(response, status_code=202)
