"""API-key roles as a 401/403 matrix over every route of the serving app and of `lorafeed
dashboard`, both enumerated from the apps themselves: a route without a rule in the tables below
fails the test. Each route is called by every kind of caller (no key, unknown keys, malformed
headers, the app key, the admin key, each as Bearer and as X-API-Key), in process and against
the real processes; path spellings that might slip past the role check are tried raw."""

from __future__ import annotations

import base64
import http.client
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from lorafeed import procs
from lorafeed.dashboard import Dashboard, create_app
from lorafeed.dashboard_settings import DashboardSettings
from schemas import Topic
from schemas.audit import AuditRecorded
from tests.security.routes import Endpoint, endpoints
from tests.security.world import DASHBOARD_ACCESS_KEY, SecureWorld
from tests.support.workers import ROOT, wait_for
from tests.unit.serving.fakes import ADMIN_KEY, APP_KEY
from tests.unit.serving.harness import build

pytestmark = pytest.mark.integration

# Who may call what. None: anyone (health probes). A new route needs a line here.
SERVING_RULES: dict[tuple[str, str], str | None] = {
    ("GET", "/healthz"): None,
    ("GET", "/readyz"): None,
    ("GET", "/metrics"): "admin",
    ("GET", "/v1/models"): "app",
    ("POST", "/v1/chat/completions"): "app",
    ("POST", "/v1/score"): "app",
    ("POST", "/v1/feedback"): "app",
    ("POST", "/v1/search"): "app",
    ("POST", "/admin/tasks/{task}/pin"): "admin",
    ("POST", "/admin/tasks/{task}/unpin"): "admin",
    ("POST", "/admin/tasks/{task}/rollback"): "admin",
}
DASHBOARD_RULES: dict[tuple[str, str], str | None] = {
    ("GET", "/healthz"): None,
    ("GET", "/"): "viewer",
    ("GET", "/state.json"): "viewer",
}
UNKNOWN = "lf-not-a-key-0123456789"
# An extra field every body model refuses: a call that passes the role check ends in a 422
# before it can change anything (a bare {} would really unpin or roll back).
PROBE = {"__probe__": 1}


def _callers(app: str, admin: str) -> dict[str, tuple[str | None, dict[str, str]]]:
    """name -> (the role it holds, its headers)."""
    return {
        "anonymous": (None, {}),
        "unknown-bearer": (None, {"Authorization": f"Bearer {UNKNOWN}"}),
        "unknown-x-api-key": (None, {"X-API-Key": UNKNOWN}),
        "empty-bearer": (None, {"Authorization": "Bearer"}),
        "basic-scheme": (None, {"Authorization": "Basic " + base64.b64encode(
            f"x:{app}".encode()).decode()}),
        "key-without-scheme": (None, {"Authorization": app}),
        "app-prefix-of-key": (None, {"Authorization": f"Bearer {app[:-1]}"}),
        "app-bearer": ("app", {"Authorization": f"Bearer {app}"}),
        "app-x-api-key": ("app", {"X-API-Key": app}),
        "admin-bearer": ("admin", {"Authorization": f"Bearer {admin}"}),
        "admin-x-api-key": ("admin", {"X-API-Key": admin}),
    }


def _expect(rule: str | None, role: str | None, status: int, headers: Any, body: str) -> str:
    """'' when the answer fits the rule, else what is wrong."""
    if rule is None:
        return "" if status not in (401, 403) else f"public route refused: {status}"
    if role is None:
        if status != 401 or "www-authenticate" not in {k.lower() for k in headers}:
            return f"no valid key: expected 401 with a challenge, got {status}"
        # the answer says what is missing, and never echoes what was presented
        return "" if "key" in body.lower() and UNKNOWN not in body else "401 body: " + body
    if role != rule:
        return "" if status == 403 and "forbidden" in body else f"wrong role: {status}"
    return "" if status not in (401, 403) else f"the right key was refused: {status} {body}"


def _matrix(send: Any, rules: dict[tuple[str, str], str | None], routes: list[Endpoint],
            callers: dict[str, tuple[str | None, dict[str, str]]]) -> list[str]:
    assert {(r.method, r.path) for r in routes} == set(rules), (
        "routes without a rule (or rules without a route): "
        f"{ {(r.method, r.path) for r in routes} ^ set(rules) }")
    problems = []
    for route in routes:
        for name, (role, headers) in callers.items():
            status, answer_headers, body = send(route, headers)
            wrong = _expect(rules[(route.method, route.path)], role, status, answer_headers, body)
            if wrong:
                problems.append(f"{route.method} {route.path} as {name}: {wrong}")
    return problems


