"""Version bumps follow DESIGN.md's rules, and a version number can be claimed only once."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from learner.errors import InvalidLineage, InvalidTaskName, InvalidVersion, VersionTaken
from learner.versions import (
    bump_kind,
    claim_version,
    lineage_configs,
    next_free_version,
    next_version,
)
from schemas.manifest import AdapterManifest

BASE = "b" * 64
TOKENIZER = "c" * 64
LABELS = ["fraud", "legit"]


def parent(**configs: Any) -> AdapterManifest:
    recorded = lineage_configs(
        label_set=LABELS, data_domains=["cards", "wires"], tokenizer_sha256=TOKENIZER
    )
    return AdapterManifest.model_validate(
        {
            "schema_version": 1,
            "task": "fraud",
            "version": "2.3.1",
            "parent_version": "2.3.0",
            "kind": "classification",
            "base_model_id": "minilm",
            "base_model_sha256": BASE,
            "files": {"adapter_model.safetensors": "1" * 64},
            "lora": {"r": 8},
            "configs": recorded | configs,
            "gate": {"promoted": True, "reason": "ok"},
            "lineage": {"knowledge_sources": ["faq", "policies"]},
            "created_at": "2024-05-01T12:00:00Z",
        }
    )


def kind(manifest: AdapterManifest | None = None, **changes: Any) -> str:
    arguments: dict[str, Any] = {
        "base_model_sha256": BASE,
        "label_set": LABELS,
        "knowledge_sources": ["faq"],
        "data_domains": ["wires"],
        "tokenizer_sha256": TOKENIZER,
    }
    return bump_kind(parent() if manifest is None else manifest, **(arguments | changes))


def test_first_version_of_a_task_is_1_0_0() -> None:
    first = bump_kind(
        None, base_model_sha256=BASE, label_set=None, knowledge_sources=[], data_domains=[]
    )
    assert first == "major"
    assert next_version(None, first) == "1.0.0"


def test_base_model_tokenizer_or_label_set_change_is_major() -> None:
    assert kind(base_model_sha256="e" * 64) == "major"
    assert kind(tokenizer_sha256="e" * 64) == "major"
    assert kind(label_set=["fraud", "legit", "review"]) == "major"
    assert kind(label_set=["legit", "fraud"]) == "major"  # head indices would change meaning
    assert kind(label_set=None) == "major"
    assert kind(tokenizer_sha256=None) == "patch"  # unknown here: not evidence of a change


def test_new_knowledge_source_or_data_domain_is_minor() -> None:
    assert kind(knowledge_sources=["faq", "pricing"]) == "minor"
    assert kind(data_domains=["wires", "crypto"]) == "minor"
    assert kind(data_domains=["crypto"], base_model_sha256="e" * 64) == "major"  # major wins


def test_same_sources_and_domains_is_patch() -> None:
    assert kind() == "patch"
    assert kind(knowledge_sources=[], data_domains=[]) == "patch"


def test_malformed_parent_lineage_is_refused_with_the_value() -> None:
    with pytest.raises(InvalidLineage, match=r"configs\['data_domains'\] of fraud@2.3.1"):
        kind(parent(data_domains="wires"))


@pytest.mark.parametrize(
    ("kind_", "expected"), [("major", "3.0.0"), ("minor", "2.4.0"), ("patch", "2.3.2")]
)
def test_next_version_bumps_the_named_part(kind_: Any, expected: str) -> None:
    assert next_version("2.3.1", kind_) == expected


def test_next_version_refuses_bad_input() -> None:
    with pytest.raises(InvalidVersion, match="'2.3' is not MAJOR.MINOR.PATCH"):
        next_version("2.3", "patch")
    with pytest.raises(InvalidVersion, match="cannot bump 1.2.999999999 \\(patch\\)"):
        next_version("1.2.999999999", "patch")
    with pytest.raises(InvalidVersion, match="got 'huge'"):
        next_version("1.2.3", "huge")  # type: ignore[arg-type]


def test_a_version_is_claimed_once_and_never_reused(tmp_path: Path) -> None:
    path = claim_version(tmp_path, "fraud", "2.3.2")
    assert path == tmp_path / "fraud" / ".claims" / "2.3.2"
    with pytest.raises(VersionTaken, match="version 2.3.2 of task 'fraud' is already claimed"):
        claim_version(tmp_path, "fraud", "2.3.2")
    assert next_free_version(tmp_path, "fraud", "2.3.1", "patch") == "2.3.3"
    assert next_free_version(tmp_path, "fraud", "2.3.1", "minor") == "2.4.0"
    assert next_free_version(tmp_path, "fraud", "2.3.1", "minor") == "2.5.0"
    assert next_free_version(tmp_path, "other", None, "major") == "1.0.0"
    assert next_free_version(tmp_path, "other", None, "major") == "2.0.0"


def test_concurrent_learners_get_distinct_versions(tmp_path: Path) -> None:
    start = threading.Barrier(8)
    claimed: list[str] = []

    def learner() -> None:
        start.wait()
        version = next_free_version(tmp_path, "fraud", "2.3.1", "patch")
        claimed.append(version)

    threads = [threading.Thread(target=learner) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(claimed, key=lambda v: int(v.rsplit(".", 1)[1])) == [
        f"2.3.{patch}" for patch in range(2, 10)
    ]


@pytest.mark.parametrize("task", ["../evil", "a/b", "..", "", "Fraud", "/etc", "a\x00b"])
def test_task_names_that_could_escape_the_store_are_refused(tmp_path: Path, task: str) -> None:
    store = tmp_path / "store"
    with pytest.raises(InvalidTaskName, match="task name .* is refused"):
        claim_version(store, task, "1.0.0")
    with pytest.raises(InvalidTaskName):
        next_free_version(store, task, None, "major")
    assert not tmp_path.joinpath("evil").exists() and not store.exists()


def test_version_strings_that_could_escape_the_store_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidVersion, match="'../../1.0.0' is not MAJOR.MINOR.PATCH"):
        claim_version(tmp_path, "fraud", "../../1.0.0")
    assert list(tmp_path.iterdir()) == []
