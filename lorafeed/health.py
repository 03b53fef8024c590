"""Health checks of the stack's components; each returns "" when healthy, else what is wrong."""

from __future__ import annotations

from urllib.parse import urlparse

from lorafeed import procs


def broker_health(bootstrap: str, timeout_s: float = 2.0) -> str:
    host, _, port = bootstrap.rpartition(":")
    if not procs.port_open(host, int(port)):
        return f"nothing listens on {bootstrap}"
    from lorafeed.kafka_clients import make_admin

    try:
        make_admin(bootstrap).list_topics(timeout=timeout_s)
    except Exception as exc:  # noqa: BLE001 - any client failure means "not healthy yet"
        return f"metadata request failed: {exc}"
    return ""


def redis_health(url: str, timeout_s: float = 1.0) -> str:
    import redis

    try:
        client = redis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
        try:
            client.ping()
        finally:
            client.close()
    except redis.RedisError as exc:
        return f"PING failed: {exc}"
    return ""


def milvus_health(url: str, timeout_s: float = 3.0) -> str:
    parsed = urlparse(url)
    if not procs.port_open(parsed.hostname or "127.0.0.1", parsed.port or 19530):
        return f"nothing listens on {url}"
    from lorafeed.stores import make_milvus

    try:
        client = make_milvus(url, timeout_s=timeout_s)
        try:
            client.list_collections()
        finally:
            client.close()
    except Exception as exc:  # noqa: BLE001 - any client failure means "not healthy yet"
        return f"list_collections failed: {exc}"
    return ""


def url_health(component: str, url: str) -> str:
    """Check the component named ``component`` (broker, redis or milvus) at ``url``."""
    if component == "broker":
        return broker_health(url.removeprefix("kafka://"))
    if component == "redis":
        return redis_health(url)
    return milvus_health(url)