def test_serving_matrix_in_process() -> None:
    harness = build(raise_server_exceptions=False)
    routes = endpoints(harness.client.app)

    def send(route: Endpoint, headers: dict[str, str]) -> tuple[int, Any, str]:
        response = harness.client.request(route.method, route.url(task="fraud"), json=PROBE,
                                          headers=headers)
        return response.status_code, response.headers, response.text

    problems = _matrix(send, SERVING_RULES, routes, _callers(APP_KEY, ADMIN_KEY))
    assert problems == [], "\n".join(problems)
    assert harness.registry.ops == [], "an unauthorized call reached the registry"


def test_serving_matrix_on_the_real_node(world: SecureWorld) -> None:
    assert world.node is not None
    routes = endpoints(build().client.app)

    with httpx.Client(base_url=world.node.url, timeout=30) as client:
        def send(route: Endpoint, headers: dict[str, str]) -> tuple[int, Any, str]:
            response = client.request(route.method, route.url(task="intent"), json=PROBE,
                                      headers=headers)
            return response.status_code, response.headers, response.text

        problems = _matrix(send, SERVING_RULES, routes, _callers(world.keys.app,
                                                                 world.keys.admin))
    assert problems == [], "\n".join(problems)


SNEAKY_PATHS = (
    "/metrics/", "//metrics", "/METRICS", "/metrics?x=1", "/%6detrics", "/metrics%2f", "/./metrics",
    "/v1/../metrics", "/healthz/../metrics", "/healthz/..%2fmetrics", "/readyz%2f..%2fmetrics",
    "/metrics;x", "/metrics%00", "/admin/tasks/intent/pin/", "//admin/tasks/intent/pin",
    "/ADMIN/tasks/intent/pin", "/admin/tasks/intent/./pin", "/v1/../admin/tasks/intent/pin",
    "/admin%2ftasks%2fintent%2fpin", "/%61dmin/tasks/intent/pin", "/admin/tasks/intent/pin;x",
    "/healthz/../admin/tasks/intent/pin", "/admin/tasks/intent/pin%20", "/admin/tasks/%2e%2e/pin",
)


def _raw(url: str, method: str, path: str, headers: dict[str, str], body: bytes = b"") -> tuple[
        int, str]:
    """One request with the path sent byte for byte (no client-side normalisation)."""
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.putrequest(method, path, skip_accept_encoding=True)
        for name, value in {**headers, "Content-Type": "application/json",
                            "Content-Length": str(len(body))}.items():
            connection.putheader(name, value)
        connection.endheaders(body)
        response = connection.getresponse()
        return response.status, response.read().decode("utf-8", "replace")
    finally:
        connection.close()


def test_odd_path_spellings_do_not_slip_past_the_roles(world: SecureWorld) -> None:
    assert world.node is not None
    leaks = []
    for path in SNEAKY_PATHS:
        for who, headers in (("anonymous", {}),
                             ("app", {"Authorization": f"Bearer {world.keys.app}"})):
            method = "GET" if "metrics" in path else "POST"
            body = json.dumps({"version": "base", "reason": "sneaky"}).encode()
            status, text = _raw(world.node.url, method, path, headers, body)
            if status < 300 or "lorafeed_serving" in text or "audit_id" in text:
                leaks.append(f"{who} {method} {path} -> {status}: {text[:200]}")
    assert leaks == [], "\n".join(leaks)
    sneaky = [e for e in world.read(Topic.AUDIT_EVENTS)
              if isinstance(e, AuditRecorded) and e.detail.get("reason") == "sneaky"]
    assert sneaky == [], "an odd path spelling reached an admin action"


# -- dashboard ---------------------------------------------------------------------------------


class _Still:
    """A collector that never changes: the dashboard's own routes are what is under test."""

    def __call__(self) -> Any:
        raise AssertionError("not refreshed in this test")


def _dashboard(**settings: Any) -> TestClient:
    return TestClient(create_app(Dashboard(_Still(), DashboardSettings(**settings))))


def _dashboard_callers(key: str) -> dict[str, tuple[str | None, dict[str, str]]]:
    def basic(password: str) -> str:
        return "Basic " + base64.b64encode(f"ops:{password}".encode()).decode()

    return {
        "anonymous": (None, {}),
        "wrong-bearer": (None, {"Authorization": f"Bearer {UNKNOWN}"}),
        "wrong-basic": (None, {"Authorization": basic(UNKNOWN)}),
        "key-as-basic-user": (None, {"Authorization": "Basic " + base64.b64encode(
            f"{key}:".encode()).decode()}),
        "broken-basic": (None, {"Authorization": "Basic %%%"}),
        "prefix-of-key": (None, {"X-API-Key": key[:-1]}),
        "bearer": ("viewer", {"Authorization": f"Bearer {key}"}),
        "x-api-key": ("viewer", {"X-API-Key": key}),
        "basic-password": ("viewer", {"Authorization": basic(key)}),
    }


