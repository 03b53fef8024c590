"""The adapter store across machines, against a real S3-compatible server (moto's, started as a
process on a free loopback port and stopped by pid): a learner-side store pushes, serving-side
stores pull and verify; corrupt objects, pointers ahead of their upload, outages and name
conflicts are refused or retried, never followed."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from lorafeed import deploy_init, procs
from lorafeed.adapter_bucket import Bucket, RemoteConflict, S3Config, StoreUrl
from lorafeed.adapter_store import AdapterStore, ChecksumMismatch, UnknownVersion
from lorafeed.adapter_store_s3 import FollowingStore, PublishingStore, open_adapter_store
from lorafeed.settings import PlatformSettings
from schemas import AdapterManifest, GateDecision, LoraSettings, Topic, manifest_sha256, topic_name
from schemas.model_events import AdapterLoadFailed, AdapterPromoted, ModelEventBase
from serving.engine import TaskEngine
from serving.registry import AdapterRegistry
from tests.support.adapters import add_version, build_adapter, classification_task, tiny_base_dir
from tests.support.stack import RunningStack

pytestmark = pytest.mark.integration

TASK = "support"
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
PREFIX = "deploy/adapters"


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = procs.free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    argv = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    handle = procs.spawn("moto", argv, log)
    try:
        for _ in range(300):
            if procs.port_open("127.0.0.1", port):
                break
            assert handle.is_alive(), f"moto server exited: {procs.tail(log)}"
            time.sleep(0.05)
        else:
            raise AssertionError(f"moto server did not listen on {port}: {procs.tail(log)}")
        yield f"http://127.0.0.1:{port}"
    finally:
        procs.stop(handle)
    assert not handle.is_alive(), f"moto pid {handle.pid} survived"


def connect(endpoint: str, bucket: str) -> Bucket:
    config = S3Config(StoreUrl(bucket, PREFIX), endpoint, "testing", "testing", attempts=1)
    return Bucket.connect(config)


@pytest.fixture
def bucket(endpoint: str) -> Bucket:
    remote = connect(endpoint, f"adapters-{uuid.uuid4().hex[:12]}")
    assert remote.ensure_bucket() is True
    assert remote.ensure_bucket() is False  # idempotent
    return remote


def raw_client(bucket: Bucket) -> Any:
    return bucket._client


def fields(version: str, parent: str | None = None) -> dict[str, Any]:
    manifest = AdapterManifest(
        schema_version=1,
        task=TASK,
        version=version,
        parent_version=parent,
        kind="generation",
        base_model_id="tiny-llama",
        base_model_sha256="b" * 64,
        files={"placeholder": "0" * 64},
        lora=LoraSettings(r=4, alpha=8, target_modules=["q_proj", "v_proj"]),
        gate=GateDecision(promoted=True, reason="gain 0.03 > 0", numbers={"gain": 0.03}),
        created_at=NOW,
    )
    data = manifest.model_dump(mode="json", by_alias=True)
    del data["files"]
    return data


def adapter_files(tmp: Path, seed: int) -> Path:
    src = tmp / f"src-{seed}-{uuid.uuid4().hex[:6]}"
    (src / "nested").mkdir(parents=True)
    (src / "adapter_model.safetensors").write_bytes(bytes([seed]) * 4096)
    (src / "adapter_config.json").write_text(f'{{"r": 4, "seed": {seed}}}')
    (src / "nested" / "tokenizer.json").write_text("{}")
    return src


def publish(store: AdapterStore, tmp: Path, version: str, parent: str | None = None) -> str:
    """Write `version` and make it champion; its manifest digest."""
    files = adapter_files(tmp, sum(map(ord, version)) % 256)
    manifest = store.write_version(TASK, version, files, fields(version, parent))
    store.set_champion(TASK, version)
    return manifest_sha256(manifest)


def pointer(store: AdapterStore) -> tuple[str | None, str | None]:
    """(version, manifest sha256) of the task's champion; (None, None) for the base model."""
    champion = store.champion(TASK)
    return (None, None) if champion is None else (champion.version, champion.manifest_sha256)


