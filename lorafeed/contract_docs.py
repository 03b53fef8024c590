"""The event contracts reference (docs/contracts.md), generated from the topic table, the event
classes and the samples of `lorafeed.samples.sample_events` (at a fixed time, so the text is
stable). Nothing in the examples is written by hand: each one is a validated event, encoded by
the codec exactly as it travels.

`lorafeed docs contracts` (or `python -m lorafeed.contract_docs`) rewrites the file; `--check`
only compares. A unit test fails when the committed file drifts from :func:`render`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from pydantic import BaseModel

from lorafeed.config_docs import sync_file, type_name
from lorafeed.samples import message_key, sample_events
from schemas.base import Event
from schemas.codec import MAX_DEPTH, encode
from schemas.dead_letters import DLQ_FULL_MAX, DLQ_HEAD_BYTES, DeadLetterReason
from schemas.topics import TOPICS, Topic, TopicSpec

DEFAULT_PATH: Final = Path("docs/contracts.md")
REGENERATE: Final = "lorafeed docs contracts"  # also: python -m lorafeed.contract_docs
SAMPLE_TIME: Final = datetime(2026, 1, 15, 9, 30, tzinfo=UTC)

# Who writes and who reads each topic (the code that does: tests check every topic is here).
ROLES: Final[Mapping[Topic, tuple[str, str]]] = {
    Topic.RECORDS_RAW: ("any producer (any Kafka client, plain JSON); `lorafeed ingest`",
                        "streams workers (group `STREAMS_APP_ID`)"),
    Topic.RECORDS_CLEAN: ("streams workers", "the learner (knowledge sources); any other "
                          "consumer that wants pseudonymized text"),
    Topic.RECORDS_INDEXED: ("streams workers", "the dashboard; anyone following indexing "
                            "(the demo, tests, benchmarks)"),
    Topic.RECORDS_DLQ: ("streams workers", "operators; the dashboard counts reasons"),
    Topic.FEEDBACK_EVENTS: ("serving nodes (`POST /v1/feedback`)",
                            "the learner (group `LEARNER_GROUP_ID`)"),
    Topic.FEEDBACK_DLQ: ("the learner (invalid feedback); the scorer (invalid transactions)",
                         "operators; the dashboard counts reasons"),
    Topic.TRANSACTIONS_RAW: ("any producer", "the scorer (group `SERVING_SCORER_GROUP_ID`)"),
    Topic.SCORES_OUT: ("the scorer", "apps (fraud decisions, alerting)"),
    Topic.MODEL_EVENTS: ("the learner (published, promoted, rejected, rolled back); "
                         "`lorafeed adapters` and the admin API (rolled back, promoted); serving "
                         "nodes and the scorer (activated, load failed)",
                         "serving nodes and the scorer (each on its own group); the learner "
                         "(load failures feed its watch); the dashboard"),
    Topic.AUDIT_EVENTS: ("`lorafeed adapters rollback|pin|unpin`, `lorafeed review resolve`, "
                         "the admin API, the learner's automatic rollbacks",
                         "operators, compliance tooling"),
}  # fmt: skip


# What the samples cannot show, per topic.
NOTES: Final[Mapping[Topic, str]] = {
    Topic.RECORDS_INDEXED: "Chunk ids are the Milvus primary keys, "
    "`<record_id>#<chunk index, 5 digits>`.",
    Topic.FEEDBACK_EVENTS: "Apps do not build this event: they post `{request_id, kind, rating "
    "| correction | label, annotator?}` to a serving node's `POST /v1/feedback`, and the node "
    "adds what it recorded when it served the request (task, input, output, adapter version, "
    "passages, already pseudonymized) and publishes it. The answer is 202 once the broker "
    "acknowledged it.",
    Topic.MODEL_EVENTS: "Events name a task, a version and a manifest digest, never a path: "
    "each task's champion pointer in the adapter store is the truth, and an event only tells "
    "readers to look at it again. One partition keeps each task's lifecycle in order.",
    Topic.TRANSACTIONS_RAW: "`task` defaults to `fraud`; a late label for a scored "
    "transaction is posted to `POST /v1/feedback` with `request_id` = `event_id`.",
}


def _retention(spec: TopicSpec) -> str:
    if spec.retention_ms is None:
        return "compacted, forever" if spec.compacted else "forever"
    days = spec.retention_ms / 86_400_000
    return f"{days:g} days"


def _size(value: int) -> str:
    return f"{value // (1024 * 1024)} MiB" if value % (1024 * 1024) == 0 else f"{value} bytes"


def _value_types(spec: TopicSpec) -> list[type[BaseModel]]:
    if spec.variants:
        return list(spec.variants.values())
    assert isinstance(spec.value_type, type)
    return [spec.value_type]


def _doc(cls: type[BaseModel]) -> str:
    return " ".join((cls.__doc__ or "").split())


def _fields(cls: type[BaseModel]) -> str:
    parts = []
    for name, field in cls.model_fields.items():
        wire = field.alias or name
        mark = "" if field.is_required() else "?"
        parts.append(f"`{wire}{mark}`: {type_name(field.annotation, models='')}")
    return "; ".join(parts)


def _example(topic: Topic, event: Event) -> list[str]:
    body = json.dumps(json.loads(encode(event)), indent=2, ensure_ascii=False)
    return [f"{type(event).__name__}, key `{message_key(topic, event)}`:", "", "```json",
            body, "```", ""]


HEADER: Final = f"""# Event contracts

