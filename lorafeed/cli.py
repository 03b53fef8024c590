"""The ``lorafeed`` command: the embedded stack, schema export, model preparation and the demo.

Each command reads its settings once and hands them to the module that does the work; heavy
imports happen inside the commands so ``lorafeed --help`` stays fast.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

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

# Piped output (CI logs, `make demo | tee`) gets a width that keeps tables readable.
console = Console(width=None if sys.stdout.isatty() else 120)
err_console = Console(stderr=True)

StateDir = Annotated[
    Path | None, typer.Option("--state-dir", help="Stack state dir (default: .lorafeed).")
]


def _stack_settings(state_dir: Path | None) -> StackSettings:
    settings = StackSettings()
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
    state_dir: StateDir = None,
    keep: Annotated[bool, typer.Option(help="Leave the stack running afterwards.")] = False,
) -> None:
    """Start the embedded stack, publish a sample of every event and read it back."""
    from lorafeed.demo import DemoError, run_demo

    try:
        ok = run_demo(_stack_settings(state_dir), console, keep_stack=keep)
    except DemoError as exc:
        raise _fail(str(exc)) from exc
    if not ok:
        raise typer.Exit(1)


@run_app.command("streams", context_settings={"allow_extra_args": True,
                                              "ignore_unknown_options": True})
def run_streams(ctx: typer.Context) -> None:
    """The streams worker: records.raw -> clean, dedup, embed -> Milvus (settings: STREAMS_*).

    Start several to share the partitions; extra arguments go to faust's worker command.
    """
    from streams.app import main as streams_main

    streams_main(list(ctx.args))


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

    settings = PlatformSettings()
    if state_dir:
        settings = settings.model_copy(update={"state_dir": state_dir})
    try:
        endpoints = resolve_endpoints(settings)
    except EndpointError as exc:
        raise _fail(str(exc), 2) from exc
    raise typer.Exit(run_search(endpoints.milvus_uri, collection, text, top_k, mode, as_json,
                                console))


def main() -> None:
    app()
