"""OpenAI-compatible chat completions, pure: request model, response and chunk bodies, SSE
framing, /v1/models. `model` is ``task``, ``task@version`` or ``task@base``; the extension
``lorafeed`` carries {retrieval, filter} in and {request_id, adapter_version, passage_ids} out.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from schemas.version import Version
from serving.errors import InvalidRequest

MAX_MESSAGES = 256
MAX_STOPS = 4
SSE_DONE = b"data: [DONE]\n\n"
BASE_VERSION = "base"
FilterValue = str | int | float | bool | list[str]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TextPart(_Strict):
    type: Literal["text"]
    text: str


class ChatMessageIn(_Strict):
    """One turn; content parts (text only) are joined into one string."""

    role: Literal["system", "user", "assistant"]
    content: str | Annotated[list[TextPart], Field(min_length=1)]
    name: str | None = None

    @property
    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class StreamOptions(_Strict):
    include_usage: bool = False


class LorafeedOptions(_Strict):
    """Extension options: ground the answer on retrieved passages (default on), with an
    optional metadata filter (see lorafeed.retrieval.build_filter)."""

    retrieval: bool = True
    filter: dict[str, FilterValue] | None = None


class ChatCompletionRequest(_Strict):
    """The subset of OpenAI's request we honour; unknown fields are refused, not ignored."""

    model: Annotated[str, Field(min_length=1, max_length=300)]
    messages: Annotated[list[ChatMessageIn], Field(min_length=1, max_length=MAX_MESSAGES)]
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] = 1.0
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: str | Annotated[list[str], Field(max_length=MAX_STOPS)] | None = None
    n: int = 1
    seed: Annotated[int, Field(ge=0, le=2**63 - 1)] | None = None
    user: Annotated[str, Field(max_length=256)] | None = None
    lorafeed: LorafeedOptions = Field(default_factory=LorafeedOptions)

    @field_validator("n")
    @classmethod
    def _one_choice(cls, value: int) -> int:
        if value != 1:
            raise ValueError(f"n must be 1 (one choice per request), got {value}")
        return value

    @field_validator("stop")
    @classmethod
    def _non_empty_stops(cls, value: str | list[str] | None) -> str | list[str] | None:
        stops = [value] if isinstance(value, str) else value or []
        if any(not stop for stop in stops):
            raise ValueError("stop sequences must not be empty strings")
        return value

    def stops(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])

    def requested_max_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    def turns(self) -> list[dict[str, str]]:
        """The messages as role/content dicts (what the prompt builder takes)."""
        return [{"role": m.role, "content": m.text} for m in self.messages]

    def last_user_turn(self) -> str | None:
        return next((m.text for m in reversed(self.messages) if m.role == "user"), None)


def parse_model(model: str) -> tuple[str, str | None]:
    """``task``, ``task@version`` or ``task@base`` (no adapter) -> (task, version or None,
    "base" kept as the registry's name for it); a malformed version raises InvalidRequest."""
    task, at, version = model.partition("@")
    if not at:
        return model, None
    if version == BASE_VERSION:
        return task, version
    try:
        Version.parse(version)
    except ValueError as exc:
        raise InvalidRequest(f"model {model!r}: {exc} (or 'base' for no adapter)") from None
    return task, version


def lorafeed_extension(
    request_id: str, adapter_version: str | None, passage_ids: Sequence[str]
) -> dict[str, Any]:
    return {
        "request_id": request_id,
        "adapter_version": adapter_version,
        "passage_ids": list(passage_ids),
    }


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def completion_body(
    *, completion_id: str, created: int, model: str, content: str, finish_reason: str,
    usage_counts: Mapping[str, int], extension: Mapping[str, Any],
) -> dict[str, Any]:
    """A ``chat.completion`` object with one choice."""
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": finish_reason,
                "logprobs": None,
            }
        ],
        "usage": dict(usage_counts),
        "lorafeed": dict(extension),
    }


def chunk_body(
    *, completion_id: str, created: int, model: str, delta: Mapping[str, str],
    finish_reason: str | None, extension: Mapping[str, Any],
    usage_counts: Mapping[str, int] | None = None, choices: bool = True,
) -> dict[str, Any]:
    """A ``chat.completion.chunk``; the usage chunk (``choices=False``) has no choices."""
    body: dict[str, Any] = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": (
            [{"index": 0, "delta": dict(delta), "finish_reason": finish_reason, "logprobs": None}]
            if choices
            else []
        ),
        "lorafeed": dict(extension),
    }
    if usage_counts is not None:
        body["usage"] = dict(usage_counts)
    return body


def sse(data: Mapping[str, Any]) -> bytes:
    """One server-sent event carrying ``data`` as compact JSON."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"data: {text}\n\n".encode()


def models_body(
    tasks: Mapping[str, str], active: Mapping[str, str | None]
) -> dict[str, Any]:
    """The /v1/models list: one model per task (name -> kind), with its active version."""
    return {
        "object": "list",
        "data": [
            {
                "id": name,
                "object": "model",
                "created": 0,
                "owned_by": "lorafeed",
                "lorafeed": {"kind": kind, "active_version": active.get(name)},
            }
            for name, kind in sorted(tasks.items())
        ],
    }
