"""Settings validation: loopback-only embedded stack, legal topic prefixes, env overrides."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from lorafeed.settings import PlatformSettings, StackSettings


def test_stack_refuses_a_non_loopback_host() -> None:
    with pytest.raises(ValidationError, match="'0.0.0.0' must be a loopback address"):
        StackSettings(host="0.0.0.0")


def test_localhost_is_advertised_as_ipv4() -> None:
    assert StackSettings(host="localhost").host == "127.0.0.1"


@pytest.mark.parametrize("prefix", ["bad prefix", "a/b", "x" * 201, "ü."])
def test_illegal_topic_prefix_is_named(prefix: str) -> None:
    with pytest.raises(ValidationError, match="topic prefix"):
        PlatformSettings(topic_prefix=prefix)
    with pytest.raises(ValidationError, match="topic prefix"):
        StackSettings(topic_prefix=prefix)


def test_env_overrides_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LORAFEED_STACK_KAFKA_PORT", "0")
    monkeypatch.setenv("LORAFEED_STACK_TOPIC_PREFIX", "dev.")
    settings = StackSettings()
    assert settings.kafka_port == 0 and settings.topic_prefix == "dev."
    monkeypatch.setenv("LORAFEED_STACK_KAFKA_PORT", "70000")
    with pytest.raises(ValidationError, match="kafka_port"):
        StackSettings()