Generated from `schemas/` and `lorafeed/samples.py` by `{REGENERATE}`
(`python -m lorafeed.contract_docs`); do not edit by hand. A unit test fails when this file and
the code disagree.

Every message lorafeed reads or writes is one of the frozen, versioned pydantic models in
`schemas/`, on a topic of the topic table (`schemas/topics.py`, the only place topic names
exist). Values are UTF-8 JSON objects with a `schema_version` field; producers in other
languages find a JSON Schema per topic in `schemas/jsonschema/` (`lorafeed schemas export DIR`
writes them; a test fails if the committed copies drift). Keys are UTF-8 strings: the field the
table names. A deployment may prefix every topic name (`LORAFEED_TOPIC_PREFIX`, e.g.
`staging.records.raw`).

Rules of the wire format (`schemas/codec.py`):

- lorafeed writes canonical JSON: sorted keys, no whitespace, times in ISO-8601 UTC (`Z`).
  Readers accept any key order and spacing.
- `decode(topic, bytes)` refuses, each with a typed error whose `reason` becomes the dead
  letter's reason: bytes that are not UTF-8 (`not_utf8`); not JSON, including NaN/Infinity,
  duplicate keys and nesting deeper than {MAX_DEPTH} levels (`not_json`); a JSON value that is
  not an object (`not_an_object`); a missing, wrong or newer `schema_version`
  (`schema_version`); unknown fields (`unknown_field`); missing fields or wrong types
  (`invalid_field`); a payload over the topic's size cap (`too_large`).
- Within a `schema_version` only optional fields are ever added. A breaking change is a new
  version plus one upgrade function that lifts old messages on read.
- A dead letter keeps the original bytes (base64) when they are at most {DLQ_FULL_MAX // 1024} KiB,
  else their sha256, size and the first {DLQ_HEAD_BYTES // 1024} KiB.

"""


def _topic_table() -> list[str]:
    lines = ["## Topics", "", "| topic | key | value | partitions | retention | max message |",
             "|---|---|---|---|---|---|"]
    for topic, spec in TOPICS.items():
        names = ", ".join(cls.__name__ for cls in _value_types(spec))
        lines.append(f"| `{topic.value}` | {spec.key} | {names} | {spec.partitions} "
                     f"| {_retention(spec)} | {_size(spec.max_message_bytes)} |")
    return [*lines, ""]


def _topic_section(topic: Topic, spec: TopicSpec, events: Sequence[Event]) -> list[str]:
    writers, readers = ROLES[topic]
    lines = [f"## `{topic.value}`", "", f"Written by {writers}. Read by {readers}. "
             f"JSON Schema: `schemas/jsonschema/{topic.value}.schema.json`.", ""]
    if topic in NOTES:
        lines += [NOTES[topic], ""]
    shown = {type(event) for event in events}
    for cls in _value_types(spec):
        lines += [f"**{cls.__name__}**: {_doc(cls)}", "",
                  f"Fields (`?`: optional): {_fields(cls)}.", ""]
        if cls not in shown:
            lines += ["(No sample of this variant; the JSON Schema has its exact shape.)", ""]
    for event in events:
        lines += _example(topic, event)
    return lines


def _reasons() -> list[str]:
    return ["## Dead-letter reasons", "",
            "The closed set of `reason` values on `records.dlq` and `feedback.dlq`: "
            + ", ".join(f"`{reason.value}`" for reason in DeadLetterReason) + ".", ""]


def render() -> str:
    """The whole of docs/contracts.md."""
    samples = sample_events(SAMPLE_TIME)
    lines = [HEADER.rstrip("\n"), "", *_topic_table(), *_reasons()]
    for topic, spec in TOPICS.items():
        lines += _topic_section(topic, spec, samples.get(topic, []))
    return "\n".join(lines).rstrip("\n") + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Write (or with --check, compare) the contracts reference; 1 when --check finds drift."""
    parser = argparse.ArgumentParser(description="Generate docs/contracts.md.")
    parser.add_argument("path", nargs="?", type=Path, default=DEFAULT_PATH)
    parser.add_argument("--check", action="store_true", help="Only compare; exit 1 on drift.")
    args = parser.parse_args(argv)
    return sync_file(args.path, render(), check=args.check, command=REGENERATE)


if __name__ == "__main__":
    sys.exit(main())
