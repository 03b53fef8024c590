"""Rich tables of the embedded stack's state, shared by `lorafeed stack status` and the demo."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from lorafeed.stack import Stack, StackState


def print_stack_status(stack: Stack, console: Console) -> None:
    """A table of the components (state, URL, pid, log) and one of the topics."""
    table = Table(title=f"lorafeed stack ({stack.state_dir})")
    for column in ("component", "state", "url", "pid", "log"):
        table.add_column(column)
    colours = {"healthy": "green", "unhealthy": "red", "stopped": "dim"}
    for row in stack.status():
        pid = str(row.pid) if row.pid else ("external" if row.url else "-")
        state = f"[{colours[row.state]}]{row.state}[/]"
        if row.detail and row.state != "stopped":
            state += f" ({row.detail})"
        table.add_row(row.name, state, row.url or "-", pid, row.log_path or "-")
    console.print(table)
    state = stack.state()
    if state and state.topics:
        console.print(_topic_table(state))


def _topic_table(state: StackState) -> Table:
    """Each topic with the partitions the table asks for and what the broker serves now."""
    serving = _broker_partitions(state.bootstrap_servers) if state.bootstrap_servers else {}
    table = Table(title="topics")
    table.add_column("topic")
    table.add_column("partitions", justify="right")
    table.add_column("broker serves", justify="right")
    for name, partitions in sorted(state.topics.items()):
        live = serving.get(name)
        shown = "[red]missing[/]" if live is None else (
            f"[green]{live}[/]" if live == partitions else f"[red]{live}[/]"
        )
        table.add_row(name, str(partitions), shown)
    return table


def _broker_partitions(bootstrap: str) -> dict[str, int]:
    from confluent_kafka import KafkaException

    from lorafeed.kafka_clients import make_admin

    try:
        metadata = make_admin(bootstrap).list_topics(timeout=5)
    except KafkaException:
        return {}
    return {name: len(topic.partitions) for name, topic in metadata.topics.items()}
