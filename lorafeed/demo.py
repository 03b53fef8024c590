"""`lorafeed demo`: start the embedded stack, send a sample of every event through the broker,
read it back, show how malformed input is refused, index a seeded knowledge base through a real
streams worker and search it, and print the stack's status.

Later work grows this into the full loop (ingest, serve, feedback, learn, roll out).
"""

from __future__ import annotations

import time
import uuid

from rich.console import Console
from rich.table import Table

from lorafeed.demo_knowledge import KnowledgeStepError, feed_knowledge
from lorafeed.roundtrip import RoundTripError, publish, read_back
from lorafeed.samples import sample_events
from lorafeed.settings import StackSettings
from lorafeed.stack import Stack, StackError
from lorafeed.status_view import print_stack_status
from schemas import TOPICS, SchemaError, Topic, decode

# Payloads a careless or hostile producer might send to records.raw, and what the codec says.
MALFORMED: list[tuple[str, bytes]] = [
    ("not UTF-8", b'{"schema_version": 1, "record_id": "\xff\xfe"}'),
    ("not JSON", b'{"schema_version": 1, record_id: "r1"}'),
    ("missing schema_version", b'{"record_id": "r1"}'),
    ("schema_version 2", b'{"schema_version": 2, "record_id": "r1"}'),
    (
        "unknown field",
        b'{"schema_version": 1, "record_id": "r1", "op": "upsert", "source": "s",'
        b' "content_type": "text/plain", "content": "x",'
        b' "occurred_at": "2026-01-01T00:00:00Z", "colour": "red"}',
    ),
    (
        "wrong type",
        b'{"schema_version": 1, "record_id": 42, "op": "upsert", "source": "s",'
        b' "content_type": "text/plain", "content": "x",'
        b' "occurred_at": "2026-01-01T00:00:00Z"}',
    ),
    ("nesting bomb", b"[" * 100_000 + b"]" * 100_000),
    ("oversized", b'{"schema_version": 1, "content": "' + b"x" * (5 * 1024 * 1024) + b'"}'),
]


class DemoError(RuntimeError):
    """The demo could not run (the stack did not come up, or the broker lost events)."""


def run_demo(settings: StackSettings, console: Console, keep_stack: bool = False) -> bool:
    """Run the scenario; returns True when every event came back intact."""
    stack = Stack(settings, log=lambda line: console.print(f"  {line}", highlight=False))
    already_up = all(row.state == "healthy" for row in stack.status())
    console.rule("[bold]1. embedded stack")
    began = time.monotonic()
    try:
        state = stack.up()
    except StackError as exc:
        raise DemoError(str(exc)) from exc
    console.print(f"stack healthy in {time.monotonic() - began:.1f} s")
    try:
        assert state.bootstrap_servers is not None
        ok = _round_trip(state.bootstrap_servers, state.topic_prefix, console)
        _show_refusals(console)
        console.rule("[bold]4. knowledge: Kafka -> streams worker -> Milvus -> search")
        try:
            feed_knowledge(state, stack.state_dir, console)
        except KnowledgeStepError as exc:
            raise DemoError(str(exc)) from exc
        console.rule("[bold]5. status")
        print_stack_status(stack, console)
    finally:
        if not keep_stack and not already_up:
            stopped = stack.down()
            console.print(
                f"stopped what the demo started: {', '.join(stopped)} "
                "(use --keep to leave the stack running)"
            )
    return ok


def _round_trip(bootstrap: str, prefix: str, console: Console) -> bool:
    console.rule("[bold]2. every event type through the broker")
    events = sample_events()
    try:
        with console.status("publishing and reading back (consumer group join takes a few s)"):
            acked = publish(bootstrap, prefix, events)
            seen = read_back(bootstrap, prefix, events, group_id=f"demo-{uuid.uuid4().hex[:8]}")
    except RoundTripError as exc:
        raise DemoError(str(exc)) from exc
    table = Table()
    for column in ("topic", "value type", "partitions", "acked", "read back", "committed"):
        table.add_column(column, justify="left" if column in ("topic", "value type") else "right")
    ok = True
    for topic, batch in events.items():
        back = len(seen.found[topic])
        committed = sum(1 for (name, _) in seen.committed if name == prefix + topic)
        ok &= back == len(batch) == acked[topic]
        colour = "green" if back == len(batch) else "red"
        table.add_row(
            str(topic),
            _type_name(topic),
            str(TOPICS[topic].partitions),
            str(acked[topic]),
            f"[{colour}]{back}[/]",
            f"{committed} partitions",
        )
    console.print(table)
    return ok


def _show_refusals(console: Console) -> None:
    console.rule("[bold]3. malformed input is refused with a typed error")
    table = Table()
    for column in ("payload", "error", "DLQ reason", "message"):
        table.add_column(column)
    for label, payload in MALFORMED:
        try:
            decode(Topic.RECORDS_RAW, payload)
        except SchemaError as exc:
            table.add_row(label, type(exc).__name__, str(exc.reason), _short(str(exc)))
        else:
            table.add_row(label, "[red]accepted[/]", "-", "-")
    console.print(table)


def _type_name(topic: Topic) -> str:
    spec = TOPICS[topic]
    if spec.variants:
        return ", ".join(cls.__name__ for cls in spec.variants.values())
    return getattr(spec.value_type, "__name__", str(spec.value_type))


def _short(text: str, limit: int = 90) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