def test_round_trip_learner_push_serving_pull(tmp_path: Path, bucket: Bucket) -> None:
    learner = PublishingStore(tmp_path / "learner", bucket)
    first = publish(learner, tmp_path, "1.0.0")
    second = publish(learner, tmp_path, "1.0.1", parent="1.0.0")
    assert learner.unpublished() == []
    keys = set(bucket.keys(f"{PREFIX}/{TASK}/"))
    assert f"{PREFIX}/{TASK}/1.0.1/nested/tokenizer.json" in keys
    assert f"{PREFIX}/{TASK}/champion.json" in keys

    node = FollowingStore(tmp_path / "node", bucket)
    assert pointer(node) == ("1.0.1", second)
    local = AdapterStore(tmp_path / "node")  # what the node's registry reads, re-verified
    assert manifest_sha256(local.verify(TASK, "1.0.1")) == second
    assert pointer(local) == ("1.0.1", second)
    assert local.versions(TASK) == ["1.0.1"]  # only what it needs

    # an explicitly requested older version is pulled on demand
    assert manifest_sha256(node.verify(TASK, "1.0.0")) == first
    with pytest.raises(UnknownVersion, match="9.9.9"):
        node.verify(TASK, "9.9.9")

    # a rollback (a pin) travels the same way
    learner.rollback(TASK, "1.0.0", "ops", "bad answers")
    assert pointer(node) == ("1.0.0", first)
    pin = local.pinned(TASK)
    assert pin is not None and (pin.version, pin.actor) == ("1.0.0", "ops")
    learner.unpin(TASK, "ops")
    node.champion(TASK)
    assert local.pinned(TASK) is None


def test_a_change_made_beside_the_learner_is_pushed_on_its_next_tick(
    tmp_path: Path, bucket: Bucket
) -> None:
    learner = PublishingStore(tmp_path / "learner", bucket)
    first = publish(learner, tmp_path, "1.0.0")
    publish(learner, tmp_path, "1.0.1", parent="1.0.0")
    node = FollowingStore(tmp_path / "node", bucket)
    assert pointer(node)[0] == "1.0.1"
    # `lorafeed adapters rollback` on the learner's volume, through a plain local store
    AdapterStore(tmp_path / "learner").rollback(TASK, "1.0.0", "ops", "manual")
    assert pointer(node)[0] == "1.0.1"  # not pushed yet
    assert learner.catch_up() == [TASK]  # the learner's scheduler calls it every few seconds
    assert learner.catch_up() == []
    assert pointer(node) == ("1.0.0", first)
    assert AdapterStore(tmp_path / "node").pinned(TASK) is not None


def test_corrupt_object_is_refused_naming_the_sha256(tmp_path: Path, bucket: Bucket) -> None:
    learner = PublishingStore(tmp_path / "learner", bucket)
    digest = publish(learner, tmp_path, "1.0.0")
    raw_client(bucket).put_object(
        Bucket=bucket.url.bucket,
        Key=f"{PREFIX}/{TASK}/1.0.0/adapter_model.safetensors",
        Body=b"\x00" * 4096,
    )
    node = FollowingStore(tmp_path / "node", bucket)
    # returned unpulled, so the registry's load (verify) fails loudly
    assert pointer(node) == ("1.0.0", digest)
    with pytest.raises(ChecksumMismatch, match=r"adapter_model\.safetensors .*sha256 [0-9a-f]{64}"
                       r", the manifest says") as refused:
        node.verify(TASK, "1.0.0")
    assert refused.value.path == "adapter_model.safetensors"
    task_dir = tmp_path / "node" / TASK
    assert sorted(p.name for p in task_dir.iterdir() if not p.name.startswith(".lock")) == []
    assert pointer(AdapterStore(tmp_path / "node")) == (None, None)  # the pointer was not copied


