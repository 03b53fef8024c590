"""JSON Schema export is deterministic and the committed copies match the code (drift test)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from schemas import export
from schemas.export import export_json_schemas, json_schemas, main
from schemas.topics import Topic

COMMITTED = Path(export.__file__).parent / "jsonschema"
REGENERATE = (
    "JSON Schemas drifted from the code; regenerate them with "
    "`lorafeed schemas export schemas/jsonschema` "
    "(or `python -m schemas.export schemas/jsonschema`) and commit the result"
)


def test_committed_schemas_match_the_code(tmp_path: Path) -> None:
    written = export_json_schemas(tmp_path)
    committed = sorted(path.name for path in COMMITTED.glob("*.json"))
    assert [path.name for path in written] == committed, REGENERATE
    for path in written:
        assert path.read_bytes() == (COMMITTED / path.name).read_bytes(), (
            f"{path.name}: {REGENERATE}"
        )


def test_one_file_per_topic_plus_config_and_manifest() -> None:
    names = set(json_schemas())
    assert names == {f"{topic.value}.schema.json" for topic in Topic} | {
        "task-config.schema.json",
        "adapter-manifest.schema.json",
    }


def test_output_is_deterministic(tmp_path: Path) -> None:
    first = {p.name: p.read_bytes() for p in export_json_schemas(tmp_path / "a")}
    second = {p.name: p.read_bytes() for p in export_json_schemas(tmp_path / "b")}
    assert first == second
    for name, data in first.items():
        assert data.endswith(b"}\n"), name
        assert (
            data.decode()
            == json.dumps(json.loads(data), sort_keys=True, indent=2, ensure_ascii=False) + "\n"
        )


def test_documents_are_identified() -> None:
    for name, document in json_schemas().items():
        stem = name.removesuffix(".schema.json")
        assert document["$id"] == f"urn:lorafeed:schema:{stem}"
        assert document["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert document["title"]
    raw = json_schemas()["records.raw.schema.json"]
    assert raw["title"] == "RecordIngested"
    assert raw["x-kafka-key"] == "record_id"
    assert "schema_version" in raw["required"]
    assert json_schemas()["task-config.schema.json"]["$defs"]["EwcSettings"]["properties"]["lambda"]


def test_main(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage" in capsys.readouterr().err
    assert main([str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out.split()
    assert len(printed) == len(Topic) + 2
    assert all(Path(line).is_file() for line in printed)
