"""The ``lorafeed`` command: the embedded stack, schema export, model preparation and the demo.

Each command reads its settings once and hands them to the module that does the work; heavy
imports happen inside the commands so ``lorafeed --help`` stays fast.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from lorafeed.settings import PlatformSettings, StackSettings

app = typer.Typer(help="lorafeed: keep a local LLM learning from a live business.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
stack_app = typer.Typer(help="The embedded stack: Tansu broker, Redis, Milvus Lite.",
                        no_args_is_help=True)
schemas_app = typer.Typer(help="Event contracts.", no_args_is_help=True)
models_app = typer.Typer(help="Local models shipped by PyPI packages.", no_args_is_help=True)
app.add_typer(stack_app, name="stack")
app.add_typer(schemas_app, name="schemas")
run_app = typer.Typer(help="Run a service in the foreground.", no_args_is_help=True)
app.add_typer(models_app, name="models")
app.add_typer(run_app, name="run")
adapters_app = typer.Typer(help="Adapter versions: list, show, diff, rollback, pin, unpin.",
                           no_args_is_help=True)
app.add_typer(adapters_app, name="adapters")
review_app = typer.Typer(help="Labels whose annotators disagree.", no_args_is_help=True)
app.add_typer(review_app, name="review")
docs_app = typer.Typer(help="Generated documentation (docs/).", no_args_is_help=True)
app.add_typer(docs_app, name="docs")

# Piped output (CI logs, `make demo | tee`) gets a width that keeps tables readable.
console = Console(width=None if sys.stdout.isatty() else 120)
err_console = Console(stderr=True)

StateDir = Annotated[
    Path | None, typer.Option("--state-dir", help="Stack state dir (default: .lorafeed).")
]


def _stack_settings(state_dir: Path | None) -> StackSettings:
    settings = StackSettings()
    return settings.model_copy(update={"state_dir": state_dir}) if state_dir else settings


def _platform(state_dir: Path | None) -> PlatformSettings:
    """Platform settings, with --state-dir (when given) overriding LORAFEED_STATE_DIR."""
    settings = PlatformSettings()
    return settings.model_copy(update={"state_dir": state_dir}) if state_dir else settings


def _fail(message: str, code: int = 1) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code)


@stack_app.command("up")
def stack_up(state_dir: StateDir = None) -> None:
    """Start the broker, Redis and Milvus Lite (what is not already running) and create topics."""
    import time

    from lorafeed.stack import Stack, StackError

    settings = _stack_settings(state_dir)
    began = time.monotonic()
    try:
        Stack(settings, log=lambda line: console.print(f"  {line}", highlight=False)).up()
    except StackError as exc:
        raise _fail(str(exc)) from exc
    console.print(f"stack healthy in {time.monotonic() - began:.1f} s")
    _print_status(settings)


@stack_app.command("down")
def stack_down(state_dir: StateDir = None) -> None:
    """Stop, by pid, everything 'stack up' started."""
    from lorafeed.stack import Stack, StackError

    try:
        stopped = Stack(_stack_settings(state_dir)).down()
    except StackError as exc:
        raise _fail(str(exc)) from exc
    console.print(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}")


@stack_app.command("status")
def stack_status(
    state_dir: StateDir = None,
    as_json: Annotated[bool, typer.Option("--json", help="URLs, ports and pids as JSON.")] = False,
) -> None:
    """Show each component's health, URL, pid and log file."""
    from lorafeed.stack import Stack, stack_info

    settings = _stack_settings(state_dir)
    if as_json:
        stack = Stack(settings)
        state = stack.state()
        info = stack_info(stack.state_dir, state) if state else {"components": {}}
        info["status"] = {row.name: row.state for row in stack.status()}
        typer.echo(json.dumps(info, indent=2, sort_keys=True))
        return
    _print_status(settings)


def _print_status(settings: StackSettings) -> None:
    from lorafeed.stack import Stack
    from lorafeed.status_view import print_stack_status

    print_stack_status(Stack(settings), console)


@schemas_app.command("export")
def schemas_export(directory: Path) -> None:
    """Write JSON Schema files for every topic's value and the shared config models."""
    from schemas.export import export_json_schemas

    written = export_json_schemas(directory)
    for path in written:
        console.print(str(path), highlight=False)
    console.print(f"{len(written)} schema files written to {directory}")