def test_dashboard_matrix_in_process() -> None:
    client = _dashboard(access_key=DASHBOARD_ACCESS_KEY)

    def send(route: Endpoint, headers: dict[str, str]) -> tuple[int, Any, str]:
        response = client.request(route.method, route.path, headers=headers)
        return response.status_code, response.headers, response.text

    problems = _matrix(send, DASHBOARD_RULES, endpoints(client.app),
                       _dashboard_callers(DASHBOARD_ACCESS_KEY))
    assert problems == [], "\n".join(problems)
    challenge = client.get("/").headers["www-authenticate"]
    assert challenge.startswith("Basic "), challenge  # a browser asks for the key


def test_dashboard_without_a_key_may_only_listen_on_loopback() -> None:
    for host in ("0.0.0.0", "::", "192.168.1.10", "example.com"):
        with pytest.raises(ValueError, match="LORAFEED_DASHBOARD_ACCESS_KEY"):
            DashboardSettings(host=host)
    for host in ("127.0.0.1", "127.0.0.2", "::1", "localhost"):
        assert DashboardSettings(host=host).access_key is None
    with pytest.raises(ValueError, match="at least 16"):
        DashboardSettings(access_key="short")
    assert DashboardSettings(host="0.0.0.0", access_key=DASHBOARD_ACCESS_KEY).host == "0.0.0.0"


@pytest.fixture
def dashboard(world: SecureWorld, tmp_path: Path) -> Iterator[str]:
    """`lorafeed dashboard` over the world's node, with its access key (from world.env)."""
    assert world.node is not None
    port = procs.free_port()
    handle, popen = procs.spawn_child(
        "dashboard", [sys.executable, "-m", "lorafeed", "dashboard", "--port", str(port),
                      "--node", world.node.url, "--refresh", "0.5"],
        tmp_path / "dashboard.log", env=world.env(), cwd=ROOT)
    world.processes["dashboard"] = (handle, popen)
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if popen.poll() is not None:
            raise AssertionError(Path(handle.log_path).read_text(errors="replace")[-3000:])
        try:
            return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for(up, 120, "the dashboard answering")
        yield url
    finally:
        procs.stop(handle, timeout=20)
        del world.processes["dashboard"]


def test_dashboard_matrix_on_the_real_process(world: SecureWorld, dashboard: str) -> None:
    client = _dashboard(access_key=DASHBOARD_ACCESS_KEY)

    def send(route: Endpoint, headers: dict[str, str]) -> tuple[int, Any, str]:
        response = httpx.request(route.method, dashboard + route.path, headers=headers, timeout=30)
        return response.status_code, response.headers, response.text

    problems = _matrix(send, DASHBOARD_RULES, endpoints(client.app),
                       _dashboard_callers(DASHBOARD_ACCESS_KEY))
    assert problems == [], "\n".join(problems)
    viewer = {"Authorization": f"Bearer {DASHBOARD_ACCESS_KEY}"}

    def scraped() -> str | None:
        state = httpx.get(f"{dashboard}/state.json", headers=viewer, timeout=30).text
        return state if "sec-node" in state else None

    state = wait_for(scraped, 60, "the node's metrics on the dashboard (the admin key works)")
    page = httpx.get(dashboard, headers=viewer, timeout=30).text
    for secret in (world.keys.admin, world.keys.app, DASHBOARD_ACCESS_KEY):
        assert secret not in state and secret not in page


def test_dashboard_refuses_to_listen_beyond_loopback_without_a_key(world: SecureWorld) -> None:
    import subprocess

    done = subprocess.run(
        [sys.executable, "-m", "lorafeed", "dashboard", "--host", "0.0.0.0", "--port", "0"],
        env=world.env(LORAFEED_DASHBOARD_ACCESS_KEY=""), cwd=ROOT, capture_output=True,
        text=True, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "LORAFEED_DASHBOARD_ACCESS_KEY" in done.stderr + done.stdout
    assert world.keys.admin not in done.stderr + done.stdout


def test_the_schemathesis_fuzz_covers_every_route(tmp_path: Path) -> None:
    """tests/integration/test_serving_node.py fuzzes every operation of the OpenAPI document
    with auth on; that document must list every route the router serves (none hidden)."""
    from tests.support.serving_proc import Keys, openapi_document

    document = openapi_document(tmp_path, Keys.create())
    operations = {(method.upper(), path) for path, item in document["paths"].items()
                  for method in item}
    assert operations == set(SERVING_RULES), operations ^ set(SERVING_RULES)