def test_tampered_manifest_is_refused_against_the_pointer(tmp_path: Path, bucket: Bucket) -> None:
    learner = PublishingStore(tmp_path / "learner", bucket)
    publish(learner, tmp_path, "1.0.0")
    key = f"{PREFIX}/{TASK}/1.0.0/manifest.json"
    data = raw_client(bucket).get_object(Bucket=bucket.url.bucket, Key=key)["Body"].read()
    tampered = data.replace(b'"gain 0.03 > 0"', b'"gain 0.99 > 0"')
    raw_client(bucket).put_object(Bucket=bucket.url.bucket, Key=key, Body=tampered)
    node = FollowingStore(tmp_path / "node", bucket)
    node.champion(TASK)
    assert AdapterStore(tmp_path / "node").versions(TASK) == []
    with pytest.raises(ChecksumMismatch, match="the champion pointer says"):
        node.mirror.pull_version(TASK, "1.0.0", pointer(learner)[1])


def test_pointer_ahead_of_its_upload_is_not_followed(
    tmp_path: Path, bucket: Bucket, caplog: pytest.LogCaptureFixture
) -> None:
    learner = PublishingStore(tmp_path / "learner", bucket)
    publish(learner, tmp_path, "1.0.0")
    node = FollowingStore(tmp_path / "node", bucket)
    assert pointer(node)[0] == "1.0.0"
    # 1.0.1 exists on the learner's disk only (its push has not happened), yet a pointer names it
    plain = AdapterStore(tmp_path / "learner")
    plain.write_version(TASK, "1.0.1", adapter_files(tmp_path, 7), fields("1.0.1", "1.0.0"))
    plain.set_champion(TASK, "1.0.1")
    bucket.put_bytes(f"{PREFIX}/{TASK}/champion.json",
                     (tmp_path / "learner" / TASK / "champion.json").read_bytes())
    with caplog.at_level(logging.WARNING, logger="lorafeed.adapter_store_s3"):
        assert pointer(node)[0] == "1.0.0"
    assert "not following support's pointer to 1.0.1" in caplog.text
    assert AdapterStore(tmp_path / "node").versions(TASK) == ["1.0.0"]
    assert pointer(AdapterStore(tmp_path / "node"))[0] == "1.0.0"

    assert learner.mirror.push_version(TASK, "1.0.1") is True  # the upload completes
    assert pointer(node)[0] == "1.0.1"


def test_failed_push_is_retried_and_a_fresh_learner_restores(
    tmp_path: Path, endpoint: str
) -> None:
    missing = connect(endpoint, f"later-{uuid.uuid4().hex[:12]}")  # no bucket yet: pushes fail
    learner = PublishingStore(tmp_path / "learner", missing, retry_s=0.0)
    digest = publish(learner, tmp_path, "1.0.0")
    assert learner.unpublished() == [TASK]
    assert pointer(AdapterStore(tmp_path / "learner")) == ("1.0.0", digest)
    missing.ensure_bucket()
    assert learner.catch_up() == [TASK]  # the retry is due
    assert learner.unpublished() == []

    restored: list[tuple[str, str]] = []
    fresh = PublishingStore(tmp_path / "fresh", missing,
                            on_restored=lambda task, version: restored.append((task, version)))
    fresh.sync()
    assert restored == [(TASK, "1.0.0")]
    assert manifest_sha256(AdapterStore(tmp_path / "fresh").verify(TASK, "1.0.0")) == digest
    assert pointer(fresh) == ("1.0.0", digest)


def test_same_version_with_other_content_is_never_overwritten(
    tmp_path: Path, bucket: Bucket
) -> None:
    one = PublishingStore(tmp_path / "one", bucket)
    digest = publish(one, tmp_path, "1.0.0")
    other = PublishingStore(tmp_path / "other", bucket)
    other.write_version(TASK, "1.0.0", adapter_files(tmp_path, 99), fields("1.0.0"))
    assert other.unpublished() == [TASK]
    with pytest.raises(RemoteConflict, match="never reused"):
        other.mirror.push_version(TASK, "1.0.0")
    node = FollowingStore(tmp_path / "node", bucket)
    assert pointer(node) == ("1.0.0", digest)


