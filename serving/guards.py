"""Checks every endpoint shares: the task exists and has the right kind, the deadline, the
caller's principal, and the task label metrics read from the request state."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Request

from schemas.tasks import TaskConfig
from serving.auth import ANONYMOUS, Principal
from serving.deps import ServingDeps
from serving.errors import UnknownTask, WrongTaskKind
from serving.http_errors import RequestTimedOut


def known_task(deps: ServingDeps, request: Request, name: str) -> TaskConfig:
    """The task's config; UnknownTask otherwise. Labels the request's metrics with it."""
    task = deps.registry.tasks.get(name)
    if task is None:
        raise UnknownTask(name, sorted(deps.registry.tasks))
    request.state.task = name  # only known names: metric label values stay bounded
    return task


def require_kind(task: TaskConfig, kind: str, wanted: str) -> None:
    if task.kind != kind:
        raise WrongTaskKind(task.name, task.kind, wanted)


def principal_of(request: Request) -> Principal:
    principal = getattr(request.state, "principal", None)
    return principal if isinstance(principal, Principal) else Principal(ANONYMOUS, frozenset())


@asynccontextmanager
async def deadline(seconds: float) -> AsyncIterator[None]:
    """Raises RequestTimedOut (504) when the body runs longer than ``seconds``."""
    try:
        async with asyncio.timeout(seconds) as scope:
            yield
    except TimeoutError as exc:
        if scope.expired():
            raise RequestTimedOut(seconds) from exc
        raise
