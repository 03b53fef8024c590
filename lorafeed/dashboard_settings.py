"""Settings of ``lorafeed dashboard`` (env prefix ``LORAFEED_DASHBOARD_``): where it listens and
which services it reads. The broker, topic prefix and adapter store are platform settings."""

from __future__ import annotations

import ipaddress
from typing import Annotated, Self
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

UrlList = Annotated[list[str], NoDecode]


def _urls(value: object) -> list[str]:
    """A comma-separated string or a list of http(s) base URLs, trailing '/' removed."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        raise ValueError(f"expected a comma-separated list of URLs, got {value!r}")
    urls = []
    for item in items:
        url = str(item).strip().rstrip("/")
        if not url:
            continue
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"{url!r} is not an http(s) URL like http://127.0.0.1:8001")
        urls.append(url)
    return urls


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the server reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class DashboardSettings(BaseSettings):
    """What the dashboard reads and how often. Node URLs are serving nodes' base URLs (their
    ``/healthz`` and ``/metrics`` are read); metrics URLs are full ``/metrics`` URLs (a bare
    ``host:port`` URL gets ``/metrics`` appended)."""

    # errors never echo input: a model-level error would print the keys with it
    model_config = SettingsConfigDict(
        env_prefix="LORAFEED_DASHBOARD_", extra="ignore", hide_input_in_errors=True
    )

    host: str = Field(default="127.0.0.1", description="Address the dashboard binds.")
    port: int = Field(default=8090, ge=0, le=65535, description="HTTP port (0 picks one).")
    nodes: UrlList = Field(default_factory=list, description="Serving node base URLs.")
    streams_metrics: UrlList = Field(
        default_factory=list, description="Streams workers' /metrics (STREAMS_METRICS_PORT)."
    )
    learner_metrics: UrlList = Field(
        default_factory=list, description="Learners' /metrics (LEARNER_METRICS_PORT)."
    )
    admin_key: SecretStr | None = Field(
        default=None, description="A serving admin API key: nodes' /metrics need the admin role."
    )
    access_key: SecretStr | None = Field(
        default=None,
        description="Key that `/` and `/state.json` require (`Authorization: Bearer KEY`, "
        "`X-API-Key: KEY`, or HTTP Basic with KEY as the password, so a browser can open the "
        "page). The page relays the nodes' admin-only /metrics: unset, the dashboard may only "
        "bind a loopback address.",
    )
    refresh_s: float = Field(default=2.0, ge=0.2, le=3600, description="Refresh period.")
    history: int = Field(default=120, ge=2, le=100_000, description="Refreshes kept for trends.")
    http_timeout_s: float = Field(default=2.0, gt=0, le=60, description="Per-scrape timeout.")

    @field_validator("nodes", "streams_metrics", "learner_metrics", mode="before")
    @classmethod
    def _split_urls(cls, value: object) -> list[str]:
        return _urls(value)

    @field_validator("access_key", mode="before")
    @classmethod
    def _strong_key(cls, value: object) -> object:
        raw = value.get_secret_value() if isinstance(value, SecretStr) else value
        if raw in ("", None):  # `LORAFEED_DASHBOARD_ACCESS_KEY=` (compose's ${VAR:-}): unset
            return None
        if not isinstance(raw, str) or len(raw) < 16:
            raise ValueError("the access key must be a string of at least 16 characters")
        return value

    @model_validator(mode="after")
    def _key_beyond_loopback(self) -> Self:
        if self.access_key is None and not is_loopback(self.host):
            raise ValueError(
                f"host {self.host!r} is not a loopback address: set LORAFEED_DASHBOARD_ACCESS_KEY "
                "(the page shows the nodes' admin-only metrics) or bind 127.0.0.1"
            )
        return self

    @field_validator("streams_metrics", "learner_metrics")
    @classmethod
    def _metrics_path(cls, value: list[str]) -> list[str]:
        return [url if urlsplit(url).path else f"{url}/metrics" for url in value]
