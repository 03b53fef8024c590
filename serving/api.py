"""The serving HTTP API: `create_app(deps)` wires middleware (metrics, auth + rate limit, body
cap), the routers and the error handlers: known errors answer with their status, validation
422 without echoing input, anything else 500 (logged).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.exceptions import HTTPException
from starlette.routing import BaseRoute

from lorafeed.knowledge_errors import KnowledgeError, KnowledgeInputError
from lorafeed.retrieval import Hit
from serving.admin import admin_router
from serving.auth import AuthMiddleware, KeyRing
from serving.chat import chat_router
from serving.deps import ServingDeps
from serving.feedback import feedback_router
from serving.http_errors import (
    KNOWN_ERRORS,
    BodyTooLarge,
    RetrievalUnavailable,
    describe_errors,
    error_body,
    headers_for,
    spec_for,
)
from serving.json_body import StrictJsonRoute
from serving.limits import BodyLimitMiddleware
from serving.metrics import MetricsMiddleware
from serving.microbatch import QueueFull
from serving.openai_compat import models_body
from serving.publisher import PublishQueueFull
from serving.requests import SearchRequest

log = logging.getLogger(__name__)
_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}


def create_app(deps: ServingDeps) -> FastAPI:
    """The app for one serving node; ``deps`` are built by the composition root."""
    app = FastAPI(title="lorafeed serving", docs_url=None, redoc_url=None, openapi_url=None)
    app.router.route_class = StrictJsonRoute  # the plain routes below (/v1/search)
    deps.metrics.watch_active_versions(deps.registry.active_versions)
    app.add_middleware(BodyLimitMiddleware, max_bytes=deps.settings.max_body_bytes)
    app.add_middleware(
        AuthMiddleware, keyring=KeyRing(deps.settings.key_entries()),
        enabled=deps.settings.auth_enabled,
        limiter=deps.rate_limiter if deps.settings.rate_limit_per_minute else None,
    )
    routes: list[BaseRoute] = []  # filled below; names requests refused before routing
    # outermost: sees every status, including refusals by the middleware inside it
    app.add_middleware(MetricsMiddleware, metrics=deps.metrics, routes=lambda: routes)
    _add_error_handlers(app, deps)
    routers = [chat_router(deps), feedback_router(deps), admin_router(deps)]
    for router in routers:
        app.include_router(router)
    _add_plain_routes(app, deps)
    routes += [route for router in routers for route in router.routes]
    routes += [route for route in app.routes if isinstance(route, APIRoute)]
    return app


def _add_plain_routes(app: FastAPI, deps: ServingDeps) -> None:
    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "node_id": deps.settings.node_id}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        checks = [deps.contexts.ping, *deps.ready_checks]
        problems = [p for p in await asyncio.gather(*(check() for check in checks)) if p]
        status = 503 if problems else 200
        return JSONResponse({"ready": not problems, "problems": problems}, status_code=status)

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(deps.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        kinds = {name: task.kind for name, task in deps.registry.tasks.items()}
        return models_body(kinds, deps.registry.active_versions())

    @app.post("/v1/search")
    async def search(body: SearchRequest) -> dict[str, Any]:
        if deps.retriever is None:
            raise RetrievalUnavailable("retrieval is not configured on this node")
        try:
            hits = await asyncio.to_thread(
                deps.retriever.search, body.query, top_k=body.top_k, filter=body.filter,
                mode=body.mode,
            )
        except KnowledgeInputError:
            raise
        except KnowledgeError as exc:
            raise RetrievalUnavailable(f"the knowledge base failed: {exc}") from exc
        return {"hits": [_hit_body(hit) for hit in hits]}


def _hit_body(hit: Hit) -> dict[str, Any]:
    return {
        "id": hit.pk, "record_id": hit.record_id, "chunk_index": hit.chunk_index,
        "text": hit.text, "source": hit.source, "score": hit.score,
        "metadata": dict(hit.metadata),
    }


def _add_error_handlers(app: FastAPI, deps: ServingDeps) -> None:
    async def known(request: Request, exc: Exception) -> Response:
        spec = spec_for(exc)
        if spec is None:  # unreachable: only KNOWN_ERRORS classes are registered here
            return await unexpected(request, exc)
        if isinstance(exc, QueueFull | PublishQueueFull):
            queue = "publish" if isinstance(exc, PublishQueueFull) else "model"
            deps.metrics.queue_full.labels(queue=queue).inc()
        return JSONResponse(error_body(spec.kind, spec.code, str(exc)),
                            status_code=spec.status, headers=headers_for(spec))

    async def invalid(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = list(exc.errors())
        message = "invalid request: " + describe_errors(errors)
        details = [{"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")}
                   for e in errors[:20]]
        return JSONResponse(error_body("invalid_request_error", "invalid_request", message,
                                       details=details), status_code=422)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        message = str(exc.detail)
        if exc.status_code == 413:
            message = str(BodyTooLarge(deps.settings.max_body_bytes))
        return JSONResponse(error_body("invalid_request_error", code, message),
                            status_code=exc.status_code, headers=exc.headers)

    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error serving %s %s", request.method, request.url.path,
                      exc_info=exc)
        return JSONResponse(error_body("internal_error", "internal",
                                       "internal error; it was logged"), status_code=500)

    for cls, _ in KNOWN_ERRORS:
        app.add_exception_handler(cls, known)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)
