"""The remote adapter store's settings and wiring without a server: URLs are parsed or refused
with the bad part named, no URL means the plain local store, and the pointer poll runs until
stopped. (Transfers are tested against a real S3 server in tests/integration.)"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from pydantic import ValidationError

from lorafeed.adapter_bucket import StoreUrl, parse_store_url
from lorafeed.adapter_store import AdapterStore, InvalidArgument
from lorafeed.adapter_store_s3 import (
    follow_remote,
    open_adapter_store,
    s3_config,
)
from lorafeed.settings import PlatformSettings


@pytest.mark.parametrize(
    ("url", "parsed"),
    [
        ("s3://lorafeed-adapters", StoreUrl("lorafeed-adapters", "")),
        ("s3://lorafeed-adapters/adapters", StoreUrl("lorafeed-adapters", "adapters")),
        ("s3://b.example/a/b/", StoreUrl("b.example", "a/b")),
    ],
)
def test_store_urls_are_parsed(url: str, parsed: StoreUrl) -> None:
    assert parse_store_url(url) == parsed
    assert parsed.key("task", "1.0.0", "manifest.json").endswith("task/1.0.0/manifest.json")


@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("http://minio:9000/bucket", "must look like s3://bucket"),
        ("s3://Bad_Bucket", "bucket 'Bad_Bucket'"),
        ("s3://ab", "bucket 'ab'"),
        ("s3://bucket/../escape", "prefix segment '..'"),
        ("s3://bucket/a b", "prefix segment 'a b'"),
    ],
)
def test_bad_store_urls_name_the_bad_part(url: str, named: str) -> None:
    with pytest.raises(InvalidArgument, match=named.replace(".", r"\.")):
        parse_store_url(url)
    with pytest.raises(ValidationError, match="adapter_store_url"):
        PlatformSettings(adapter_store_url=url)


def test_settings_hide_the_keys_and_an_empty_url_means_local(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("LORAFEED_ADAPTER_STORE_URL", "s3://lorafeed-adapters/adapters")
    monkeypatch.setenv("LORAFEED_S3_ENDPOINT_URL", "http://minio:9000")
    monkeypatch.setenv("LORAFEED_S3_SECRET_ACCESS_KEY", "very-secret-value")
    settings = PlatformSettings()
    assert "very-secret-value" not in repr(settings)
    config = s3_config(settings)
    assert (config.url.bucket, config.endpoint_url) == ("lorafeed-adapters", "http://minio:9000")
    assert config.secret_access_key == "very-secret-value"

    monkeypatch.setenv("LORAFEED_ADAPTER_STORE_URL", "")
    local = PlatformSettings(adapter_store=tmp_path / "adapters")
    assert local.adapter_store_url is None
    for role in ("publisher", "follower"):
        store = open_adapter_store(local, role=role)  # type: ignore[arg-type]
        assert type(store) is AdapterStore and store.root == (tmp_path / "adapters").resolve()


def test_follow_remote_polls_until_stopped() -> None:
    calls: list[float] = []

    async def main() -> None:
        stop = asyncio.Event()

        async def sync() -> None:
            calls.append(asyncio.get_running_loop().time())
            if len(calls) == 2:
                raise RuntimeError("one failed sync does not end the poll")
            if len(calls) == 4:
                stop.set()

        await asyncio.wait_for(follow_remote(sync, 0.01, stop), timeout=5)

    asyncio.run(main())
    assert len(calls) == 4
