"""`lorafeed ingest PATH`: send a JSONL, CSV or directory of files to `records.raw` with a progress
bar, then print accepted / rejected / failed counts and the rejected lines.

Exit codes: 0 all accepted, 1 some lines rejected (the good ones were sent), 2 fatal.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from lorafeed.ingest import IngestSummary, RecordProducer, ingest_path
from lorafeed.ingest_errors import BrokerError, IngestError
from lorafeed.record_readers import expected_items
from lorafeed.stack import StackError, load_state

EXIT_OK: Final = 0
EXIT_REJECTED: Final = 1
EXIT_FATAL: Final = 2
SHOWN_MAX: Final = 20
BROKER_PROBE_S: Final = 5.0
NO_BROKER: Final = "no broker: start one with 'lorafeed stack up' or set LORAFEED_BOOTSTRAP_SERVERS"


def resolve_broker(bootstrap: str | None, prefix: str | None, state_dir: Path) -> tuple[str, str]:
    """(bootstrap servers, topic prefix): from the arguments, else from the stack's state file.

    The state file's prefix is used only with its broker, and only when `prefix` is None.
    """
    if bootstrap:
        return bootstrap, prefix or ""
    try:
        state = load_state(state_dir)
    except StackError as exc:
        raise BrokerError(f"{NO_BROKER} ({exc})") from exc
    if state is None or not state.bootstrap_servers:
        raise BrokerError(NO_BROKER)
    return state.bootstrap_servers, state.topic_prefix if prefix is None else prefix


def run_ingest(
    path: Path, bootstrap: str | None, prefix: str | None, state_dir: Path, console: Console
) -> int:
    """Ingest `path` and report; returns the exit code. Called by the `lorafeed ingest` command."""
    try:
        total = expected_items(path)
        servers, topic_prefix = resolve_broker(bootstrap, prefix, state_dir)
        with RecordProducer(servers, topic_prefix) as producer:
            try:
                producer.check_broker(BROKER_PROBE_S)
            except BrokerError as exc:
                raise BrokerError(f"{exc}; {NO_BROKER.removeprefix('no broker: ')}") from exc
            summary = _ingest_with_progress(path, producer, total, console)
    except OSError as exc:
        return _fatal(console, f"cannot read {path}: {exc.strerror or exc}")
    except IngestError as exc:
        return _fatal(console, str(exc))
    _print_summary(summary, console, "file" if path.is_dir() else "line")
    if summary.failed_delivery:
        return EXIT_FATAL
    return EXIT_REJECTED if summary.rejected else EXIT_OK


def _fatal(console: Console, message: str) -> int:
    console.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    return EXIT_FATAL


def _ingest_with_progress(
    path: Path, producer: RecordProducer, total: int, console: Console
) -> IngestSummary:
    unit = "files" if path.is_dir() else "lines"
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn(unit), TimeElapsedColumn())  # fmt: skip
    with Progress(*columns, console=console) as progress:
        task = progress.add_task(f"ingesting {escape(path.name)}", total=total)
        step = max(1, total // 500)  # ~500 refreshes at most: updates cost more than sends

        def advance(line_no: int) -> None:
            if line_no % step == 0:
                progress.update(task, completed=line_no)

        summary = ingest_path(path, producer, advance)
        progress.update(task, completed=total, description=f"sent {escape(path.name)}")
    return summary


def _print_summary(summary: IngestSummary, console: Console, unit: str) -> None:
    table = Table(title="ingest summary")
    table.add_column("outcome")
    table.add_column("count", justify="right")
    table.add_row("accepted (acked by the broker)", str(summary.accepted))
    table.add_row(f"rejected {unit}s", str(len(summary.rejected)))
    table.add_row("failed deliveries", str(len(summary.failed_delivery)))
    console.print(table)
    if summary.rejected:
        rejected = Table(title=f"rejected {unit}s")
        rejected.add_column(unit, justify="right")
        rejected.add_column("reason")
        rejected.add_column("detail", overflow="fold")
        for bad in summary.rejected[:SHOWN_MAX]:
            rejected.add_row(str(bad.line_no), bad.reason.value, escape(bad.detail))
        console.print(rejected)
        _more(console, len(summary.rejected), f"rejected {unit}s")
    if summary.failed_delivery:
        failed = Table(title="failed deliveries")
        failed.add_column("record_id", overflow="fold")
        failed.add_column("error", overflow="fold")
        for record_id, error in summary.failed_delivery[:SHOWN_MAX]:
            failed.add_row(escape(record_id), escape(error))
        console.print(failed)
        _more(console, len(summary.failed_delivery), "failed deliveries")


def _more(console: Console, count: int, what: str) -> None:
    if count > SHOWN_MAX:
        console.print(f"... and {count - SHOWN_MAX} more {what}", highlight=False)