@models_app.command("prepare")
def models_prepare(
    cache_dir: Annotated[Path | None, typer.Option(help="Model cache dir.")] = None,
    force: Annotated[bool, typer.Option(help="Convert again even if cached.")] = False,
) -> None:
    """Convert the SmolLM2 GGUF to a cached safetensors dir (once) and locate MiniLM."""
    from lorafeed.models import ModelError, default_cache_dir, prepare_all

    target = cache_dir or default_cache_dir()
    with console.status("preparing models (the first conversion takes about a minute)") as status:
        try:
            paths = prepare_all(target, force=force, progress=lambda msg: status.update(msg))
        except ModelError as exc:
            raise _fail(str(exc)) from exc
    for name, path in paths.items():
        console.print(f"{name}: {path}", highlight=False)


@app.command("demo")
def demo(
    state_dir: Annotated[Path | None, typer.Option(
        "--state-dir", help="The demo's own dir, wiped at start (default .lorafeed/demo).")] = None,
    keep: Annotated[bool, typer.Option(help="Leave the stack and services running.")] = False,
    quick: Annotated[bool, typer.Option(help="A shortened scenario (the e2e test's).")] = False,
    report: Annotated[Path | None, typer.Option(
        help="Where to write the HTML report (default <state-dir>/report.html).")] = None,
) -> None:
    """The whole loop: knowledge in, answers and scores out, feedback in, better adapters live."""
    from lorafeed.demo import DEFAULT_DIR, DemoError, DemoOptions, run_demo

    options = DemoOptions(state_dir=state_dir or DEFAULT_DIR, quick=quick, keep=keep,
                          report=report)
    try:
        run_demo(options, console)
    except DemoError as exc:
        raise _fail(str(exc)) from exc


@app.command("up")
def up(
    state_dir: StateDir = None,
    port: Annotated[int, typer.Option(help="First serving node's port.")] = 8001,
    nodes: Annotated[int, typer.Option(min=1, max=16, help="Serving nodes (ports port, "
                                                           "port+1, ...).")] = 2,
    tasks_file: Annotated[Path, typer.Option(help="The task catalog.")] = Path(
        "config/tasks.toml"),
) -> None:
    """The stack and every service under a supervisor, until Ctrl-C (then all stopped by pid)."""
    from lorafeed.up import UpError, run_up

    if not tasks_file.is_file():
        raise _fail(f"task catalog {tasks_file} does not exist", 2)
    try:
        code = run_up(_stack_settings(state_dir), tasks_file,
                      tuple(range(port, port + nodes)), console)
    except UpError as exc:
        raise _fail(str(exc)) from exc
    raise typer.Exit(code)


@app.command("down")
def down(state_dir: StateDir = None) -> None:
    """Stop, by pid, the services and the stack that `lorafeed up` started."""
    from lorafeed.lifecycle import SupervisorError
    from lorafeed.stack import StackError
    from lorafeed.up import run_down

    try:
        stopped = run_down(_stack_settings(state_dir))
    except (SupervisorError, StackError) as exc:
        raise _fail(str(exc)) from exc
    console.print(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}")


@run_app.command("streams", context_settings={"allow_extra_args": True,
                                              "ignore_unknown_options": True})
def run_streams(ctx: typer.Context) -> None:
    """The streams worker: records.raw -> clean, dedup, embed -> Milvus (settings: STREAMS_*).

    Start several to share the partitions; extra arguments go to faust's worker command.
    """
    from streams.app import main as streams_main

    streams_main(list(ctx.args))


@run_app.command("learner")
def run_learner() -> None:
    """The learner: feedback and knowledge -> gated LoRA versions (settings: LEARNER_*)."""
    from learner.app import main as learner_main

    learner_main()


@run_app.command("serve")
def run_serve(
    port: Annotated[int | None, typer.Option(help="HTTP port (default SERVING_PORT).")] = None,
) -> None:
    """A serving node: scoring, chat, feedback, search (settings: SERVING_*)."""
    from serving.app import main as serving_main

    serving_main(port)


@run_app.command("scorer")
def run_scorer() -> None:
    """The streaming scorer: transactions.raw -> scores.out (settings: SERVING_*)."""
    from serving.scoring_worker import main as scorer_main

    scorer_main()


