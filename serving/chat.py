"""POST /v1/chat/completions: retrieve passages for the last user turn, build the grounded prompt,
generate under a leased version (held until the last piece, so an answer never mixes versions),
store the served context, answer as JSON or SSE.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from lorafeed.knowledge_errors import KnowledgeError, KnowledgeInputError
from lorafeed.retrieval import FilterError, RetrievalError
from schemas.feedback import ChatMessage
from serving import openai_compat as oa
from serving.contexts import ServedContext
from serving.deps import GenerationLike, ServingDeps
from serving.errors import InvalidRequest
from serving.guards import deadline, known_task, require_kind
from serving.http_errors import RequestTimedOut, error_body, spec_for
from serving.json_body import StrictJsonRoute
from serving.prompt import BuiltPrompt, Passage, PromptConfig, build_prompt, passages_from_hits

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Served:
    """What a chat answer needs to be reported and remembered."""

    request_id: str
    model: str
    created: int
    version: str | None
    prompt: BuiltPrompt
    messages: list[ChatMessage]
    task: str

    def extension(self) -> dict[str, object]:
        return oa.lorafeed_extension(self.request_id, self.version, self.prompt.cited_ids)


class _ClosingStream(StreamingResponse):
    """A stream that runs ``on_close`` however the response ends (even if never iterated)."""

    def __init__(self, content: AsyncIterator[bytes], on_close: Callable[[], Awaitable[None]],
                 headers: dict[str, str]) -> None:
        super().__init__(content, media_type="text/event-stream", headers=headers)
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._on_close()


def check_max_tokens(requested: int | None, default: int, cap: int) -> int:
    """The max_tokens to use; InvalidRequest naming the cap when above it."""
    value = default if requested is None else requested
    if value > cap:
        raise InvalidRequest(f"max_tokens {value} is above this node's cap of {cap}")
    return value


async def retrieve(deps: ServingDeps, body: oa.ChatCompletionRequest) -> list[Passage]:
    """Passages for the last user turn (empty when disabled or unavailable). Bad filters are
    the caller's error; a failing knowledge base only costs the grounding (and is counted)."""
    query = body.last_user_turn()
    k = deps.settings.passages_k
    if deps.retriever is None or not body.lorafeed.retrieval or not query or k == 0:
        return []
    try:
        hits = await asyncio.to_thread(
            deps.retriever.search, query, top_k=k, filter=body.lorafeed.filter
        )
    except (FilterError, KnowledgeInputError):
        raise
    except (RetrievalError, KnowledgeError) as exc:
        deps.metrics.retrieval_failures.inc()
        log.warning("retrieval failed, answering without passages: %s", exc)
        return []
    return passages_from_hits(hits)


def chat_router(deps: ServingDeps) -> APIRouter:
    router = APIRouter(route_class=StrictJsonRoute)
    settings = deps.settings

    @router.post("/v1/chat/completions", response_model=None)
    async def chat_completions(body: oa.ChatCompletionRequest, request: Request) -> Response:
        task_name, version = oa.parse_model(body.model)
        require_kind(known_task(deps, request, task_name), "generation", "chat completions")
        max_tokens = check_max_tokens(
            body.requested_max_tokens(), settings.default_max_tokens, settings.max_tokens_cap
        )
        stack = AsyncExitStack()
        streaming = False
        ends_at = asyncio.get_running_loop().time() + settings.request_timeout_s
        try:
            async with deadline(settings.request_timeout_s):
                served, generation = await _start(deps, body, task_name, version, max_tokens,
                                                  stack)
                if not body.stream:
                    return await _answer(deps, served, generation)
                streaming = True
        finally:
            if not streaming:  # a stream's response closes the stack when it ends
                await stack.aclose()
        headers = {"x-request-id": served.request_id, "cache-control": "no-cache"}
        usage = body.stream_options is not None and body.stream_options.include_usage
        events = _stream(deps, served, generation, ends_at, usage)
        return _ClosingStream(events, stack.aclose, headers)

    return router


