"""One-shot preparation of a multi-machine deployment (docker-compose's `init` service): create
every topic of the topic table on the broker, and the remote adapter store's bucket when
`LORAFEED_ADAPTER_STORE_URL` names one. Idempotent; waits for both to come up.

`python -m lorafeed.deploy_init` exits 0 when both are ready, 1 with the reason otherwise.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import TypeVar

from lorafeed.settings import PlatformSettings

log = logging.getLogger("lorafeed.deploy_init")
T = TypeVar("T")


def retry(what: str, action: Callable[[], T], timeout_s: float, every_s: float = 2.0) -> T:
    """`action()`, retried every `every_s` until it succeeds or `timeout_s` passed (then its
    last error propagates)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return action()
        except Exception as exc:
            if time.monotonic() + every_s > deadline:
                raise
            log.info("%s not ready yet (%s); retrying", what, exc)
            time.sleep(every_s)


def create_topics(settings: PlatformSettings, timeout_s: float) -> dict[str, int]:
    """Every topic of the table, created on `settings.bootstrap_servers` if missing."""
    from lorafeed.kafka_clients import ensure_topics, make_admin

    if not settings.bootstrap_servers:
        raise ValueError("LORAFEED_BOOTSTRAP_SERVERS is not set")
    admin = make_admin(settings.bootstrap_servers)
    return retry("broker", lambda: ensure_topics(admin, settings.topic_prefix), timeout_s)


def create_bucket(settings: PlatformSettings, timeout_s: float) -> str | None:
    """The remote adapter store's bucket, created if missing; None without a store URL."""
    if settings.adapter_store_url is None:
        return None
    from lorafeed.adapter_bucket import Bucket
    from lorafeed.adapter_store_s3 import s3_config

    bucket = Bucket.connect(s3_config(settings))
    created = retry("object store", bucket.ensure_bucket, timeout_s)
    return f"{bucket.url} ({'created' if created else 'exists'})"


def main(timeout_s: float = 120.0) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        settings = PlatformSettings()
        topics = create_topics(settings, timeout_s)
        bucket = create_bucket(settings, timeout_s)
    except Exception as exc:
        log.error("deployment init failed: %s", exc)
        return 1
    log.info("topics ready: %s", ", ".join(f"{name} ({n})" for name, n in sorted(topics.items())))
    log.info("adapter store: %s", bucket or "local only (LORAFEED_ADAPTER_STORE_URL unset)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