@app.command("dashboard")
def dashboard(
    port: Annotated[int | None, typer.Option(help="HTTP port (default 8090).")] = None,
    host: Annotated[str | None, typer.Option(help="Bind address (default 127.0.0.1).")] = None,
    node: Annotated[list[str] | None, typer.Option(
        "--node", help="A serving node's base URL (repeat for each node).")] = None,
    streams_metrics: Annotated[list[str] | None, typer.Option(
        "--streams-metrics", help="A streams worker's /metrics URL (repeatable).")] = None,
    learner_metrics: Annotated[list[str] | None, typer.Option(
        "--learner-metrics", help="A learner's /metrics URL (repeatable).")] = None,
    refresh: Annotated[float | None, typer.Option(help="Seconds between refreshes.")] = None,
    state_dir: StateDir = None,
) -> None:
    """A live web page: topic lag, records, feedback, versions, nodes, latency (settings:
    LORAFEED_DASHBOARD_*)."""
    from pydantic import ValidationError

    from lorafeed.dashboard import main as dashboard_main
    from lorafeed.dashboard_settings import DashboardSettings

    given = {"port": port, "host": host, "nodes": node, "streams_metrics": streams_metrics,
             "learner_metrics": learner_metrics, "refresh_s": refresh}
    try:
        settings = DashboardSettings(**{k: v for k, v in given.items() if v is not None})
    except ValidationError as exc:
        raise _fail(f"dashboard settings: {exc}", 2) from exc
    dashboard_main(settings, _platform(state_dir), announce=console.print)


@app.command("ingest")
def ingest(
    path: Annotated[Path, typer.Argument(help="A .jsonl or .csv file, or a directory of "
                                              ".html/.md/.txt files.")],
    bootstrap: Annotated[str | None, typer.Option(help="Kafka bootstrap servers.")] = None,
    prefix: Annotated[str | None, typer.Option(help="Topic prefix.")] = None,
    state_dir: StateDir = None,
) -> None:
    """Publish records to records.raw; bad lines are reported with their line numbers."""
    from lorafeed.ingest_cli import run_ingest

    settings = PlatformSettings()
    code = run_ingest(path, bootstrap or settings.bootstrap_servers,
                      prefix if prefix is not None else (settings.topic_prefix or None),
                      state_dir or settings.state_dir, console)
    raise typer.Exit(code)


@app.command("search")
def search(
    text: Annotated[str, typer.Argument(help="What to look for (any language).")],
    top_k: Annotated[int, typer.Option("--top-k", "-k", min=1, max=100)] = 5,
    mode: Annotated[str, typer.Option(help="hybrid, dense or bm25.")] = "hybrid",
    collection: Annotated[str, typer.Option(help="Knowledge collection.")] = "knowledge",
    as_json: Annotated[bool, typer.Option("--json", help="Hits as JSON.")] = False,
    state_dir: StateDir = None,
) -> None:
    """Hybrid (BM25 + dense) search of the knowledge base, printing ranked hits."""
    from lorafeed.endpoints import EndpointError, resolve_endpoints
    from lorafeed.search_cli import run_search

    settings = _platform(state_dir)
    try:
        endpoints = resolve_endpoints(settings)
    except EndpointError as exc:
        raise _fail(str(exc), 2) from exc
    raise typer.Exit(run_search(endpoints.milvus_uri, collection, text, top_k, mode, as_json,
                                console))


Actor = Annotated[str | None, typer.Option(help="Who acts (audit trail); default cli@host.")]
Reason = Annotated[str, typer.Option(help="Why (kept in the pin and the audit trail).")]


def _adapter_store(state_dir: Path | None) -> Any:
    from lorafeed.adapter_store_s3 import open_adapter_store

    return open_adapter_store(_platform(state_dir), role="publisher")


def _sender(state_dir: Path | None) -> Any:
    """Publishes audit/model events through the platform's broker and waits for acks."""
    from lorafeed.endpoints import resolve_endpoints
    from lorafeed.kafka_clients import make_producer
    from lorafeed.publish import publish_events

    settings = _platform(state_dir)

    def send(events: list[Any]) -> None:
        endpoints = resolve_endpoints(settings)
        publish_events(make_producer(endpoints.bootstrap_servers), endpoints.topic_prefix, events)

    return send


def _adapters(action: Any) -> None:
    """Run an adapters action, turning store and broker errors into one clear line."""
    from lorafeed.adapter_store_errors import AdapterStoreError
    from lorafeed.endpoints import EndpointError
    from lorafeed.publish import PublishError

    try:
        code = action()
    except (AdapterStoreError, EndpointError) as exc:
        raise _fail(str(exc), 2) from exc
    except PublishError as exc:
        raise _fail(f"the change is in the adapter store, but announcing it failed: {exc}") from exc
    raise typer.Exit(code)


@adapters_app.command("list")
def adapters_list(task: Annotated[str | None, typer.Argument()] = None,
                  state_dir: StateDir = None) -> None:
    """Every version per task, newest first, with its gate verdict and pointers."""
    from lorafeed import adapters_cli

    _adapters(lambda: adapters_cli.list_versions(_adapter_store(state_dir), task, console))


