"""API key authentication and per-key rate limiting, as ASGI middleware in front of the app:
``Authorization: Bearer`` or ``X-API-Key``, compared by sha256 in constant time; ``/admin/*`` and
``/metrics`` need the admin role, other paths the app role, health checks none.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from starlette.types import ASGIApp, Receive, Scope, Send

from serving.http_errors import RETRY_AFTER_S, StoreUnavailable, error_body, send_json
from serving.ratelimit import RateLimiter
from serving.settings import ApiKeyEntry, Role

ANONYMOUS = "anonymous"
PUBLIC_PATHS = frozenset({"/healthz", "/readyz"})
_CHALLENGE = 'Bearer realm="lorafeed"'


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's configured name and the roles it holds."""

    name: str
    roles: frozenset[Role]


class KeyRing:
    """The accepted keys, by sha256 digest only."""

    def __init__(self, entries: Iterable[ApiKeyEntry]) -> None:
        self._entries = tuple(
            (bytes.fromhex(entry.sha256), Principal(entry.name, frozenset({entry.role})))
            for entry in entries
        )

    def identify(self, plain: str) -> Principal | None:
        """The principal whose digest matches ``plain``; every entry is compared, in constant
        time, so timing reveals neither which entry matched nor how much of one."""
        digest = hashlib.sha256(plain.encode("utf-8", "surrogatepass")).digest()
        found: Principal | None = None
        for expected, principal in self._entries:
            if hmac.compare_digest(digest, expected):
                found = principal
        return found


def required_role(path: str) -> Role | None:
    """The role a path needs; None for public paths."""
    if path in PUBLIC_PATHS:
        return None
    if path == "/metrics" or path.startswith("/admin/") or path == "/admin":
        return "admin"
    return "app"


def extract_key(headers: Sequence[tuple[bytes, bytes]]) -> str | None:
    """The key from ``Authorization: Bearer`` or ``X-API-Key`` (first one present)."""
    for name, value in headers:
        lowered = name.lower()
        if lowered == b"authorization":
            scheme, _, credentials = value.decode("latin-1").strip().partition(" ")
            if scheme.lower() == "bearer" and credentials.strip():
                return credentials.strip()
        elif lowered == b"x-api-key" and value.strip():
            return value.decode("latin-1").strip()
    return None


class AuthMiddleware:
    """Rejects unauthenticated (401), unauthorized (403) and over-limit (429) requests before
    the body is read; stores the principal in ``scope["state"]["principal"]``."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        keyring: KeyRing,
        enabled: bool,
        limiter: RateLimiter | None,
    ) -> None:
        self.app = app
        self.keyring = keyring
        self.enabled = enabled
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        role = required_role(scope["path"])
        if not self.enabled:
            principal: Principal | None = Principal(ANONYMOUS, frozenset({"app", "admin"}))
        else:
            key = extract_key(scope["headers"])
            principal = self.keyring.identify(key) if key is not None else None
            if role is not None and principal is None:
                why = "missing API key" if key is None else "unknown API key"
                await _deny(send, 401, "unauthenticated", f"{why}: send 'Authorization: "
                            "Bearer <key>' or 'X-API-Key: <key>'", {"www-authenticate": _CHALLENGE})
                return
        if role is not None and principal is not None and role not in principal.roles:
            await _deny(send, 403, "forbidden", f"key {principal.name!r} lacks the {role!r} role "
                        f"needed for {scope['path']}")
            return
        if role is not None and principal is not None and self.limiter is not None:
            try:
                decision = await self.limiter.hit(principal.name)
            except StoreUnavailable as exc:
                body = error_body("unavailable_error", "store_unavailable", str(exc))
                await send_json(send, 503, body, {"retry-after": str(RETRY_AFTER_S)})
                return
            if not decision.allowed:
                await _deny(send, 429, "rate_limited", f"key {principal.name!r} exceeded "
                            f"{decision.limit} requests per window; retry in "
                            f"{decision.retry_after_s} s",
                            {"retry-after": str(decision.retry_after_s)})
                return
        scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)


async def _deny(
    send: Send, status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> None:
    kind = {401: "authentication_error", 403: "permission_error"}.get(status, "rate_limit_error")
    await send_json(send, status, error_body(kind, code, message), headers)
