"""The adapter store: complete immutable versions, verified reads, crash safety, atomic
champion pointers with compare-and-set, pins and rollbacks, and path-safe names."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from lorafeed import adapter_store, failpoints
from lorafeed.adapter_manifest_io import rename_no_replace
from lorafeed.adapter_pointers import dir_lock
from lorafeed.adapter_store import (
    ANY,
    AdapterStore,
    ChampionChanged,
    ChecksumMismatch,
    FileSetMismatch,
    InvalidArgument,
    ManifestInvalid,
    PinnedTask,
    PointerInvalid,
    RollbackRefused,
    SourceRejected,
    StoredManifestInvalid,
    UnknownVersion,
    VersionExists,
)
from schemas import AdapterManifest, GateDecision, Lineage, LoraSettings, manifest_sha256
from schemas.base import canonical_json

TASK = "support-triage"
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
ROOT = Path(adapter_store.__file__).resolve().parents[1]
SOURCE_FILES = {
    "adapter_model.safetensors": b"\x00weights\x01" * 100,
    "adapter_config.json": b'{"r": 8}',
    "sub/tokenizer.json": b'{"vocab": {}}',
}


def manifest(
    version: str, parent: str | None = None, records: tuple[str, ...] = ()
) -> AdapterManifest:
    """A complete manifest; the store replaces its placeholder `files`."""
    return AdapterManifest(
        schema_version=1,
        task=TASK,
        version=version,
        parent_version=parent,
        kind="generation",
        base_model_id="HuggingFaceTB/SmolLM2-135M-Instruct",
        base_model_sha256="b" * 64,
        files={"placeholder": "0" * 64},
        lora=LoraSettings(r=8, alpha=16, target_modules=["q_proj", "v_proj"]),
        configs={"ewc": {"lambda": 1000.0}},
        metrics={"target.accuracy": 0.9},
        gate=GateDecision(promoted=True, reason="gain 0.03 > 0.0", numbers={"gain": 0.03}),
        lineage=Lineage(record_ids=list(records), request_ids=["req-1"]),
        created_at=NOW,
    )


def manifest_dict(version: str, changes: dict[str, Any] | None = None) -> dict[str, Any]:
    data = manifest(version).model_dump(mode="json", by_alias=True)
    del data["files"]
    data.update(changes or {})
    return data


@pytest.fixture
def source(tmp_path: Path) -> Path:
    src = tmp_path / "trained"
    for rel, data in SOURCE_FILES.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(data)
    return src


@pytest.fixture
def store(tmp_path: Path) -> AdapterStore:
    return AdapterStore(tmp_path / "adapters", clock=lambda: NOW)


def write(store: AdapterStore, source: Path, version: str, **kwargs: Any) -> AdapterManifest:
    return store.write_version(TASK, version, source, manifest(version, **kwargs))


def entries(store: AdapterStore) -> list[str]:
    return sorted(path.name for path in (store.root / TASK).iterdir())


def overwrite(path: Path, data: bytes) -> None:
    path.chmod(0o644)  # the store writes files read-only
    path.write_bytes(data)


# -- writing and reading ---------------------------------------------------------------------


def test_round_trip(store: AdapterStore, source: Path) -> None:
    written = write(store, source, "1.0.0")

    expected = {rel: hashlib.sha256(data).hexdigest() for rel, data in SOURCE_FILES.items()}
    assert written.files == expected
    assert store.read_manifest(TASK, "1.0.0") == written
    assert store.verify(TASK, "1.0.0") == written
    assert store.versions(TASK) == ["1.0.0"]
    assert store.tasks() == [TASK]
    version_dir = store.root / TASK / "1.0.0"
    assert (version_dir / "manifest.json").read_bytes() == canonical_json(written)
    assert (version_dir / "sub" / "tokenizer.json").read_bytes() == SOURCE_FILES[
        "sub/tokenizer.json"
    ]
    assert entries(store) == ["1.0.0"]  # no temp dir left behind


def test_dict_manifest_gets_task_and_version_filled_in(store: AdapterStore, source: Path) -> None:
    data = manifest_dict("1.0.0")
    del data["task"], data["version"]

    written = store.write_version(TASK, "1.0.0", source, data)

    assert (written.task, written.version) == (TASK, "1.0.0")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"version": "9.9.9"}, "manifest names version '9.9.9'"),
        ({"task": "other"}, "manifest names task 'other'"),
        ({"parent_version": "1.0.0"}, "parent_version 1.0.0 must be lower"),
    ],
)
def test_bad_manifest_is_refused_before_anything_is_written(
    store: AdapterStore, source: Path, changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(ManifestInvalid, match=message):
        store.write_version(TASK, "1.0.0", source, manifest_dict("1.0.0", changes))

    assert not store.root.exists()


def test_versions_sort_by_semver_not_text(store: AdapterStore, source: Path) -> None:
    for version in ("1.10.0", "1.9.0", "1.2.3", "0.1.0"):
        write(store, source, version)

    assert store.versions(TASK) == ["0.1.0", "1.2.3", "1.9.0", "1.10.0"]


def test_existing_version_is_never_overwritten(
    store: AdapterStore, source: Path, tmp_path: Path
) -> None:
    first = write(store, source, "1.0.0")
    overwrite(source / "adapter_config.json", b'{"r": 16}')

    with pytest.raises(VersionExists, match=r"support-triage@1\.0\.0 already exists"):
        write(store, source, "1.0.0")

    assert store.verify(TASK, "1.0.0") == first
    assert entries(store) == ["1.0.0"]


def test_an_empty_directory_in_the_way_is_not_replaced(store: AdapterStore, source: Path) -> None:
    (store.root / TASK / "1.0.0").mkdir(parents=True)

    with pytest.raises(VersionExists):
        write(store, source, "1.0.0")
    with pytest.raises(UnknownVersion):
        store.read_manifest(TASK, "1.0.0")


def test_rename_refuses_an_existing_empty_target(tmp_path: Path) -> None:
    # Plain rename(2) replaces an empty directory; the store must not, even in a race.
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "file").write_bytes(b"x")
    (tmp_path / "taken").mkdir()

    with pytest.raises(VersionExists, match="t@1.0.0 already exists"):
        rename_no_replace(tmp_path / "new", tmp_path / "taken", "t@1.0.0")
    assert list((tmp_path / "taken").iterdir()) == []


def test_corrupted_file_is_named(store: AdapterStore, source: Path) -> None:
    write(store, source, "1.0.0")
    overwrite(store.root / TASK / "1.0.0" / "sub" / "tokenizer.json", b"tampered")

    with pytest.raises(ChecksumMismatch, match="sub/tokenizer.json has sha256") as caught:
        store.verify(TASK, "1.0.0")

    assert caught.value.path == "sub/tokenizer.json"


def test_extra_missing_or_symlinked_files_are_rejected(store: AdapterStore, source: Path) -> None:
    write(store, source, "1.0.0")
    version_dir = store.root / TASK / "1.0.0"

    (version_dir / "stray.bin").write_bytes(b"x")
    with pytest.raises(FileSetMismatch, match=r"extra \['stray.bin'\]"):
        store.verify(TASK, "1.0.0")
    (version_dir / "stray.bin").unlink()

    config = (version_dir / "adapter_config.json").read_bytes()
    (version_dir / "adapter_config.json").unlink()
    with pytest.raises(FileSetMismatch, match=r"missing \['adapter_config.json'\]"):
        store.verify(TASK, "1.0.0")

    (version_dir / "real.json").write_bytes(config)
    (version_dir / "adapter_config.json").symlink_to(version_dir / "real.json")
    with pytest.raises(FileSetMismatch, match=r"refused \['adapter_config.json \(symlink\)'\]"):
        store.verify(TASK, "1.0.0")


def test_invalid_manifest_makes_the_version_invisible(store: AdapterStore, source: Path) -> None:
    write(store, source, "1.0.0")
    write(store, source, "1.0.1")
    overwrite(store.root / TASK / "1.0.1" / "manifest.json", b'{"schema_version": 1, "task":')

    with pytest.raises(StoredManifestInvalid, match=r"support-triage@1\.0\.1: manifest.json is"):
        store.read_manifest(TASK, "1.0.1")
    with pytest.raises(UnknownVersion):  # for readers it does not exist
        store.verify(TASK, "1.0.1")
    assert store.versions(TASK) == ["1.0.0"]


def test_manifest_of_another_version_is_rejected(store: AdapterStore, source: Path) -> None:
    write(store, source, "1.0.0")
    shutil.copytree(store.root / TASK / "1.0.0", store.root / TASK / "1.0.1")

    with pytest.raises(StoredManifestInvalid, match=r"describes support-triage@1\.0\.0"):
        store.verify(TASK, "1.0.1")
    assert store.versions(TASK) == ["1.0.0"]


def test_directory_without_manifest_does_not_exist(store: AdapterStore, source: Path) -> None:
    write(store, source, "1.0.0")
    (store.root / TASK / "1.0.0" / "manifest.json").unlink()

    with pytest.raises(UnknownVersion, match=r"support-triage@1\.0\.0 does not exist") as caught:
        store.read_manifest(TASK, "1.0.0")
    assert not isinstance(caught.value, ManifestInvalid)
    with pytest.raises(UnknownVersion):
        store.read_manifest(TASK, "7.0.0")
    assert store.versions(TASK) == []
    assert store.tasks() == []


def test_manifest_path_escaping_through_a_symlinked_dir_is_rejected(
    store: AdapterStore, source: Path, tmp_path: Path
) -> None:
    write(store, source, "1.0.0")
    version_dir = store.root / TASK / "1.0.0"
    outside = tmp_path / "outside"
    shutil.copytree(version_dir / "sub", outside)
    shutil.rmtree(version_dir / "sub")
    (version_dir / "sub").symlink_to(outside, target_is_directory=True)

    with pytest.raises(StoredManifestInvalid, match="'sub/tokenizer.json' resolves outside"):
        store.read_manifest(TASK, "1.0.0")


# -- sources -----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["file", "dir", "fifo", "manifest", "empty"])
def test_unsafe_source_is_refused(
    store: AdapterStore, source: Path, tmp_path: Path, kind: str
) -> None:
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / "key").write_bytes(b"secret")
    if kind == "file":
        (source / "linked.bin").symlink_to(tmp_path / "secret" / "key")
    elif kind == "dir":
        (source / "linked").symlink_to(tmp_path / "secret", target_is_directory=True)
    elif kind == "fifo":
        os.mkfifo(source / "pipe")
    elif kind == "manifest":
        (source / "manifest.json").write_bytes(b"{}")
    else:
        shutil.rmtree(source)
        source.mkdir()

    with pytest.raises(SourceRejected):
        write(store, source, "1.0.0")

    assert not store.root.exists()


def test_source_directory_itself_must_not_be_a_symlink(
    store: AdapterStore, source: Path, tmp_path: Path
) -> None:
    (tmp_path / "alias").symlink_to(source, target_is_directory=True)

    with pytest.raises(SourceRejected, match="is not a directory"):
        write(store, tmp_path / "alias", "1.0.0")


HOSTILE = ["../x", "/etc", "1.0.0/../../", "a\\b", "", "..", ".", "1.0.0\n", "01.0.0", "x" * 65]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_names_are_rejected_before_the_filesystem_is_touched(
    store: AdapterStore, source: Path, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def touched(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"filesystem touched with {args}")

    calls: list[Callable[[], object]] = [
        lambda: store.write_version(name, "1.0.0", source, manifest_dict("1.0.0")),
        lambda: store.write_version(TASK, name, source, manifest_dict("1.0.0")),
        lambda: store.read_manifest(name, "1.0.0"),
        lambda: store.read_manifest(TASK, name),
        lambda: store.verify(TASK, name),
        lambda: store.versions(name),
        lambda: store.champion(name),
        lambda: store.pinned(name),
        lambda: store.set_champion(name, None),
        lambda: store.set_champion(TASK, name),
        lambda: store.pin(TASK, name, "ops", "hold"),
        lambda: store.unpin(name, "ops"),
        lambda: store.rollback(name, None, "ops", "bad"),
        lambda: store.rollback(TASK, name, "ops", "bad"),
    ]
    with monkeypatch.context() as patched:
        for function in ("open", "stat", "lstat", "listdir", "scandir", "mkdir", "rename"):
            patched.setattr(os, function, touched)
        for call in calls:
            with pytest.raises(InvalidArgument):
                call()

    assert not store.root.exists()


# -- crashes -----------------------------------------------------------------------------------


def test_leftover_temp_dir_is_invisible_and_collected(store: AdapterStore, source: Path) -> None:
    write(store, source, "1.0.0")
    crashed = store.root / TASK / ".tmp-1.0.1-abcd1234"
    shutil.copytree(store.root / TASK / "1.0.0", crashed)

    assert store.versions(TASK) == ["1.0.0"]
    with pytest.raises(UnknownVersion):
        store.read_manifest(TASK, "1.0.1")
    assert store.gc_temp() == []  # too young: a writer may have just made it
    with dir_lock(crashed):  # a live writer holds its temp dir's lock
        assert store.gc_temp(min_age_s=0) == []

    assert store.gc_temp(min_age_s=0) == [crashed]
    assert entries(store) == [".lock", "1.0.0"]
    assert store.verify(TASK, "1.0.0").version == "1.0.0"


def test_leftover_pointer_temp_file_is_collected(store: AdapterStore, source: Path) -> None:
    write(store, source, "1.0.0")
    store.set_champion(TASK, "1.0.0")
    stale = store.root / TASK / ".champion.json.x1y2z3.tmp"
    stale.write_bytes(b'{"version":')

    assert store.gc_temp(min_age_s=0) == [stale]
    assert store.champion(TASK) is not None


def test_temp_dir_alone_does_not_make_a_task(store: AdapterStore) -> None:
    (store.root / TASK / ".tmp-1.0.0-abcd1234").mkdir(parents=True)

    assert store.tasks() == []
    assert store.versions(TASK) == []


WRITER = textwrap.dedent(
    """
    import json, os, sys, time
    from pathlib import Path
    from lorafeed import failpoints
    from lorafeed.adapter_store import AdapterStore, VersionExists
    failpoints.check_armed()
    root, version, src, manifest, go = sys.argv[1:]
    while go != "-" and not os.path.exists(go):
        time.sleep(0.001)
    try:
        AdapterStore(Path(root)).write_version(
            "support-triage", version, Path(src), json.loads(Path(manifest).read_text())
        )
        print("won")
    except VersionExists:
        print("exists")
    """
)


def start_writer(
    store: AdapterStore, source: Path, version: str, go: str = "-", armed: str | None = None
) -> subprocess.Popen[str]:
    manifest_file = source.parent / f"manifest-{version}.json"
    manifest_file.write_text(json.dumps(manifest_dict(version)))
    env = {k: v for k, v in os.environ.items() if k != failpoints.ENV_VAR}
    if armed is not None:
        env[failpoints.ENV_VAR] = armed
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            WRITER,
            str(store.root),
            version,
            str(source),
            str(manifest_file),
            go,
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    stdout, stderr = process.communicate(timeout=60)
    return process.returncode, stdout.strip(), stderr


def test_crash_before_rename_leaves_no_visible_version(store: AdapterStore, source: Path) -> None:
    write(store, source, "1.0.0")

    code, _, stderr = finish(
        start_writer(store, source, "1.0.1", armed="adapter_store.before_rename")
    )

    assert code == -signal.SIGKILL, stderr
    assert store.versions(TASK) == ["1.0.0"]
    with pytest.raises(UnknownVersion):
        store.read_manifest(TASK, "1.0.1")
    leftovers = store.gc_temp(min_age_s=0)
    assert [path.name.startswith(".tmp-1.0.1-") for path in leftovers] == [True]
    assert entries(store) == [".lock", "1.0.0"]
    write(store, source, "1.0.1")  # the name was never claimed


def test_crash_after_rename_leaves_a_valid_version_and_the_pointer(
    store: AdapterStore, source: Path
) -> None:
    write(store, source, "1.0.0")
    before = store.set_champion(TASK, "1.0.0")

    code, _, stderr = finish(
        start_writer(store, source, "1.0.1", armed="adapter_store.after_rename")
    )

    assert code == -signal.SIGKILL, stderr
    assert store.verify(TASK, "1.0.1").version == "1.0.1"
    assert store.versions(TASK) == ["1.0.0", "1.0.1"]
    assert store.champion(TASK) == before
    assert store.gc_temp(min_age_s=0) == []


def test_concurrent_processes_same_version_one_wins_others_distinct_all_win(
    store: AdapterStore, source: Path, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    versions = ["2.0.0"] * 4 + ["2.0.1", "2.0.2"]
    processes = [start_writer(store, source, version, str(go)) for version in versions]
    go.touch()
    results = [finish(process) for process in processes]

    assert all(code == 0 for code, _, _ in results), results
    outcomes = [out for _, out, _ in results]
    assert sorted(outcomes[:4]) == ["exists", "exists", "exists", "won"]
    assert outcomes[4:] == ["won", "won"]
    assert store.versions(TASK) == ["2.0.0", "2.0.1", "2.0.2"]
    assert all(store.verify(TASK, v).version == v for v in store.versions(TASK))
    assert not [name for name in entries(store) if name.startswith(".tmp-")]


def test_concurrent_threads_same_version_exactly_one_wins(
    store: AdapterStore, tmp_path: Path
) -> None:
    writers = 8
    barrier = threading.Barrier(writers)
    won: list[AdapterManifest] = []
    lost: list[VersionExists] = []

    def attempt(index: int) -> None:
        src = tmp_path / f"src{index}"
        src.mkdir()
        (src / "adapter_model.safetensors").write_bytes(b"weights %d" % index)
        barrier.wait()
        try:
            won.append(store.write_version(TASK, "3.0.0", src, manifest("3.0.0")))
        except VersionExists as exc:
            lost.append(exc)

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert (len(won), len(lost)) == (1, writers - 1)
    assert store.verify(TASK, "3.0.0") == won[0]
    assert entries(store) == ["3.0.0"]


# -- champion, pin, rollback -------------------------------------------------------------------


@pytest.fixture
def three(store: AdapterStore, source: Path) -> AdapterStore:
    write(store, source, "1.0.0")
    write(store, source, "1.0.1", parent="1.0.0")
    write(store, source, "1.1.0", parent="1.0.1")
    return store


def test_champion_pointer_names_the_manifest_digest(three: AdapterStore) -> None:
    assert three.champion(TASK) is None

    champion = three.set_champion(TASK, "1.0.1")

    assert champion is not None
    assert champion.version == "1.0.1"
    assert champion.manifest_sha256 == manifest_sha256(three.read_manifest(TASK, "1.0.1"))
    assert champion.updated_at == NOW
    assert three.champion(TASK) == champion


def test_champion_compare_and_set(three: AdapterStore) -> None:
    three.set_champion(TASK, "1.0.0", expected_current=None)

    with pytest.raises(ChampionChanged, match="champion of support-triage is '1.0.0', expected"):
        three.set_champion(TASK, "1.0.1", expected_current=None)
    with pytest.raises(ChampionChanged, match="expected '1.1.0'"):
        three.set_champion(TASK, "1.0.1", expected_current="1.1.0")
    assert three.set_champion(TASK, "1.0.1", expected_current="1.0.0") is not None
    assert three.set_champion(TASK, "1.1.0", expected_current=ANY) is not None
    assert three.set_champion(TASK, None, expected_current="1.1.0") is None
    assert three.champion(TASK) is None


def test_champion_must_be_a_verified_version(three: AdapterStore) -> None:
    three.set_champion(TASK, "1.0.0")
    overwrite(three.root / TASK / "1.1.0" / "adapter_config.json", b"{}")

    with pytest.raises(ChecksumMismatch, match="adapter_config.json"):
        three.set_champion(TASK, "1.1.0")
    with pytest.raises(UnknownVersion):
        three.set_champion(TASK, "9.0.0")
    champion = three.champion(TASK)
    assert champion is not None and champion.version == "1.0.0"


def test_corrupt_pointer_file_is_reported(three: AdapterStore) -> None:
    (three.root / TASK / "champion.json").write_bytes(b'{"version": "../x"}')

    with pytest.raises(PointerInvalid, match="champion.json is invalid"):
        three.champion(TASK)


def test_pin_blocks_set_champion_until_forced_or_unpinned(three: AdapterStore) -> None:
    three.set_champion(TASK, "1.0.0")

    pin = three.pin(TASK, "1.0.1", "alice", "incident 42")

    assert three.pinned(TASK) == pin
    assert (pin.version, pin.actor, pin.at) == ("1.0.1", "alice", NOW)
    champion = three.champion(TASK)
    assert champion is not None and champion.version == "1.0.1"
    with pytest.raises(PinnedTask, match="pinned to '1.0.1' by alice .incident 42.; refusing"):
        three.set_champion(TASK, "1.1.0")
    three.set_champion(TASK, "1.0.1")  # staying on the pinned version is allowed
    assert three.set_champion(TASK, "1.1.0", force=True) is not None
    assert three.unpin(TASK, "alice") == pin
    assert three.pinned(TASK) is None
    assert three.unpin(TASK, "alice") is None
    assert three.set_champion(TASK, "1.0.0") is not None


def test_pin_needs_an_actor_and_a_reason(three: AdapterStore) -> None:
    with pytest.raises(InvalidArgument):
        three.pin(TASK, "1.0.0", "", "why")
    with pytest.raises(InvalidArgument):
        three.pin(TASK, "1.0.0", "bob", "")
    assert three.pinned(TASK) is None


def test_rollback_to_an_earlier_version_pins_it(three: AdapterStore) -> None:
    three.set_champion(TASK, "1.1.0")

    assert three.rollback(TASK, "1.0.0", "watch", "negative rate up") == ("1.1.0", "1.0.0")

    champion = three.champion(TASK)
    assert champion is not None and champion.version == "1.0.0"
    pin = three.pinned(TASK)
    assert pin is not None and (pin.version, pin.reason) == ("1.0.0", "negative rate up")
    with pytest.raises(PinnedTask):  # a learner run already under way cannot undo it
        three.set_champion(TASK, "1.1.0", expected_current="1.0.0")


def test_rollback_to_the_base_model(three: AdapterStore) -> None:
    three.set_champion(TASK, "1.0.1")
    three.pin(TASK, "1.0.1", "alice", "hold")

    assert three.rollback(TASK, None, "bob", "all adapters bad") == ("1.0.1", None)

    assert three.champion(TASK) is None
    pointer = json.loads((three.root / TASK / "champion.json").read_bytes())
    assert (pointer["version"], pointer["manifest_sha256"]) == (None, None)
    pin = three.pinned(TASK)
    assert pin is not None and (pin.version, pin.actor) == (None, "bob")
    with pytest.raises(PinnedTask, match="pinned to the base model"):
        three.set_champion(TASK, "1.0.0")


def test_rollback_must_go_back(three: AdapterStore) -> None:
    with pytest.raises(RollbackRefused, match="from the base model"):
        three.rollback(TASK, None, "ops", "nothing to undo")
    three.set_champion(TASK, "1.0.1")
    for target in ("1.0.1", "1.1.0"):
        with pytest.raises(RollbackRefused, match=f"from '1.0.1' to '{target}'"):
            three.rollback(TASK, target, "ops", "wrong way")
    with pytest.raises(UnknownVersion):
        three.rollback(TASK, "0.9.0", "ops", "never written")
    assert three.pinned(TASK) is None


# -- lineage -----------------------------------------------------------------------------------


def test_affected_by_record(store: AdapterStore, source: Path) -> None:
    write(store, source, "1.0.0", records=("faq-1",))
    write(store, source, "1.0.1", parent="1.0.0", records=("faq-2",))
    write(store, source, "1.0.10", parent="1.0.1", records=("faq-1", "faq-3"))
    other = manifest("0.1.0", records=("faq-1",)).model_copy(update={"task": "fraud"})
    store.write_version("fraud", "0.1.0", source, other)

    assert store.affected_by_record("faq-1") == [
        ("fraud", "0.1.0"),
        (TASK, "1.0.0"),
        (TASK, "1.0.10"),
    ]
    assert store.affected_by_record("faq-2") == [(TASK, "1.0.1")]
    assert store.affected_by_record("nobody") == []
    assert store.tasks() == ["fraud", TASK]
