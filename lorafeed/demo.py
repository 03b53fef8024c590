"""`lorafeed demo`: the whole loop on one machine. Starts the embedded stack and every service
the way `lorafeed up` does, ingests a support knowledge base through Kafka, serves questions and
transactions over HTTP like an app, sends users' and analysts' feedback (with noise), lets the
learner produce gated versions of a generation and a classification task, shows them going live
on both nodes, and ends with a summary and an HTML report. Runs in its own state dir, on its own
ports, and stops everything it started unless --keep.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import FrameType

import httpx
from rich.console import Console

from lorafeed import procs
from lorafeed.demo_client import AppClient
from lorafeed.demo_plan import full, quick
from lorafeed.demo_results import DemoResults
from lorafeed.demo_run import DemoRun
from lorafeed.demo_summary import summary_tables
from lorafeed.report import write_report
from lorafeed.settings import StackSettings
from lorafeed.stack import Stack, StackError, StackState
from lorafeed.supervisor import Supervisor
from lorafeed.up import (
    ServiceRunner,
    UpError,
    budget_line,
    dashboard_hint,
    event_line,
    http_ready,
    serving_keys,
    status_table,
)
from lorafeed.up_plan import ROOT, UpPlan, service_specs

MARKER = ".lorafeed-demo"
DEFAULT_DIR = Path(".lorafeed") / "demo"
SERVICES_TIMEOUT_S = 420.0


class DemoError(RuntimeError):
    """The demo could not run: the stack or a service did not come up, or a step timed out."""


@dataclass(frozen=True)
class DemoOptions:
    """`state_dir`: the demo's own directory (wiped at start); `report`: the HTML report path
    (default `<state_dir>/report.html`); `keep`: leave the stack and services running."""

    state_dir: Path = DEFAULT_DIR
    quick: bool = False
    keep: bool = False
    report: Path | None = None
    tasks_file: Path = ROOT / "config" / "demo_tasks.toml"
    cores: int = field(default_factory=lambda: os.cpu_count() or 1)


def run_demo(options: DemoOptions, console: Console) -> DemoResults:
    """Run the scenario end to end; DemoError names what went wrong."""
    began = time.monotonic()
    scenario = quick() if options.quick else full()
    demo_dir = prepare_dir(options.state_dir)
    settings = demo_stack_settings(demo_dir)
    stack = Stack(settings, log=lambda line: console.print(f"  {line}", highlight=False))
    runner: ServiceRunner | None = None
    steps: dict[str, float] = {}
    previous = signal.signal(signal.SIGTERM, _interrupt)  # SIGTERM stops everything too
    try:
        with _step(steps, "stack and services", console, "1. embedded stack and services "
                                                          "(what `lorafeed up` starts)"):
            runner, plan, client, state = _start(stack, demo_dir, options, console)
        assert state.bootstrap_servers is not None
        run = DemoRun(scenario, client, state.bootstrap_servers, stack.state_dir, plan,
                      state.topic_prefix, console)
        try:
            results = run.play(lambda name, title: _step(steps, name, console, title))
        finally:
            run.close()
        results = _finish(results, steps, time.monotonic() - began)
        console.rule("[bold]summary")
        for table in summary_tables(results):
            console.print(table)
        report = write_report(results, options.report or demo_dir / "report.html")
        (demo_dir / "results.json").write_text(results.to_json(), encoding="utf-8")
        console.print(f"[bold]report written to {report}[/]", highlight=False)
        return results
    except (StackError, UpError, RuntimeError, httpx.HTTPError) as exc:
        raise DemoError(f"{type(exc).__name__}: {exc}") from exc
    finally:
        try:
            _stop(stack, runner, demo_dir, options.keep, console)
        finally:
            signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextmanager
def _step(steps: dict[str, float], name: str, console: Console, title: str) -> Iterator[None]:
    console.rule(f"[bold]{title}")
    began = time.monotonic()
    yield
    steps[name] = time.monotonic() - began
    console.print(f"[dim]({name}: {steps[name]:.0f} s)[/]", highlight=False)


def _start(stack: Stack, demo_dir: Path, options: DemoOptions,
           console: Console) -> tuple[ServiceRunner, UpPlan, AppClient, StackState]:
    state = stack.up()
    assert state.bootstrap_servers is not None
    keys = serving_keys(demo_dir)
    plan = UpPlan(
        demo_dir, options.tasks_file, (procs.free_port(), procs.free_port()), options.cores,
        learner_share=1.0,  # the scenario waits while the learner trains: give it every core
        api_key_entries=keys.entries,
        env={
            "LORAFEED_BOOTSTRAP_SERVERS": state.bootstrap_servers,
            "LORAFEED_REDIS_URL": state.url("redis") or "",
            "LORAFEED_MILVUS_URI": state.url("milvus") or "",
            "LORAFEED_TOPIC_PREFIX": state.topic_prefix,
            "LORAFEED_ADAPTER_STORE": str(demo_dir / "adapters"),
            "LEARNER_CHECK_INTERVAL_S": "2",
            "SERVING_RATE_LIMIT_PER_MINUTE": "0",
            "SERVING_REQUEST_TIMEOUT_S": "300",  # a busy 2-core laptop is slow, not broken
        },
    )
    runner = ServiceRunner(demo_dir, service_specs(plan, http_ready),
                           lambda event: console.print(event_line(event), highlight=False))
    console.print(budget_line(plan), highlight=False)
    runner.start()
    with console.status("services loading their models") as status:
        rows = runner.wait_ready(SERVICES_TIMEOUT_S, lambda rows: status.update(
            "services loading their models: " + ", ".join(f"{r.name} {r.state}" for r in rows)))
    console.print(status_table(rows, plan.node_urls()))
    hint = dashboard_hint(demo_dir, plan.node_urls())
    if hint:
        console.print(hint, highlight=False)
    return runner, plan, AppClient(plan.node_urls(), keys.app), state


def _finish(results: DemoResults, steps: dict[str, float], wall: float) -> DemoResults:
    return replace(results, step_seconds=dict(steps), wall_seconds=wall)


def _stop(stack: Stack, runner: ServiceRunner | None, demo_dir: Path, keep: bool,
          console: Console) -> None:
    if keep:
        console.print(f"--keep: everything keeps running. Try `lorafeed search --state-dir "
                      f"{demo_dir} 'refund'`; stop it with `lorafeed down --state-dir "
                      f"{demo_dir}`", highlight=False)
        return
    try:
        if runner is not None:
            runner.stop()
    finally:
        stopped = stack.down()
    console.print(f"stopped every service and the stack ({', '.join(stopped)}) by pid "
                  "(use --keep to leave them running)", highlight=False)


def demo_stack_settings(demo_dir: Path) -> StackSettings:
    """A stack that shares nothing with a developer's: own dir, free ports, its own Redis."""
    return StackSettings(state_dir=demo_dir, kafka_port=0, milvus_port=0,
                         redis_url=f"redis://127.0.0.1:{procs.free_port()}/0",
                         topic_prefix="", health_timeout_s=60)


def prepare_dir(path: Path) -> Path:
    """An empty demo directory: a previous run's (marked) directory is stopped and wiped; any
    other non-empty directory is refused, so the demo never deletes someone's data."""
    path = path.resolve()
    if path.exists() and any(path.iterdir()):
        if not (path / MARKER).exists():
            raise DemoError(f"{path} is not empty and was not made by `lorafeed demo`; "
                            "choose a new or empty --state-dir")
        Supervisor(path).stop_all()
        Stack(StackSettings(state_dir=path)).down()
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / MARKER).write_text("made by lorafeed demo; wiped by the next run\n")
    return path

