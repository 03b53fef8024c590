"""Adapter manifests: relative file paths only, ordered versions, and a stable digest."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from schemas.base import canonical_json
from schemas.manifest import AdapterManifest, manifest_sha256

SHA = "d" * 64
KNOWN_DIGEST = "8b611257402652d5683ed0f11ef1fffb463abdf967bcbd806c99fe1e1677c513"


def _manifest(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "schema_version": 1,
        "task": "support-triage",
        "version": "2.3.1",
        "parent_version": "2.3.0",
        "kind": "generation",
        "base_model_id": "HuggingFaceTB/SmolLM2-135M-Instruct",
        "base_model_sha256": SHA,
        "files": {
            "adapter_model.safetensors": "1" * 64,
            "adapter_config.json": "2" * 64,
            "extra/tokenizer.json": "3" * 64,
        },
        "lora": {"r": 8, "alpha": 16, "dropout": 0.05, "target_modules": ["q_proj", "v_proj"]},
        "configs": {"task": {"name": "support-triage", "ewc": {"lambda": 1000.0}}},
        "metrics": {"target.rouge_l": 0.41, "retained.faq.accuracy": 0.88},
        "gate": {
            "promoted": True,
            "reason": "gain 0.03 > 0.0, forgetting 0.004 <= 0.02",
            "numbers": {"gain": 0.03, "forgetting": 0.004},
        },
        "lineage": {
            "offsets": [{"topic": "feedback.events", "partition": 0, "first": 10, "last": 42}],
            "request_ids": ["req-1", "req-2"],
            "record_ids": ["faq-42"],
            "knowledge_sources": ["faq"],
        },
        "created_at": "2024-05-01T12:00:00Z",
    }
    data.update(changes)
    return data


def test_valid_manifest() -> None:
    manifest = AdapterManifest.model_validate(_manifest())
    assert manifest.lineage.offsets[0].last == 42
    assert manifest.gate.promoted


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("/etc/passwd", "is absolute"),
        ("../x", "'..' segment"),
        ("a/../../x", "'..' segment"),
        ("a/..", "'..' segment"),
        ("./a", "'.' or '..' segment"),
        ("a//b", "empty"),
        ("a/", "empty"),
        ("a\\..\\b", "contains '\\\\\\\\'"),
        ("C:x", "contains ':'"),
        ("a\x00b", "contains '\\\\x00'"),
        ("", "1 to 512 characters"),
    ],
)
def test_file_paths_must_be_relative_and_plain(path: str, problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        AdapterManifest.model_validate(_manifest(files={path: SHA}))


def test_files_are_required_and_hashed() -> None:
    with pytest.raises(ValidationError, match="files"):
        AdapterManifest.model_validate(_manifest(files={}))
    with pytest.raises(ValidationError, match="sha256"):
        AdapterManifest.model_validate(_manifest(files={"a.bin": "XYZ"}))


@pytest.mark.parametrize("parent", ["2.3.1", "2.4.0", "10.0.0"])
def test_parent_must_be_older(parent: str) -> None:
    with pytest.raises(ValidationError, match=f"parent_version {parent} must be lower than"):
        AdapterManifest.model_validate(_manifest(parent_version=parent))


def test_first_version_has_no_parent() -> None:
    assert AdapterManifest.model_validate(_manifest(parent_version=None)).parent_version is None


def test_offset_range_order() -> None:
    lineage = _manifest()["lineage"]
    lineage["offsets"] = [{"topic": "feedback.events", "partition": 0, "first": 5, "last": 4}]
    with pytest.raises(ValidationError, match=r"feedback.events\[0\] ends \(4\) before"):
        AdapterManifest.model_validate(_manifest(lineage=lineage))


def test_metrics_must_be_finite() -> None:
    with pytest.raises(ValidationError, match="metrics"):
        AdapterManifest.model_validate(_manifest(metrics={"loss": float("nan")}))


def test_digest_is_over_canonical_json() -> None:
    manifest = AdapterManifest.model_validate(_manifest())
    digest = manifest_sha256(manifest)
    assert len(digest) == 64
    assert digest == manifest_sha256(
        AdapterManifest.model_validate_json(manifest.model_dump_json())
    )
    reordered = _manifest()
    reordered["files"] = dict(reversed(list(reordered["files"].items())))
    reordered = dict(reversed(list(reordered.items())))
    assert manifest_sha256(AdapterManifest.model_validate(reordered)) == digest


def test_digest_changes_with_any_content() -> None:
    digest = manifest_sha256(AdapterManifest.model_validate(_manifest()))
    files = _manifest()["files"] | {"adapter_model.safetensors": "4" * 64}
    assert manifest_sha256(AdapterManifest.model_validate(_manifest(files=files))) != digest
    assert manifest_sha256(AdapterManifest.model_validate(_manifest(version="2.3.2"))) != digest


def test_digest_known_answer() -> None:
    """Pins the canonical form: changing it would orphan every published manifest digest."""
    manifest = AdapterManifest.model_validate(_manifest())
    canonical = canonical_json(manifest)
    assert canonical.startswith(b'{"base_model_id":"HuggingFaceTB/SmolLM2-135M-Instruct",')
    assert b'"created_at":"2024-05-01T12:00:00Z","files":{"adapter_config.json":' in canonical
    assert manifest_sha256(manifest) == KNOWN_DIGEST
