"""Request bodies parsed as strict JSON: UTF-8 text with no unpaired surrogate escape, no NaN or
Infinity, no nesting past the recursion limit and no integer past Python's digit limit. Python's
json module turns ``"\\ud800"`` into a lone surrogate, which is not Unicode: tokenizers, Redis and
the event codec then fail deep inside a request (or a whole score batch). Every router of the
API uses `StrictJsonRoute`, so such a body is refused up front as invalid JSON (422).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute


def loads_strict(body: bytes) -> Any:
    """``body`` as JSON; json.JSONDecodeError (what FastAPI answers 422 for, naming the problem)
    when it is not UTF-8, not strict JSON, nested too deeply or holds a lone surrogate escape."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise json.JSONDecodeError(
            f"the body is not UTF-8 (invalid byte at {exc.start})", "", exc.start
        ) from None
    try:
        value = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError:  # a nesting bomb: say so instead of FastAPI's bare 400
        raise json.JSONDecodeError(
            "the JSON nests too deeply (Python's recursion limit)", "", 0
        ) from None
    except ValueError as exc:
        if isinstance(exc, json.JSONDecodeError):
            raise
        # an integer literal over Python's 4300-digit limit, NaN, Infinity or 1e999
        raise json.JSONDecodeError(str(exc)[:200], "", 0) from None
    if "\\u" in text:  # only escapes can smuggle a surrogate past the UTF-8 decode above
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as exc:
            escape = f"\\u{ord(exc.object[exc.start]):04x}"
            position = max(text.lower().find(escape), 0)
            raise json.JSONDecodeError(
                f"{escape} is a lone surrogate, not Unicode text", text, position
            ) from None
    return value


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number (NaN and Infinity are refused)")


def _finite_float(literal: str) -> float:
    value = float(literal)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"the number {literal[:40]} overflows a 64-bit float")
    return value


class StrictJsonRequest(Request):
    """A request whose `json()` is `loads_strict`."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = loads_strict(await self.body())
        return self._json


class StrictJsonRoute(APIRoute):
    """An APIRoute whose handler reads its JSON body with `loads_strict`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict_handler(request: Request) -> Response:
            return await handler(StrictJsonRequest(request.scope, request.receive))

        return strict_handler
