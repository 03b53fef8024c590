"""Settings of the streams worker (env prefix ``STREAMS_``), read once by ``streams.app``."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class StreamsSettings(BaseSettings):
    """How the worker batches, dedupes, chunks and embeds. Infrastructure URLs and the PII key
    are platform settings (``LORAFEED_``), shared with the other services."""

    model_config = SettingsConfigDict(env_prefix="STREAMS_", extra="ignore")

    app_id: str = Field(default="lorafeed-streams", description="faust app id = consumer group")
    collection: str = Field(default="knowledge", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")
    embedder_dir: Path | None = Field(
        default=None, description="A local sentence-transformers dir (default: packaged MiniLM)."
    )
    batch_max: int = Field(
        default=128,
        ge=1,
        le=4096,
        description="Records per batch (bench/ingest.py: 128 reaches 0.84x the bare embedder, "
        "64 about 0.7x: per-batch costs are amortized; the embedding call inside still adapts "
        "its own batch size to stay near 1 s).",
    )
    batch_wait_ms: int = Field(default=200, ge=1, description="Wait for a batch to fill.")
    chunk_max_tokens: int = Field(default=200, ge=8)
    chunk_overlap_tokens: int = Field(default=32, ge=0)
    dedup_ttl_days: float = Field(default=90, gt=0)
    near_dup_threshold: float = Field(default=0.85, gt=0, le=1)
    min_chars: int = Field(default=20, ge=0)
    max_chars: int = Field(default=200_000, ge=1)
    retry_max_backoff_s: float = Field(default=30, gt=0)
    metrics_port: int = Field(default=0, ge=0, le=65535, description="0: no /metrics server.")
    metrics_host: str = Field(
        default="127.0.0.1",
        description="Address the /metrics server binds (0.0.0.0 in a container).",
    )
    torch_threads: int | None = Field(default=None, ge=1)