@adapters_app.command("show")
def adapters_show(task: str, version: Annotated[str | None, typer.Argument()] = None,
                  as_json: Annotated[bool, typer.Option("--json")] = False,
                  state_dir: StateDir = None) -> None:
    """A version's manifest (default: the champion), after checking every file's sha256."""
    from lorafeed import adapters_cli

    _adapters(lambda: adapters_cli.show_version(_adapter_store(state_dir), task, version,
                                                as_json, console))


@adapters_app.command("diff")
def adapters_diff(task: str, old: str, new: str, state_dir: StateDir = None) -> None:
    """Settings, metrics and lineage that differ between two versions."""
    from lorafeed import adapters_cli

    _adapters(lambda: adapters_cli.diff_versions(_adapter_store(state_dir), task, old, new,
                                                 console))


@adapters_app.command("rollback")
def adapters_rollback(task: str, version: Annotated[str | None, typer.Argument(
                          help="Target (default: the previous promoted version).")] = None,
                      to_base: Annotated[bool, typer.Option(help="Back to the base model.")]
                      = False,
                      actor: Actor = None, reason: Reason = "manual rollback",
                      state_dir: StateDir = None) -> None:
    """Move the champion back and pin it there; nodes reload on the event."""
    from lorafeed import adapters_cli

    store = _adapter_store(state_dir)
    if to_base and version is not None:
        raise _fail("give a VERSION or --to-base, not both", 2)

    def act() -> int:
        return adapters_cli.rollback(store, task, version, actor or adapters_cli.default_actor(),
                                     reason, _sender(state_dir), console, to_base=to_base)

    _adapters(act)


@adapters_app.command("pin")
def adapters_pin(task: str, version: str, actor: Actor = None, reason: Reason = "manual pin",
                 state_dir: StateDir = None) -> None:
    """Pin a task at a version: it becomes the champion and the learner leaves it alone."""
    from lorafeed import adapters_cli

    _adapters(lambda: adapters_cli.pin(_adapter_store(state_dir), task, version,
                                       actor or adapters_cli.default_actor(), reason,
                                       _sender(state_dir), console))


@adapters_app.command("unpin")
def adapters_unpin(task: str, actor: Actor = None, state_dir: StateDir = None) -> None:
    """Let the learner promote new versions of the task again."""
    from lorafeed import adapters_cli

    _adapters(lambda: adapters_cli.unpin(_adapter_store(state_dir), task,
                                         actor or adapters_cli.default_actor(),
                                         _sender(state_dir), console))


@adapters_app.command("affected")
def adapters_affected(record_id: str, state_dir: StateDir = None) -> None:
    """Versions whose training lineage holds a record (e.g. after it was deleted upstream)."""
    from lorafeed import adapters_cli

    _adapters(lambda: adapters_cli.affected(_adapter_store(state_dir), record_id, console))


@review_app.command("list")
def review_list(task: str, as_json: Annotated[bool, typer.Option("--json")] = False,
                state_dir: StateDir = None) -> None:
    """Items whose annotators disagree, with every vote."""
    from lorafeed.review_cli import run_review_list

    raise typer.Exit(run_review_list(task, as_json, state_dir, console))


@review_app.command("resolve")
def review_resolve(task: str, item: str, label: str, actor: Actor = None,
                   state_dir: StateDir = None) -> None:
    """Decide an item's label; it then trains like an agreed label."""
    from lorafeed.review_cli import run_review_resolve

    raise typer.Exit(run_review_resolve(task, item, label, actor, state_dir, console,
                                        _sender(state_dir)))


DocsCheck = Annotated[bool, typer.Option("--check", help="Only compare; exit 1 on drift.")]


@docs_app.command("config")
def docs_config(path: Annotated[Path, typer.Argument()] = Path("docs/configuration.md"),
                check: DocsCheck = False) -> None:
    """Write the configuration reference, generated from the settings classes."""
    from lorafeed.config_docs import REGENERATE, render, sync_file

    raise typer.Exit(sync_file(path, render(), check=check, command=REGENERATE))


@docs_app.command("contracts")
def docs_contracts(path: Annotated[Path, typer.Argument()] = Path("docs/contracts.md"),
                   check: DocsCheck = False) -> None:
    """Write the event contracts reference, generated from schemas/ and the samples."""
    from lorafeed.config_docs import sync_file
    from lorafeed.contract_docs import REGENERATE, render

    raise typer.Exit(sync_file(path, render(), check=check, command=REGENERATE))


def main() -> None:
    app()
