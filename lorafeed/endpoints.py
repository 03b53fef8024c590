"""Where a service finds the broker, Redis, Milvus and the PII key: settings first, else the
embedded stack's state file, so services started beside `lorafeed stack up` need no config."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from lorafeed.settings import PlatformSettings
from lorafeed.stack import load_state

PII_KEY_FILE = "pii.key"


class EndpointError(RuntimeError):
    """A service cannot tell where the infrastructure is."""


@dataclass(frozen=True)
class Endpoints:
    bootstrap_servers: str
    redis_url: str
    milvus_uri: str
    topic_prefix: str


def resolve_endpoints(settings: PlatformSettings) -> Endpoints:
    """Settings win; whatever they leave unset comes from the stack state file."""
    state = load_state(settings.state_dir)
    bootstrap = settings.bootstrap_servers or (state.bootstrap_servers if state else None)
    redis_url = settings.redis_url or (state.url("redis") if state else None)
    milvus_uri = settings.milvus_uri or (state.url("milvus") if state else None)
    missing = [
        name
        for name, value in (
            ("LORAFEED_BOOTSTRAP_SERVERS", bootstrap),
            ("LORAFEED_REDIS_URL", redis_url),
            ("LORAFEED_MILVUS_URI", milvus_uri),
        )
        if not value
    ]
    if missing:
        raise EndpointError(
            f"no {', '.join(missing)} set and no running stack in {settings.state_dir}: "
            "start one with 'lorafeed stack up' or set them"
        )
    prefix = settings.topic_prefix or (state.topic_prefix if state else "")
    assert bootstrap and redis_url and milvus_uri
    return Endpoints(bootstrap, redis_url, milvus_uri, prefix)


def pii_key(settings: PlatformSettings) -> bytes:
    """The configured key, else a random one kept in the state dir (created once, mode 0600)."""
    if settings.pii_key is not None:
        key = settings.pii_key.get_secret_value().encode()
        if len(key) < 16:
            raise EndpointError("LORAFEED_PII_KEY must be at least 16 bytes long")
        return key
    path = Path(settings.state_dir) / PII_KEY_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{PII_KEY_FILE}.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(secrets.token_hex(32).encode())
        try:
            os.link(tmp, path)  # atomic: of racing services exactly one key wins
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_bytes().strip()
