"""API keys: hashed configuration, constant-time identification, header parsing, path roles,
and the fixed-window rate decision."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from serving.auth import KeyRing, extract_key, required_role
from serving.ratelimit import decide, retry_after_seconds
from serving.settings import (
    ApiKeyEntry,
    ServingSettings,
    hash_key,
    main,
    new_api_key,
    parse_api_keys,
)


def entry(plain: str, role: str = "app", name: str = "app-1") -> dict[str, str]:
    return {"sha256": hash_key(plain), "role": role, "name": name}


def test_hash_key_is_sha256_hex() -> None:
    assert hash_key("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_keyring_identifies_by_digest_only() -> None:
    entries = parse_api_keys(json.dumps([entry("k-app"), entry("k-admin", "admin", "ops")]))
    ring = KeyRing(entries)
    app = ring.identify("k-app")
    assert app is not None and (app.name, app.roles) == ("app-1", frozenset({"app"}))
    admin = ring.identify("k-admin")
    assert admin is not None and admin.roles == frozenset({"admin"})
    assert ring.identify("k-app ") is None
    assert ring.identify(hash_key("k-app")) is None  # the digest itself is no key
    assert ring.identify("") is None
    assert KeyRing([]).identify("k-app") is None


def test_new_keys_are_random_and_accepted() -> None:
    plain, made = new_api_key("admin", "ops")
    other, _ = new_api_key("admin", "ops")
    assert plain != other and len(plain) > 40
    assert KeyRing([made]).identify(plain) is not None


def test_key_cli_prints_a_key_and_its_entry(capsys: pytest.CaptureFixture[str]) -> None:
    main(["--role", "app", "--name", "shop"])
    key_line, entry_line = capsys.readouterr().out.splitlines()
    plain = key_line.split(": ", 1)[1]
    made = ApiKeyEntry.model_validate_json(entry_line.split(": ", 1)[1])
    assert (made.role, made.name, made.sha256) == ("app", "shop", hash_key(plain))


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ("not json", "not JSON"),
        ('{"sha256": "x"}', "must be a JSON list"),
        (json.dumps([{"sha256": "plain-secret-key", "role": "app", "name": "a"}]), "sha256"),
        (json.dumps([{**entry("a"), "role": "root"}]), "role"),
        (json.dumps([entry("a"), entry("b")]), "repeats names"),
    ],
)
def test_bad_key_config_is_refused_without_echoing_it(raw: str, needle: str) -> None:
    with pytest.raises(ValueError, match=needle) as caught:
        parse_api_keys(raw)
    assert "plain-secret-key" not in str(caught.value)


def test_settings_validate_keys_and_keep_them_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVING_API_KEYS", json.dumps([entry("k")]))
    monkeypatch.setenv("SERVING_MAX_TOKENS_CAP", "100")
    loaded = ServingSettings()
    assert loaded.max_tokens_cap == 100 and loaded.key_entries()[0].name == "app-1"
    assert hash_key("k") not in repr(loaded)
    monkeypatch.setenv("SERVING_API_KEYS", '[{"sha256": "leak-me", "role": "app", "name": "a"}]')
    with pytest.raises(ValidationError) as caught:
        ServingSettings()
    assert "leak-me" not in str(caught.value)


@pytest.mark.parametrize(
    ("headers", "key"),
    [
        ([(b"authorization", b"Bearer abc")], "abc"),
        ([(b"Authorization", b"bearer   abc ")], "abc"),
        ([(b"x-api-key", b"xyz")], "xyz"),
        ([(b"authorization", b"Basic abc"), (b"x-api-key", b"xyz")], "xyz"),
        ([(b"authorization", b"Bearer ")], None),
        ([], None),
    ],
)
def test_extract_key(headers: list[tuple[bytes, bytes]], key: str | None) -> None:
    assert extract_key(headers) == key


def test_required_roles_by_path() -> None:
    assert required_role("/healthz") is None and required_role("/readyz") is None
    assert required_role("/metrics") == "admin"
    assert required_role("/admin/tasks/x/pin") == "admin"
    assert required_role("/v1/score") == "app"
    assert required_role("/anything-else") == "app"  # unknown paths are not public
    assert required_role("/metrics/") == "app"


def test_rate_decision() -> None:
    assert decide(1, 60_000, 2, 60_000).allowed
    second = decide(2, 59_001, 2, 60_000)
    assert second.allowed and second.remaining == 0
    third = decide(3, 1_500, 2, 60_000)
    assert (third.allowed, third.retry_after_s, third.limit) == (False, 2, 2)
    assert decide(3, -1, 2, 60_000).retry_after_s == 60  # no TTL seen: a whole window
    assert retry_after_seconds(1) == 1 and retry_after_seconds(0) == 1
