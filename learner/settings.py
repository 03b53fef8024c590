"""Settings of the learner service (env prefix ``LEARNER_``), read once by ``learner.app``."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class LearnerSettings(BaseSettings):
    """Where the learner keeps its data and how often it looks for work. Infrastructure URLs
    are platform settings (``LORAFEED_``); per-task knobs live in the task file."""

    model_config = SettingsConfigDict(env_prefix="LEARNER_", extra="ignore")

    tasks_file: Path = Field(default=Path("config/tasks.toml"), description="The task catalog.")
    data_dir: Path | None = Field(
        default=None,
        description="Pending examples, replay, outbox (SQLite WAL); default <state_dir>/learner.",
    )
    models_dir: Path | None = Field(
        default=None, description="Prepared base models (default ~/.cache/lorafeed/models)."
    )
    group_id: str = Field(default="lorafeed-learner", description="Consumer group of the intake.")
    owner: str | None = Field(
        default=None, description="Lock owner name (default: host:pid); standbys differ."
    )
    lock_ttl_s: float = Field(default=60.0, gt=1, description="Per-task training lock expiry.")
    check_interval_s: float = Field(
        default=5.0, gt=0, description="How often the scheduler checks every task's trigger."
    )
    max_examples_per_update: int = Field(default=256, ge=1, le=1_000_000)
    device: str = Field(default="cpu", description="torch device for training and evaluation.")
    dtype: str = Field(
        default="float32",
        pattern=r"^(float32|bfloat16|float16)$",
        description="dtype the base model loads in, for training and the gate.",
    )
    torch_threads: int | None = Field(default=None, ge=1)
    eval_match: bool = Field(
        default=False, description="Also compute the greedy-answer match metric (slow on CPU)."
    )
    grounding: bool = Field(
        default=True,
        description="Train and score chat examples with the passages they were served with, "
        "read from the knowledge collection (Milvus); off: without them.",
    )
    collection: str = Field(
        default="knowledge",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,254}$",
        description="Knowledge collection the passages are read from (serving's).",
    )
    metrics_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="Prometheus /metrics port (None: no server; 0 picks a free port).",
    )
    metrics_host: str = Field(
        default="127.0.0.1",
        description="Address the /metrics server binds (0.0.0.0 in a container).",
    )
