"""The remote half of the adapter store: an S3-compatible bucket (MinIO, AWS S3) that holds the
local store's layout under a prefix: `<prefix>/<task>/<version>/<file>` with the version's
`manifest.json`, and per task `champion.json` and `pin.json`.

Only transport here: get, put, download, delete, list. Every boto3 failure becomes
`RemoteUnavailable` naming the URL; integrity (sha256 of every file, the manifest digest) is
checked by `adapter_mirror`, which decides what to copy and in which order.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from lorafeed.adapter_store_errors import AdapterStoreError, InvalidArgument

_BUCKET_RE: Final = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_PREFIX_PART_RE: Final = re.compile(r"^[A-Za-z0-9._-]+$")
_CHUNK: Final = 1024 * 1024
_MISSING: Final = {"404", "NoSuchKey", "NotFound"}
_PRECONDITION: Final = {"412", "PreconditionFailed"}


class RemoteUnavailable(AdapterStoreError):
    """The remote adapter store cannot be reached, or refused a request (credentials, bucket)."""


class RemoteConflict(AdapterStoreError):
    """The remote store holds another version under the same name; versions are never reused,
    so nothing is overwritten."""


@dataclass(frozen=True)
class StoreUrl:
    """`s3://bucket[/prefix]`, split; `key` builds object keys below the prefix."""

    bucket: str
    prefix: str = ""

    def key(self, *parts: str) -> str:
        return "/".join(part for part in (self.prefix, *parts) if part)

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")


def parse_store_url(url: str) -> StoreUrl:
    """`url` as a StoreUrl; InvalidArgument (a ValueError) naming the bad part otherwise."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme != "s3":
        raise InvalidArgument(f"adapter store URL {url!r} must look like s3://bucket[/prefix]")
    bucket, _, prefix = rest.partition("/")
    if not _BUCKET_RE.match(bucket) or ".." in bucket:
        raise InvalidArgument(
            f"adapter store URL {url!r}: bucket {bucket!r} is not a valid S3 bucket name "
            "(3-63 lowercase letters, digits, '.' and '-')"
        )
    parts = [part for part in prefix.split("/") if part]
    for part in parts:
        if not _PREFIX_PART_RE.match(part) or part in (".", ".."):
            raise InvalidArgument(
                f"adapter store URL {url!r}: prefix segment {part!r} may only hold letters, "
                "digits, '.', '_' and '-'"
            )
    return StoreUrl(bucket, "/".join(parts))


@dataclass(frozen=True)
class S3Config:
    """Where the bucket is and how long to wait for it (a node must not hang on an outage)."""

    url: StoreUrl
    endpoint_url: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None
    region: str = "us-east-1"
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 60.0
    attempts: int = 3


def _code(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


class Bucket:
    """Objects of one `StoreUrl`, through a boto3 S3 client (thread-safe; shared by threads)."""

    def __init__(self, client: Any, url: StoreUrl, region: str = "us-east-1") -> None:
        self._client = client
        self.url = url
        self._region = region

    @classmethod
    def connect(cls, config: S3Config) -> Bucket:
        """A bucket over a new client: path-style addressing (MinIO), short timeouts."""
        import boto3
        from botocore.config import Config

        client = boto3.client(
            "s3",
            endpoint_url=config.endpoint_url,
            aws_access_key_id=config.access_key_id,
            aws_secret_access_key=config.secret_access_key,
            region_name=config.region,
            config=Config(
                s3={"addressing_style": "path"},
                connect_timeout=config.connect_timeout_s,
                read_timeout=config.read_timeout_s,
                retries={"max_attempts": config.attempts, "mode": "standard"},
            ),
        )
        return cls(client, config.url, config.region)

    def _fail(self, action: str, key: str, exc: Exception) -> RemoteUnavailable:
        return RemoteUnavailable(f"{action} {self.url.bucket}/{key} failed: {exc}")

    def _call(self, action: str, key: str, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self._client, action)(Bucket=self.url.bucket, Key=key, **kwargs)
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return None
            if _code(exc) in _PRECONDITION:
                return False
            raise self._fail(action, key, exc) from exc
        except BotoCoreError as exc:
            raise self._fail(action, key, exc) from exc

    def get(self, key: str, max_bytes: int) -> bytes | None:
        """The object's bytes, None if absent; RemoteUnavailable if larger than `max_bytes`."""
        response = self._call("get_object", key)
        if response is None:
            return None
        data = self._read(key, response, max_bytes + 1)
        if len(data) > max_bytes:
            raise RemoteUnavailable(f"{self.url.bucket}/{key} exceeds {max_bytes} bytes")
        return data

    def _read(self, key: str, response: Any, limit: int) -> bytes:
        from botocore.exceptions import BotoCoreError

        try:
            return bytes(response["Body"].read(limit))
        except (BotoCoreError, OSError) as exc:
            raise self._fail("read", key, exc) from exc

    def download(self, key: str, dst: Path) -> str | None:
        """Write the object to new read-only file `dst` (fsynced) and return the sha256 of the
        bytes received; None (nothing written) if the object is absent."""
        from botocore.exceptions import BotoCoreError

        response = self._call("get_object", key)
        if response is None:
            return None
        digest = hashlib.sha256()
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        with open(os.open(dst, flags, 0o444), "wb") as target:
            try:
                for chunk in response["Body"].iter_chunks(_CHUNK):
                    digest.update(chunk)
                    target.write(chunk)
            except (BotoCoreError, OSError) as exc:
                raise self._fail("download", key, exc) from exc
            target.flush()
            os.fsync(target.fileno())
        return digest.hexdigest()

    def put_bytes(self, key: str, data: bytes, *, create_only: bool = False) -> bool:
        """Store `data` at `key`; with `create_only`, only if no object is there (False then)."""
        extra = {"IfNoneMatch": "*"} if create_only else {}
        response = self._call("put_object", key, Body=data, **extra)
        return response is not False

    def put_file(self, key: str, path: Path, sha256: str) -> None:
        """Upload the file at `path`; its sha256 goes along as object metadata (for people)."""
        with open(os.open(path, os.O_RDONLY | os.O_NOFOLLOW), "rb") as source:
            self._call("put_object", key, Body=source, Metadata={"sha256": sha256})

    def delete(self, key: str) -> None:
        self._call("delete_object", key)

    def keys(self, prefix: str) -> Iterator[str]:
        """Every key below `prefix` (a 'directory': give it a trailing '/')."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self.url.bucket, Prefix=prefix
            )
            for page in pages:
                for item in page.get("Contents", []):
                    yield str(item["Key"])
        except (BotoCoreError, ClientError) as exc:
            raise self._fail("list", prefix, exc) from exc

    def ensure_bucket(self) -> bool:
        """Create the bucket if it does not exist; True if it was created now."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._client.head_bucket(Bucket=self.url.bucket)
            return False
        except ClientError as exc:
            if _code(exc) not in _MISSING | {"NoSuchBucket"}:
                raise self._fail("head_bucket", "", exc) from exc
        except BotoCoreError as exc:
            raise self._fail("head_bucket", "", exc) from exc
        try:
            where = (
                {}
                if self._region == "us-east-1"
                else {"CreateBucketConfiguration": {"LocationConstraint": self._region}}
            )
            self._client.create_bucket(Bucket=self.url.bucket, **where)
        except ClientError as exc:
            if _code(exc) not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                raise self._fail("create_bucket", "", exc) from exc
            return False
        except BotoCoreError as exc:
            raise self._fail("create_bucket", "", exc) from exc
        return True
