"""Request body cap as ASGI middleware: 413 naming the limit, from Content-Length when the
client sends one, else while the body streams in (chunked uploads are counted too)."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.http_errors import BodyTooLarge, error_body, send_json


class BodyLimitMiddleware:
    """Refuses bodies over ``max_bytes``. A body that grows past it mid-stream raises a 413
    HTTPException inside the app (FastAPI re-raises those while reading a body, and the app's
    handler answers); should it escape, this middleware answers 413 if nothing was sent yet."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(send, BodyTooLarge(self.max_bytes, declared))
            return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise HTTPException(413, str(BodyTooLarge(self.max_bytes)))
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except HTTPException as exc:
            if started or exc.status_code != 413:
                raise
            await self._refuse(send, BodyTooLarge(self.max_bytes))

    async def _refuse(self, send: Send, exc: BodyTooLarge) -> None:
        body = error_body("invalid_request_error", "body_too_large", str(exc))
        await send_json(send, 413, body, {"connection": "close"})


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
