"""Redis and Milvus client factories with timeouts and retries suited to long-running workers.

Milvus Lite brings collections back *released* after a restart (searches fail with code 101),
so :func:`ensure_loaded` is called before serving searches.
"""

from __future__ import annotations

import redis
from pymilvus import MilvusClient
from redis.backoff import ExponentialBackoff
from redis.retry import Retry


def make_redis(url: str, *, timeout_s: float = 5.0) -> redis.Redis:
    """A Redis client that reconnects with backoff and fails a call after ``timeout_s``."""
    return redis.Redis.from_url(
        url,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        health_check_interval=30,
        retry=Retry(ExponentialBackoff(cap=2.0, base=0.05), retries=3),
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
        decode_responses=False,
    )


# pymilvus pings idle channels every 10 s; gRPC servers with default settings (Milvus Lite's)
# answer a second idle ping with GOAWAY "too_many_pings", and the next call on that channel
# fails UNAVAILABLE. Ping only during long calls, and rarely: well inside the server's 5 min.
MILVUS_GRPC_OPTIONS = {
    "grpc.keepalive_time_ms": 300_000,
    "grpc.keepalive_timeout_ms": 20_000,
    "grpc.keepalive_permit_without_calls": 0,
    "grpc.http2.max_pings_without_data": 0,
}


def make_milvus(uri: str, *, timeout_s: float = 10.0) -> MilvusClient:
    """A client for a Milvus server (``http://host:port``) or a Milvus Lite gRPC server.

    Dedicated: pymilvus otherwise shares one channel per address, created with whatever options
    the first client of the process had (its defaults ping idle channels), ignoring ours.
    """
    return MilvusClient(uri=uri, timeout=timeout_s, dedicated=True,
                        grpc_options=dict(MILVUS_GRPC_OPTIONS))


def ensure_loaded(client: MilvusClient, collection: str) -> None:
    """Load ``collection`` if the server has it released (Milvus Lite after a restart)."""
    state = client.get_load_state(collection)
    if "Loaded" not in str(state.get("state", "")):
        client.load_collection(collection)
