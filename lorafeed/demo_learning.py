"""The demo's learning step: wait for the learner to publish a version of a task (promoted or
rejected by its gate), read the version's manifest, and watch it go live on every node
(AdapterActivated on model.events, and GET /v1/models on each node)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path

from rich.console import Console

from lorafeed import procs
from lorafeed.adapter_store import AdapterStore
from lorafeed.demo_client import AppClient
from lorafeed.demo_results import VersionResult
from lorafeed.demo_watch import TopicWatcher
from schemas import Topic
from schemas.model_events import AdapterActivated, AdapterPromoted, AdapterRejected

ROLLOUT_TIMEOUT_S = 120.0


def wait_version(watcher: TopicWatcher, store_root: Path, task: str, known: Iterable[str],
                 timeout_s: float, learner_log: Path, console: Console) -> VersionResult:
    """The next version of `task` not in `known`, once the gate decided on it."""
    seen = set(known)
    began = time.monotonic()

    def decided() -> str | None:
        for event in watcher.events(Topic.MODEL_EVENTS):
            if isinstance(event, (AdapterPromoted, AdapterRejected)) and event.task == task \
                    and event.version not in seen:
                return str(event.version)
        return None

    with console.status(f"learner: waiting for a new {task} version") as status:
        def tick() -> None:
            note = _last_line(learner_log, task)
            status.update(f"learner, {task} ({time.monotonic() - began:.0f} s): {note}")

        version = watcher.wait(decided, timeout_s, f"the learner to publish a {task} version",
                             tick)
    manifest = AdapterStore(store_root).verify(task, version)
    training = manifest.configs.get("training")
    train = training if isinstance(training, dict) else {}
    result = VersionResult(
        task=task, version=version, parent=manifest.parent_version,
        promoted=manifest.gate.promoted, reason=manifest.gate.reason,
        gate=dict(manifest.gate.numbers), examples=int(_number(train.get("examples"))),
        train_seconds=_number(train.get("seconds")),
        feedback_request_ids=len(manifest.lineage.request_ids),
    )
    verdict = "[green]promoted[/]" if result.promoted else "[yellow]rejected[/]"
    console.print(f"{task}@{result.version} {verdict} after {time.monotonic() - began:.0f} s "
                  f"({result.examples} examples, trained {result.train_seconds:.0f} s): "
                  f"{result.reason}", highlight=False)
    return result


def wait_rollout(watcher: TopicWatcher, client: AppClient, version: VersionResult,
                 nodes: Sequence[str], console: Console) -> VersionResult:
    """Seconds from the promotion to each node's AdapterActivated; checked on /v1/models."""
    def promoted_at() -> float | None:
        return next((at for at, e in watcher.timed(Topic.MODEL_EVENTS)
                     if isinstance(e, AdapterPromoted) and e.task == version.task
                     and e.version == version.version), None)

    def activations() -> dict[str, float] | None:
        start = promoted_at()
        found = {e.node: at - start for at, e in watcher.timed(Topic.MODEL_EVENTS)
                 if start is not None and isinstance(e, AdapterActivated)
                 and e.task == version.task and e.version == version.version and e.node in nodes}
        return found if len(found) == len(nodes) else None

    live = watcher.wait(activations, ROLLOUT_TIMEOUT_S,
                        f"{version.task}@{version.version} to go live on {', '.join(nodes)}")
    serving = {node: client.active_versions(node).get(version.task)
               for node in nodes if node in client.node_urls}
    wrong = {node: v for node, v in serving.items() if v != version.version}
    if wrong:
        raise RuntimeError(f"nodes announced {version.task}@{version.version} but serve {wrong}")
    console.print(f"{version.task}@{version.version} live on " + ", ".join(
        f"{node} (+{seconds:.1f} s)" for node, seconds in sorted(live.items())), highlight=False)
    return replace(version, activations=dict(sorted(live.items())))


def _number(value: object) -> float:
    return float(value) if isinstance(value, int | float) else 0.0


def _last_line(log: Path, task: str) -> str:
    for line in reversed(procs.tail(log, 40).splitlines()):
        if task in line and " INFO " in line:
            return line.split(" INFO ", 1)[1][-100:]
    return "collecting feedback"
