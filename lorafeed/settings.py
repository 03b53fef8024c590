"""Settings of the shared platform: where the broker, Redis and Milvus are, and the embedded stack.

Read once by a composition root (the CLI or a service's ``app.py``) and passed down; there is no
module-level settings object. Service-specific settings (``STREAMS_``, ``LEARNER_``,
``SERVING_``) embed :class:`PlatformSettings` rather than repeating its fields.
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_PREFIX_RE = re.compile(r"^[A-Za-z0-9._-]*$")


class PlatformSettings(BaseSettings):
    """How every service reaches the shared infrastructure (env prefix ``LORAFEED_``).

    Left unset, the URLs are read from the embedded stack's state file (``lorafeed stack up``
    writes it), so services started beside the stack find it without configuration.
    """

    model_config = SettingsConfigDict(env_prefix="LORAFEED_", extra="ignore")

    state_dir: Path = Field(
        default=Path(".lorafeed"),
        description="Where the embedded stack keeps pids, ports, logs and data.",
    )
    bootstrap_servers: str | None = Field(
        default=None, description="Kafka bootstrap servers, host:port[,host:port]."
    )
    redis_url: str | None = Field(default=None, description="Redis URL, redis://host:port/db.")
    milvus_uri: str | None = Field(default=None, description="Milvus URI, http://host:port.")
    topic_prefix: str = Field(
        default="", description="Prepended to every topic name (e.g. 'staging.')."
    )
    adapter_store: Path | None = Field(
        default=None,
        description="Adapter store root shared by the learner, serving nodes and the CLI "
        "(default: <state_dir>/adapters).",
    )
    pii_key: SecretStr | None = Field(
        default=None,
        description="HMAC key of PII pseudonyms, shared by every service. Unset: a random key "
        "is created once in the state dir (fine for one machine, not for a deployment).",
    )
    adapter_store_url: str | None = Field(
        default=None,
        description="Remote adapter store, s3://bucket[/prefix], for services on several "
        "machines: the learner pushes versions and pointers there, serving nodes pull and "
        "verify them. Unset: the local adapter store only.",
    )
    s3_endpoint_url: str | None = Field(
        default=None,
        description="S3-compatible endpoint of the remote adapter store (e.g. http://minio:9000); "
        "unset: AWS S3.",
    )
    s3_access_key_id: SecretStr | None = Field(
        default=None, description="Access key of the remote adapter store (unset: boto3's chain)."
    )
    s3_secret_access_key: SecretStr | None = Field(
        default=None, description="Secret key of the remote adapter store."
    )
    s3_region: str = Field(default="us-east-1", description="Region of the remote adapter store.")
    adapter_poll_s: float = Field(
        default=30.0,
        gt=0,
        description="How often serving nodes re-read the remote champion pointers (model "
        "events make them look at once; polling catches an event sent before an upload), and "
        "how often the learner retries a failed push.",
    )

    def adapter_store_root(self) -> Path:
        """Where adapter versions, champion pointers and pins live."""
        return self.adapter_store if self.adapter_store is not None else self.state_dir / "adapters"

    @field_validator("topic_prefix")
    @classmethod
    def _legal_prefix(cls, value: str) -> str:
        if not _PREFIX_RE.match(value) or len(value) > 200:
            raise ValueError(
                f"topic prefix {value!r} may only hold letters, digits, '.', '_' and '-' "
                "(at most 200 characters)"
            )
        return value

    @field_validator("adapter_store_url")
    @classmethod
    def _s3_url(cls, value: str | None) -> str | None:
        if value == "":  # `LORAFEED_ADAPTER_STORE_URL=` (e.g. from compose's ${VAR:-}): unset
            return None
        if value is not None:
            from lorafeed.adapter_bucket import parse_store_url  # names the bad part

            parse_store_url(value)
        return value


class StackSettings(BaseSettings):
    """The embedded stack started by ``lorafeed stack up`` (env prefix ``LORAFEED_STACK_``).

    A port of 0 means "pick a free one"; the chosen ports are kept in the state file so
    ``status`` and the services find them again.
    """

    model_config = SettingsConfigDict(env_prefix="LORAFEED_STACK_", extra="ignore")

    state_dir: Path = Field(default=Path(".lorafeed"))
    host: str = Field(default="127.0.0.1", description="Every component binds here only.")
    kafka_port: int = Field(default=9092, ge=0, le=65535)
    milvus_port: int = Field(default=19530, ge=0, le=65535)
    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0",
        description="Reused when a Redis answers there; otherwise one is started on its port.",
    )
    topic_prefix: str = Field(default="")
    health_timeout_s: float = Field(default=30.0, gt=0)

    @field_validator("host")
    @classmethod
    def _loopback_only(cls, value: str) -> str:
        # The embedded stack has no authentication: it must never listen beyond this machine.
        if not (value.startswith("127.") or value == "localhost"):
            raise ValueError(f"embedded stack host {value!r} must be a loopback address")
        # Tansu listens on IPv4 only and must advertise an address clients can dial (PLATFORM.md).
        return "127.0.0.1" if value == "localhost" else value

    @field_validator("topic_prefix")
    @classmethod
    def _legal_prefix(cls, value: str) -> str:
        return PlatformSettings._legal_prefix(value)
