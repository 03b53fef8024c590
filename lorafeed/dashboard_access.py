"""The dashboard's access key, as ASGI middleware: with `LORAFEED_DASHBOARD_ACCESS_KEY` set, every
path but `/healthz` needs the key as `Authorization: Bearer`, `X-API-Key`, or the password of
HTTP Basic (a browser asks for it). Compared by sha256 digest in constant time."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Sequence

from starlette.types import ASGIApp, Receive, Scope, Send

PUBLIC_PATHS = frozenset({"/healthz"})
_CHALLENGE = b'Basic realm="lorafeed dashboard", charset="UTF-8"'


def presented_key(headers: Sequence[tuple[bytes, bytes]]) -> str | None:
    """The key a request presents: a Bearer token, an X-API-Key, or a Basic password."""
    for name, raw in headers:
        lowered, value = name.lower(), raw.decode("latin-1").strip()
        if lowered == b"x-api-key" and value:
            return value
        if lowered != b"authorization":
            continue
        scheme, _, credentials = value.partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            return credentials.strip()
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                return None
            return decoded.partition(":")[2] or None
    return None


class AccessKeyMiddleware:
    """401 (with a Basic challenge) unless the request presents the key."""

    def __init__(self, app: ASGIApp, *, key: str) -> None:
        self.app = app
        self._digest = hashlib.sha256(key.encode("utf-8")).digest()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return
        key = presented_key(scope["headers"])
        digest = hashlib.sha256((key or "").encode("utf-8", "surrogatepass")).digest()
        if key is not None and hmac.compare_digest(digest, self._digest):
            await self.app(scope, receive, send)
            return
        why = "missing access key" if key is None else "wrong access key"
        body = json.dumps({"error": f"{why}: send the dashboard's access key as the Basic "
                           "password, 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"})
        payload = body.encode("utf-8")
        await send({"type": "http.response.start", "status": 401, "headers": [
            (b"content-type", b"application/json"), (b"www-authenticate", _CHALLENGE),
            (b"content-length", b"%d" % len(payload)), (b"cache-control", b"no-store")]})
        await send({"type": "http.response.body", "body": payload})