async def _start(
    deps: ServingDeps, body: oa.ChatCompletionRequest, task: str, version: str | None,
    max_tokens: int, stack: AsyncExitStack,
) -> tuple[_Served, GenerationLike]:
    """Retrieves, leases (released by ``stack``), builds the prompt and starts generating."""
    settings = deps.settings
    passages = await retrieve(deps, body)
    lease = await stack.enter_async_context(deps.registry.lease(task, version))
    config = PromptConfig(settings.passages_k, settings.passage_tokens,
                          _prompt_budget(settings.max_prompt_tokens, lease.engine, max_tokens))
    prompt = build_prompt(body.turns(), passages, lease.engine.tokenizer, config)
    generation = lease.engine.generate(
        prompt.input_ids, max_tokens=max_tokens, temperature=body.temperature,
        stop=body.stops(), version=lease.version, seed=body.seed,
    )
    stack.push_async_callback(generation.aclose)
    messages = [ChatMessage(role=m["role"], content=m["content"]) for m in body.turns()]
    served = _Served(deps.new_id(), body.model, int(time.time()), lease.version, prompt,
                     messages, task)
    return served, generation


def _prompt_budget(configured: int, engine: object, max_tokens: int) -> int:
    """``max_prompt_tokens``, lowered to what the model holds: retrieved passages must never
    push a short question past the model's context (the engine would refuse it), and the answer
    keeps room for ``max_tokens`` (or half the context, if it asks for more)."""
    limit = getattr(engine, "context_tokens", None)
    if not isinstance(limit, int) or limit < 2:
        return configured
    return max(1, min(configured, limit - min(max_tokens, limit // 2)))


async def _answer(deps: ServingDeps, served: _Served, generation: GenerationLike) -> Response:
    try:
        text = "".join([piece async for piece in generation])
    finally:
        await generation.aclose()
    await _remember(deps, served, text)
    body = oa.completion_body(
        completion_id=f"chatcmpl-{served.request_id}", created=served.created, model=served.model,
        content=text, finish_reason=_finish_reason(generation),
        usage_counts=oa.usage(generation.prompt_tokens, generation.completion_tokens),
        extension=served.extension(),
    )
    return JSONResponse(body, headers={"x-request-id": served.request_id})


async def _stream(
    deps: ServingDeps, served: _Served, generation: GenerationLike, ends_at: float, usage: bool
) -> AsyncIterator[bytes]:
    """SSE chunks: role, content pieces, the final chunk, optional usage, then [DONE]. Errors
    after the first byte can only be reported in-band, as an ``error`` event."""
    loop = asyncio.get_running_loop()
    yield _chunk(served, {"role": "assistant", "content": ""})
    pieces: list[str] = []
    iterator = generation.__aiter__()
    try:
        while True:
            remaining = ends_at - loop.time()
            if remaining <= 0:
                raise RequestTimedOut(deps.settings.request_timeout_s)
            try:
                piece = await asyncio.wait_for(anext(iterator), remaining)
            except StopAsyncIteration:
                break
            except TimeoutError as exc:
                raise RequestTimedOut(deps.settings.request_timeout_s) from exc
            pieces.append(piece)
            yield _chunk(served, {"content": piece})
        await _remember(deps, served, "".join(pieces))
    except Exception as exc:
        spec = spec_for(exc)
        if spec is None:  # a bug: the server logs it, the client sees the stream break
            raise
        yield oa.sse(error_body(spec.kind, spec.code, str(exc)))
        return
    finally:
        await generation.aclose()
    yield _chunk(served, {}, _finish_reason(generation))
    if usage:
        counts = oa.usage(generation.prompt_tokens, generation.completion_tokens)
        yield _chunk(served, {}, usage_counts=counts)
    yield oa.SSE_DONE


def _chunk(served: _Served, delta: dict[str, str], finish_reason: str | None = None,
           usage_counts: dict[str, int] | None = None) -> bytes:
    """One SSE chunk event; the usage chunk (``usage_counts`` given) has no choices."""
    return oa.sse(oa.chunk_body(
        completion_id=f"chatcmpl-{served.request_id}", created=served.created,
        model=served.model, delta=delta, finish_reason=finish_reason,
        extension=served.extension(), usage_counts=usage_counts, choices=usage_counts is None,
    ))


def _finish_reason(generation: GenerationLike) -> str:
    return "length" if generation.finish_reason == "length" else "stop"


async def _remember(deps: ServingDeps, served: _Served, text: str) -> None:
    context = ServedContext(
        task=served.task, kind="chat", input=served.messages, output=text,
        passage_ids=served.prompt.cited_ids, adapter_version=served.version,
        served_at=deps.clock(),
    )
    await deps.contexts.put(served.request_id, context, deps.settings.context_ttl_s)
