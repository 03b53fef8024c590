"""Every HTTP route of a FastAPI app, found from its router (not its OpenAPI document, which a
route can leave itself out of), across FastAPI versions: included routers are flattened."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.routing import BaseRoute, Route


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # the template, e.g. /admin/tasks/{task}/pin
    body_fields: tuple[str, ...]

    def url(self, **params: str) -> str:
        path = self.path
        for name, value in params.items():
            path = path.replace("{" + name + "}", value)
        return path


def _flat(routes: list[BaseRoute]) -> list[tuple[str, BaseRoute]]:
    try:  # FastAPI >= 0.16x wraps included routers; this yields their effective paths
        from fastapi.routing import iter_route_contexts
    except ImportError:
        return [(getattr(route, "path", ""), route) for route in routes]
    return [(context.path, context.original_route) for context in iter_route_contexts(routes)]


def endpoints(app: Any) -> list[Endpoint]:
    """(method, path, body field names) of every route of `app`; a route without methods (a
    mount, a websocket) is listed with method "*" so a rule has to exist for it too."""
    found = []
    for path, route in _flat(list(app.routes)):
        body = getattr(route, "body_field", None)
        annotation = getattr(getattr(body, "field_info", None), "annotation", None)
        fields = tuple(getattr(annotation, "model_fields", {}))
        methods = sorted(route.methods or ()) if isinstance(route, Route) else []
        for method in methods or ["*"]:
            if method != "HEAD":
                found.append(Endpoint(method, path, fields))
    return sorted(found, key=lambda e: (e.path, e.method))
