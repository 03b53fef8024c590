"""JSON Schema export of every topic value, the task config and the adapter manifest.

For producers in other languages. Output is deterministic; regenerate the committed copies with
`lorafeed schemas export schemas/jsonschema` (or `python -m schemas.export schemas/jsonschema`).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from pydantic import BaseModel, TypeAdapter

from schemas.manifest import AdapterManifest
from schemas.tasks import TaskConfig
from schemas.topics import TOPICS

DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"
ID_PREFIX: Final = "urn:lorafeed:schema:"
UNION_DESCRIPTION: Final = "One of the event objects below, chosen by the field `type`."


def _document(
    schema: dict[str, Any], stem: str, title: str, **extra: str
) -> tuple[str, dict[str, Any]]:
    document = {**schema, "$schema": DIALECT, "$id": f"{ID_PREFIX}{stem}", "title": title}
    document.update(extra)
    return f"{stem}.schema.json", document


def _model_document(model: type[BaseModel], stem: str) -> tuple[str, dict[str, Any]]:
    return _document(model.model_json_schema(), stem, model.__name__)


def json_schemas() -> dict[str, dict[str, Any]]:
    """File name -> JSON Schema document, for every topic plus task config and manifest."""
    documents = dict(
        [
            _model_document(TaskConfig, "task-config"),
            _model_document(AdapterManifest, "adapter-manifest"),
        ]
    )
    for topic, spec in TOPICS.items():
        if isinstance(spec.value_type, TypeAdapter):
            schema = {"description": UNION_DESCRIPTION, **spec.value_type.json_schema()}
            title = f"{topic.value} event"
        else:
            schema = spec.value_type.model_json_schema()
            title = spec.value_type.__name__
        name, document = _document(
            schema, topic.value, title, **{"x-kafka-topic": topic.value, "x-kafka-key": spec.key}
        )
        documents[name] = document
    return documents


def render(document: dict[str, Any]) -> bytes:
    """The exact bytes written for a document: sorted keys, indent 2, trailing newline."""
    return (json.dumps(document, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode()


def export_json_schemas(directory: Path) -> list[Path]:
    """Write every schema into `directory` (created if needed); return the paths, sorted."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, document in sorted(json_schemas().items()):
        path = directory / name
        path.write_bytes(render(document))
        paths.append(path)
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m schemas.export DIRECTORY`: write the schemas, print their paths."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m schemas.export DIRECTORY", file=sys.stderr)
        return 2
    for path in export_json_schemas(Path(args[0])):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
