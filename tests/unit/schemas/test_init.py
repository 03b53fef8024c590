"""The package re-exports its public names."""

from __future__ import annotations

import schemas
from schemas import codec


def test_public_names_resolve() -> None:
    for name in schemas.__all__:
        assert getattr(schemas, name) is not None, name
    for name in (
        "RecordIngested",
        "Topic",
        "TOPICS",
        "topic_name",
        "encode",
        "decode",
        "SchemaError",
        "TaskConfig",
        "AdapterManifest",
        "dead_letter",
    ):
        assert name in schemas.__all__
    assert schemas.decode is codec.decode
    assert sorted(schemas.__all__) == sorted(set(schemas.__all__))
