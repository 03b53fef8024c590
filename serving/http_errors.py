"""The API's own errors and the one table (`KNOWN_ERRORS`) giving known errors an HTTP status and
OpenAI's error shape; anything else is a bug and answers 500 without details.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from starlette.types import Send

from lorafeed.knowledge_errors import KnowledgeInputError
from lorafeed.retrieval import FilterError
from serving.errors import (
    AdapterRefused,
    EngineClosed,
    InvalidRequest,
    ServingError,
    UnknownTask,
    UnknownVersion,
    WrongTaskKind,
)
from serving.microbatch import QueueFull
from serving.prompt import PromptError
from serving.publisher import PublishFailed, PublishQueueFull

RETRY_AFTER_S = 1


class BodyTooLarge(ServingError):
    """The request body is over ``max_body_bytes``."""

    def __init__(self, limit: int, size: int | None = None) -> None:
        got = f" ({size} bytes)" if size is not None else ""
        super().__init__(f"request body is over the limit of {limit} bytes{got}")


class RequestTimedOut(ServingError):
    """The request did not finish within the node's request timeout."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"the request did not finish within the {seconds:g} s request timeout")


class ContextNotFound(ServingError):
    """Feedback names a request this deployment never served, or whose context expired."""

    def __init__(self, request_id: str) -> None:
        super().__init__(
            f"request {request_id!r} is unknown or its context expired; feedback must name the "
            "request_id of a served answer"
        )


class FeedbackConflict(ServingError):
    """The same (request, kind, annotator) was already sent with a different payload."""


class FeedbackInProgress(ServingError):
    """The same feedback is being published right now; retrying later gets its answer."""


class StoreUnavailable(ServingError):
    """Redis (contexts, idempotency, rate limits) failed or timed out."""


class RetrievalUnavailable(ServingError):
    """Retrieval is not configured on this node, or the knowledge base failed."""


@dataclass(frozen=True)
class ErrorSpec:
    status: int
    kind: str
    code: str
    retry_after: bool = False


KNOWN_ERRORS: tuple[tuple[type[Exception], ErrorSpec], ...] = (
    (UnknownTask, ErrorSpec(404, "not_found_error", "unknown_task")),
    (UnknownVersion, ErrorSpec(404, "not_found_error", "unknown_version")),
    (ContextNotFound, ErrorSpec(404, "not_found_error", "unknown_request")),
    (FeedbackConflict, ErrorSpec(409, "conflict_error", "feedback_conflict")),
    (FeedbackInProgress, ErrorSpec(409, "conflict_error", "feedback_in_progress", True)),
    (AdapterRefused, ErrorSpec(409, "conflict_error", "adapter_refused")),
    (BodyTooLarge, ErrorSpec(413, "invalid_request_error", "body_too_large")),
    (WrongTaskKind, ErrorSpec(422, "invalid_request_error", "wrong_task_kind")),
    (InvalidRequest, ErrorSpec(422, "invalid_request_error", "invalid_request")),
    (PromptError, ErrorSpec(422, "invalid_request_error", "invalid_prompt")),
    (FilterError, ErrorSpec(422, "invalid_request_error", "invalid_filter")),
    (KnowledgeInputError, ErrorSpec(422, "invalid_request_error", "invalid_search")),
    (PublishQueueFull, ErrorSpec(503, "overloaded_error", "queue_full", True)),
    (QueueFull, ErrorSpec(503, "overloaded_error", "queue_full", True)),
    (PublishFailed, ErrorSpec(503, "unavailable_error", "broker_unavailable", True)),
    (StoreUnavailable, ErrorSpec(503, "unavailable_error", "store_unavailable", True)),
    (RetrievalUnavailable, ErrorSpec(503, "unavailable_error", "retrieval_unavailable", True)),
    (EngineClosed, ErrorSpec(503, "unavailable_error", "engine_closed", True)),
    (RequestTimedOut, ErrorSpec(504, "timeout_error", "request_timeout")),
)


def spec_for(exc: BaseException) -> ErrorSpec | None:
    """How a known error is answered; None for anything else (a 500)."""
    for cls, spec in KNOWN_ERRORS:
        if isinstance(exc, cls):
            return spec
    return None


def headers_for(spec: ErrorSpec) -> dict[str, str]:
    return {"retry-after": str(RETRY_AFTER_S)} if spec.retry_after else {}


def describe_errors(errors: Sequence[Mapping[str, Any]], limit: int = 5) -> str:
    """Validation errors as "loc: message" without the offending input (it may hold PII)."""
    parts = [f"{'.'.join(str(p) for p in e.get('loc', ())) or 'body'}: {_reason(e)}"
             for e in errors[:limit]]
    more = f" (and {len(errors) - limit} more)" if len(errors) > limit else ""
    return "; ".join(parts) + more


def _reason(error: Mapping[str, Any]) -> str:
    """The error's message; for a body that is not JSON, with the decoder's reason (it names a
    position or a character class, never the input)."""
    message = str(error.get("msg", "?"))
    detail = (error.get("ctx") or {}).get("error")
    if error.get("type") == "json_invalid" and isinstance(detail, str):
        return f"{message} ({detail})"
    return message


def error_body(kind: str, code: str, message: str, **extra: Any) -> dict[str, Any]:
    """The error shape of every endpoint (OpenAI's, so SDKs surface the message)."""
    return {"error": {"type": kind, "code": code, "message": message, **extra}}


async def send_json(
    send: Send, status: int, body: Mapping[str, Any], headers: Mapping[str, str] | None = None
) -> None:
    """A complete JSON response sent straight through ASGI (for middleware)."""
    payload = json.dumps(body, ensure_ascii=False).encode("utf-8")
    raw = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(payload))]
    raw += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": payload})
