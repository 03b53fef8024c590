"""Secrets (API keys, the PII HMAC key, S3 keys, the dashboard's keys) never show: not in settings
reprs, dumps or validation errors, not in the messages of the errors a bad secret raises, not in
any process's log, /metrics or HTTP answer. The running world has every secret planted in every
process's environment; the in-process checks plant them in each settings class."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from lorafeed.dashboard_settings import DashboardSettings
from lorafeed.endpoints import EndpointError, pii_key
from lorafeed.privacy import InvalidPrivacyKey, Pseudonymizer
from lorafeed.settings import PlatformSettings
from serving.settings import ServingSettings, new_api_key, parse_api_keys
from tests.security.world import (
    DASHBOARD_ACCESS_KEY,
    PII_KEY,
    S3_KEY_ID,
    S3_SECRET,
    SecureWorld,
)

pytestmark = pytest.mark.integration

PROBE = "probe-secret-Xy7Qk2Lm9Np4Rs6T"


def _shown(value: Any) -> str:
    """Every way a settings object is commonly printed or serialised."""
    dumped = value.model_dump_json() if hasattr(value, "model_dump_json") else ""
    return "\n".join([repr(value), str(value), f"{value!r}", dumped, str(value.__dict__)])


def test_settings_never_show_their_secrets() -> None:
    plain_key, entry = new_api_key("admin", "ops")
    shown = {
        "platform": PlatformSettings(pii_key=PROBE, s3_access_key_id=PROBE,
                                     s3_secret_access_key=PROBE),
        "serving": ServingSettings(api_keys=f"[{entry.model_dump_json()}]"),
        "dashboard": DashboardSettings(admin_key=PROBE, access_key=PROBE),
    }
    for name, settings in shown.items():
        text = _shown(settings)
        assert PROBE not in text and plain_key not in text, name
        assert "**********" in text, f"{name}: the secret field is not a SecretStr"
    assert PROBE not in repr(Pseudonymizer(PROBE.encode()))


@pytest.mark.parametrize(("build", "env"), [
    (lambda: PlatformSettings(topic_prefix="bad prefix!", pii_key=PROBE), {}),
    (lambda: PlatformSettings(adapter_store_url="ftp://nope", s3_secret_access_key=PROBE), {}),
    (lambda: PlatformSettings(), {"LORAFEED_ADAPTER_STORE_URL": "ftp://x",
                                  "LORAFEED_S3_SECRET_ACCESS_KEY": PROBE}),
    (lambda: ServingSettings(api_keys=PROBE), {}),
    (lambda: ServingSettings(api_keys=f'[{{"sha256": "{PROBE}", "role": "app", "name": "a"}}]'),
     {}),
    (lambda: ServingSettings(port=-1), {"SERVING_API_KEYS": f'["{PROBE}"]'}),
    (lambda: DashboardSettings(host="0.0.0.0", admin_key=PROBE), {}),
    (lambda: DashboardSettings(refresh_s=0), {"LORAFEED_DASHBOARD_ADMIN_KEY": PROBE}),
    (lambda: DashboardSettings(access_key=PROBE[:8]), {}),
    (lambda: Pseudonymizer(PROBE[:8].encode()), {}),
])
def test_errors_about_bad_settings_never_echo_a_secret(
    build: Any, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises((ValidationError, ValueError, InvalidPrivacyKey)) as refused:
        build()
    message = str(refused.value)
    assert message.strip()
    assert PROBE not in message and PROBE[:8] not in message, message


def test_a_plain_key_given_as_a_digest_is_refused_without_echoing_it() -> None:
    plain, _entry = new_api_key("app", "shop")
    with pytest.raises(ValueError) as refused:
        parse_api_keys(f'[{{"sha256": "{plain}", "role": "app", "name": "shop"}}]')
    assert plain not in str(refused.value) and "never the key" in str(refused.value)


def test_the_generated_pii_key_is_private_and_never_in_errors(tmp_path: Path) -> None:
    key = pii_key(PlatformSettings(state_dir=tmp_path / "state"))
    path = tmp_path / "state" / "pii.key"
    assert len(key) >= 32 and path.read_bytes().strip() == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600, oct(path.stat().st_mode)
    with pytest.raises(EndpointError) as refused:
        pii_key(PlatformSettings(pii_key="short-secret"))
    assert "short-secret" not in str(refused.value)


def _secrets(world: SecureWorld) -> dict[str, str]:
    return {"pii key": PII_KEY, "app key": world.keys.app, "admin key": world.keys.admin,
            "s3 key id": S3_KEY_ID, "s3 secret": S3_SECRET, "dashboard key": DASHBOARD_ACCESS_KEY}


def _leaks(secrets: dict[str, str], where: str, blob: bytes | str) -> list[str]:
    data = blob.encode("utf-8", "replace") if isinstance(blob, str) else blob
    return [f"{name} in {where}" for name, value in secrets.items() if value.encode() in data]


def test_no_secret_in_logs_metrics_or_answers(world: SecureWorld) -> None:
    secrets = _secrets(world)
    planted = (PII_KEY, S3_KEY_ID, S3_SECRET, DASHBOARD_ACCESS_KEY, world.keys.admin)
    assert set(planted) <= set(world.env().values()), "a secret is not planted: no proof"
    leaks: list[str] = []
    with world.http("app") as app, world.http("admin") as admin:
        answers = {
            "healthz": app.get("/healthz").text, "readyz": app.get("/readyz").text,
            "models": app.get("/v1/models").text,
            "401": httpx.get(f"{world.node.url}/v1/models", timeout=10,  # type: ignore[union-attr]
                             headers={"Authorization": f"Bearer {PII_KEY}"}).text,
            "403": app.get("/metrics").text,
            "422": app.post("/v1/score", json={"task": "intent", "text": "x", "x": 1}).text,
            "admin 422": admin.post("/admin/tasks/intent/pin", json={"version": "bad"}).text,
            "404": app.post("/v1/score", json={"task": "nosuchtask", "text": "x"}).text,
        }
    for name, text in answers.items():
        leaks += _leaks(secrets, name, text)  # the 401 does not echo the key it was given
    for name, text in world.metrics().items():
        leaks += _leaks(secrets, f"{name} /metrics", text)
    for name, log in world.logs().items():
        leaks += _leaks(secrets, f"{name} log", log)
    stack_logs = world.serving.scenario.stack.settings.state_dir / "logs"
    for path, data in world.files_under(stack_logs, world.root / "logs"):
        leaks += _leaks(secrets, str(path), data)
    assert leaks == [], leaks
    assert os.environ.get("LORAFEED_PII_KEY") != PII_KEY  # the test process kept them private


def test_the_dashboard_never_follows_a_redirect_with_the_admin_key() -> None:
    """urllib repeats headers on redirects, to any host: a node answering with a redirect must
    not walk the admin key over to whatever it names."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from lorafeed.dashboard_scrape import scrape_node

    seen: list[str] = []

    class Elsewhere(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            seen.append(self.headers.get("Authorization", ""))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *_args: object) -> None:
            return None

    elsewhere = ThreadingHTTPServer(("127.0.0.1", 0), Elsewhere)

    class Node(Elsewhere):
        def do_GET(self) -> None:  # noqa: N802
            if self.path == "/healthz":
                body = b'{"status": "ok", "node_id": "n"}'
                self.send_response(200)
                self.end_headers()
                self.wfile.write(body)
                return
            self.send_response(307)
            self.send_header("Location", f"http://127.0.0.1:{elsewhere.server_port}/steal")
            self.end_headers()

    node = ThreadingHTTPServer(("127.0.0.1", 0), Node)
    for server in (elsewhere, node):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        scrape = scrape_node(f"http://127.0.0.1:{node.server_port}", 5, PROBE)
    finally:
        for server in (elsewhere, node):
            server.shutdown()
            server.server_close()
    assert seen == [], "the admin key followed the redirect"
    assert scrape.error is not None and "307" in scrape.error and PROBE not in scrape.error
