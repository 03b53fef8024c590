"""Settings of the serving node (env prefix ``SERVING_``), read once by the composition root.
API keys are configured as sha256 digests only: ``python -m serving.settings --role app --name
NAME`` prints a fresh key and its ``SERVING_API_KEYS`` entry.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import secrets
import socket
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.fields import Identifier, Sha256Hex

Role = Literal["app", "admin"]
KEY_BYTES = 32


class ApiKeyEntry(BaseModel):
    """One accepted key: the sha256 hex of the key, its role and a name (metrics, audit)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sha256: Sha256Hex
    role: Role
    name: Identifier


def hash_key(plain: str) -> str:
    """The sha256 hex digest of ``plain`` (UTF-8): what ``SERVING_API_KEYS`` stores."""
    return hashlib.sha256(plain.encode("utf-8")).hexdigest()


def new_api_key(role: Role, name: str) -> tuple[str, ApiKeyEntry]:
    """A random key (shown once) and the entry that accepts it."""
    plain = "lf-" + secrets.token_urlsafe(KEY_BYTES)
    return plain, ApiKeyEntry(sha256=hash_key(plain), role=role, name=name)


def parse_api_keys(raw: str) -> tuple[ApiKeyEntry, ...]:
    """``raw`` (a JSON list of {sha256, role, name}) as entries; messages never echo a value."""
    try:
        items = json.loads(raw or "[]")
    except json.JSONDecodeError as exc:
        raise ValueError(f"api_keys is not JSON ({exc.msg} at char {exc.pos})") from None
    if not isinstance(items, list):
        raise ValueError(f"api_keys must be a JSON list, got {type(items).__name__}")
    entries = []
    for index, item in enumerate(items):
        try:
            entries.append(ApiKeyEntry.model_validate(item))
        except ValidationError as exc:
            fields = sorted({".".join(map(str, e["loc"])) or "entry" for e in exc.errors()})
            raise ValueError(
                f"api_keys[{index}] is invalid in {fields}: each entry needs sha256 (64 lowercase "
                "hex characters of the key's digest, never the key), role app|admin and name"
            ) from None
    names = [entry.name for entry in entries]
    duplicated = sorted({name for name in names if names.count(name) > 1})
    if duplicated:
        raise ValueError(f"api_keys repeats names {duplicated}")
    return tuple(entries)


class ServingSettings(BaseSettings):
    """How the serving node listens, authenticates, limits and grounds requests.

    Infrastructure URLs and the PII key are platform settings (``LORAFEED_``).
    """

    # errors never echo values: api_keys may hold what someone mistook for a digest
    model_config = SettingsConfigDict(
        env_prefix="SERVING_", extra="ignore", hide_input_in_errors=True
    )

    node_id: Identifier = Field(
        default_factory=socket.gethostname, description="Names this node in model events."
    )
    host: str = Field(default="127.0.0.1", description="Bind address.")
    port: int = Field(default=8000, ge=0, le=65535)
    tasks_file: Path = Field(default=Path("config/tasks.toml"), description="The task catalog.")
    adapters_dir: Path | None = Field(
        default=None, description="The adapter store root (default <state_dir>/adapters)."
    )
    models_dir: Path | None = Field(
        default=None, description="Prepared base models (default ~/.cache/lorafeed/models)."
    )
    api_keys: SecretStr = Field(
        default=SecretStr("[]"),
        description='JSON list of {"sha256": hex digest of the key, "role": "app"|"admin", '
        '"name": ...}; plain keys are never configured.',
    )
    auth_enabled: bool = Field(
        default=True, description="False only for the embedded demo: every caller is admin."
    )
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024, description="Request body cap.")
    max_tokens_cap: int = Field(default=512, ge=1, description="Largest max_tokens accepted.")
    default_max_tokens: int = Field(default=64, ge=1)
    max_prompt_tokens: int = Field(
        default=768, ge=16, description="Templated prompt budget; passages are cut to fit."
    )
    request_timeout_s: float = Field(default=60.0, gt=0, description="Whole-request deadline.")
    context_ttl_s: int = Field(
        default=7 * 24 * 3600, ge=1,
        description="How long chat contexts stay for feedback (score contexts keep the task's "
        "label_horizon_days).",
    )
    rate_limit_per_minute: int = Field(
        default=600, ge=0, description="Requests per key per minute; 0 disables the limit."
    )
    passages_k: int = Field(default=3, ge=0, le=20, description="Passages put in a prompt.")
    passage_tokens: int = Field(default=128, ge=1, description="Each passage is cut to this.")
    score_batch_size: int = Field(default=16, ge=1, description="Micro-batch size of scoring.")
    score_batch_wait_ms: float = Field(default=4.0, ge=0, le=10_000)
    publish_timeout_s: float = Field(
        default=10.0, gt=0, description="Wait for the broker's ack before answering 503."
    )
    publish_max_inflight: int = Field(
        default=1000, ge=1, description="Unacknowledged messages before publishing answers 503."
    )
    redis_prefix: str = Field(default="lorafeed:serving:", pattern=r"^[A-Za-z0-9:._-]*$")
    retrieval: bool = Field(
        default=True, description="Ground chat in the knowledge base (needs Milvus)."
    )
    collection: str = Field(
        default="knowledge", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,254}$",
        description="Knowledge collection searched for passages (the streams worker's).",
    )
    embedder_dir: Path | None = Field(
        default=None, description="The embedder the collection was indexed with (default MiniLM)."
    )
    scorer_group_id: str = Field(
        default="lorafeed-scorer", min_length=1, max_length=255,
        description="Consumer group of the streaming scorer (`lorafeed run scorer`).",
    )
    device: str = Field(default="cpu", description="torch device of the task models.")
    dtype: str = Field(
        default="float32", pattern=r"^(float32|bfloat16|float16)$",
        description="dtype the base models load in: bfloat16 halves a large model's memory "
        "(adapters apply on top; scores are computed in float32).",
    )
    torch_threads: int | None = Field(default=None, ge=1)

    @field_validator("api_keys")
    @classmethod
    def _valid_keys(cls, value: SecretStr) -> SecretStr:
        parse_api_keys(value.get_secret_value())
        return value

    def key_entries(self) -> tuple[ApiKeyEntry, ...]:
        """The configured API key entries."""
        return parse_api_keys(self.api_keys.get_secret_value())


def main(argv: list[str] | None = None) -> None:
    """Print a new key and its ``SERVING_API_KEYS`` entry."""
    parser = argparse.ArgumentParser(description="Create a serving API key.")
    parser.add_argument("--role", choices=["app", "admin"], required=True)
    parser.add_argument("--name", required=True)
    args = parser.parse_args(argv)
    plain, entry = new_api_key(args.role, args.name)
    print(f"key (shown once): {plain}")
    print(f"entry: {entry.model_dump_json()}")


if __name__ == "__main__":
    main()