def test_serving_registry_follows_the_bucket_and_refuses_a_corrupt_version(
    tmp_path: Path, bucket: Bucket
) -> None:
    """A real registry and tiny-llama engine over a FollowingStore: the champion arrives from
    the bucket and serves; a promoted version corrupted in the bucket is refused with the sha256
    named in AdapterLoadFailed, and the previous version keeps serving."""
    task = classification_task()
    base_dir = tiny_base_dir(tmp_path / "models")
    learner = PublishingStore(tmp_path / "learner", bucket)
    add_version(learner, task, "1.0.0", base_dir, build_adapter(task, base_dir, tmp_path / "a",
                                                                 seed=1))
    published: list[ModelEventBase] = []

    async def publish(event: ModelEventBase) -> None:
        published.append(event)

    async def main() -> None:
        engine = TaskEngine.load(task, base_dir)
        registry = AdapterRegistry(FollowingStore(tmp_path / "node", bucket),
                                   {task.name: engine}, "node-1", publish)
        try:
            [outcome] = await registry.start()
            assert (outcome.status, outcome.version) == ("activated", "1.0.0")
            second = add_version(learner, task, "1.0.1", base_dir,
                                 build_adapter(task, base_dir, tmp_path / "b", seed=2))
            raw_client(bucket).put_object(
                Bucket=bucket.url.bucket, Key=f"{PREFIX}/{task.name}/1.0.1/adapter_config.json",
                Body=b'{"r": 64}')
            event = AdapterPromoted(schema_version=1, event_id=uuid.uuid4().hex, task=task.name,
                                    occurred_at=NOW, version="1.0.1",
                                    manifest_sha256=manifest_sha256(second))
            refused = await registry.on_event(event)
            assert (refused.status, refused.version) == ("failed", "1.0.1")
            assert "adapter_config.json" in refused.reason and "sha256" in refused.reason
            assert registry.active_versions() == {task.name: "1.0.0"}
            await registry.flush()
            [failed] = [e for e in published if isinstance(e, AdapterLoadFailed)]
            assert failed.version == "1.0.1" and "sha256" in failed.reason
        finally:
            await registry.close()
            await engine.close()

    asyncio.run(main())


def test_settings_choose_the_stores_and_init_prepares_a_deployment(
    tmp_path: Path, endpoint: str, stack: RunningStack
) -> None:
    """What compose runs: `lorafeed.deploy_init` creates the topics and the bucket (twice is
    harmless), then the composition roots' factory builds publisher and follower from env."""
    name = f"deploy-{uuid.uuid4().hex[:12]}"
    settings = PlatformSettings(
        bootstrap_servers=stack.bootstrap,
        topic_prefix=f"init{uuid.uuid4().hex[:6]}.",
        adapter_store_url=f"s3://{name}/{PREFIX}",
        s3_endpoint_url=endpoint,
        s3_access_key_id="testing",
        s3_secret_access_key="testing",
    )
    topics = deploy_init.create_topics(settings, timeout_s=30)
    assert set(topics) == {topic_name(t, settings.topic_prefix) for t in Topic}
    assert deploy_init.create_bucket(settings, timeout_s=10) == f"s3://{name}/{PREFIX} (created)"
    assert deploy_init.create_bucket(settings, timeout_s=10) == f"s3://{name}/{PREFIX} (exists)"

    learner = open_adapter_store(settings, tmp_path / "learner", role="publisher")
    assert isinstance(learner, PublishingStore)
    digest = publish(learner, tmp_path, "1.0.0")
    node = open_adapter_store(settings, tmp_path / "node", role="follower")
    assert isinstance(node, FollowingStore)
    assert pointer(node) == ("1.0.0", digest)
