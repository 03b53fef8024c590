"""One incremental update of one task, from pending examples to a published version.

Called by the learner's scheduler while it holds the task's lock. Order matters for crash
safety: train -> gate -> claim a version -> write it aside and rename -> mark its examples
consumed together with its events in the outbox (one SQLite transaction) -> move the champion
pointer -> send the outbox. `recover` finishes whatever a crash interrupted.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import JsonValue

from learner.announce import publication_events
from learner.batches import fresh_per_batch
from learner.evaluation import EvalScores, Evaluator, general_probe_texts
from learner.examples import Example
from learner.gate import GateInputs, GateResult, MetricComparison, TargetMetric, decide
from learner.pending import PendingStore
from learner.pools import EVAL_KINDS, GatePools, gate_pools
from learner.update import UpdateInputs, UpdateOutcome, run_update
from learner.versions import DATA_DOMAINS_KEY, bump_kind, lineage_configs, next_free_version
from lorafeed import failpoints
from lorafeed.adapter_store import AdapterStore
from lorafeed.adapter_store_errors import ChampionChanged, PinnedTask
from lorafeed.knowledge import record_id_of
from lorafeed.task_models import base_model_sha256, resolve_base_model
from schemas import Event, Topic, encode
from schemas.manifest import AdapterManifest, GateDecision, Lineage
from schemas.tasks import TaskConfig

log = logging.getLogger(__name__)

AFTER_CONSUME = failpoints.declare(
    "learner.after_consume", "version written and its examples consumed, pointer not moved"
)
AFTER_POINTER = failpoints.declare(
    "learner.after_pointer", "champion pointer moved, model events not sent"
)
EXAMPLE_IDS_KEY = "example_ids"
RECORDED, FINISHED = "recorded", "finished"  # a version's state in the pending store
TRAINABLE = {"generation": {"sft", "text"}, "classification": {"label"}}

Send = Callable[[Sequence[tuple[Topic, str, Event | bytes]]], None]
# Passage texts by chunk pk (missing ones left out): chat examples train and are scored with the
# passages they were served with.
PassageLookup = Callable[[Sequence[str]], Mapping[str, str]]


@dataclass(frozen=True)
class CycleContext:
    """What an update needs from the learner's composition root."""

    store: AdapterStore
    pending: PendingStore
    models_dir: Path
    base_models: dict[str, Path]
    send: Send
    device: str = "cpu"
    dtype: str = "float32"
    max_examples: int = 256
    eval_match: bool = False
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    passages: PassageLookup | None = None  # None: chat examples train without their passages


@dataclass(frozen=True)
class CycleResult:
    """The version an update produced and the gate's verdict on it."""

    task: str
    version: str
    promoted: bool
    reason: str
    examples: int
    seconds: float


def run_cycle(
    task: TaskConfig,
    ctx: CycleContext,
    *,
    hooks: Sequence[Any] = (),
    progress: Callable[[int, int], None] | None = None,
) -> CycleResult | None:
    """Train, gate and publish one version from `task`'s pending examples (None: nothing to do)."""
    limit = min(ctx.max_examples, step_budget(task))
    batch = ctx.pending.pending(task.name, limit=limit, kinds=trainable_kinds(task))
    if not batch:
        return None
    heldout = ctx.pending.heldout(task.name)
    scorable = sum(1 for example in heldout if example.kind in EVAL_KINDS)  # pairs are not
    if scorable < task.gate.min_heldout:
        log.info(
            "%s: %d pending examples wait: the held-out pool has %d of the %d the gate needs",
            task.name, len(batch), scorable, task.gate.min_heldout,
        )  # fmt: skip
        return None
    examples = [example for example, _ref in batch]
    champion = ctx.store.champion(task.name)
    parent = None if champion is None else ctx.store.verify(task.name, champion.version)
    base_dir = resolve_base_model(task.base_model, ctx.models_dir, ctx.base_models)
    base_sha = base_model_sha256(base_dir)
    parent_dir = _continued_from(task, ctx, parent, base_sha)
    replay = _replay(task, ctx.pending, len(examples))
    texts = _passage_texts(ctx, [*examples, *replay, *heldout])
    with tempfile.TemporaryDirectory(prefix=f"lorafeed-{task.name}-") as scratch:
        outcome = run_update(
            UpdateInputs(
                task=task,
                base_dir=base_dir,
                champion_dir=parent_dir,
                train=examples,
                replay=replay,
                device=ctx.device,
                dtype=ctx.dtype,
                passages=texts,
            ),
            Path(scratch) / "candidate",
            hooks=hooks,
            progress=progress,
        )
        batch = _trained_only(task.name, batch, outcome)
        examples = [example for example, _ref in batch]
        pools = gate_pools(
            heldout,
            {e.domain for e in examples},
            classification=task.kind == "classification",
        )
        verdict, metrics = _judge(task, base_dir, outcome.files_dir, parent_dir, pools, ctx, texts)
        verdict = _respect_pin(task, ctx.store, verdict)
        manifest = _write(task, ctx, parent, base_sha, outcome, batch, verdict, metrics, texts)
    finish(task.name, manifest, ctx)
    return CycleResult(
        task.name,
        manifest.version,
        manifest.gate.promoted,
        manifest.gate.reason,
        len(examples),
        outcome.seconds,
    )


def _continued_from(
    task: TaskConfig, ctx: CycleContext, parent: AdapterManifest | None, base_sha: str
) -> Path | None:
    """The champion's directory to continue from, or None for a fresh adapter: none exists, or
    the base model, tokenizer or label set changed (a MAJOR bump, where the champion's head,
    weights and Fisher no longer fit). The gate then compares against the base model."""
    if parent is None:
        return None
    kind = bump_kind(
        parent, base_model_sha256=base_sha, label_set=task.labels, knowledge_sources=(),
        data_domains=(),
    )  # fmt: skip
    if kind == "major":
        log.info("%s: base or labels changed since %s: a fresh adapter", task.name, parent.version)
        return None
    return ctx.store.root / task.name / parent.version


def _trained_only(
    task: str, batch: list[tuple[Example, Any]], outcome: UpdateOutcome
) -> list[tuple[Example, Any]]:
    """The examples the update really trained on: only these are consumed and in the lineage;
    any the plan left out stay pending for the next update."""
    kept = [(example, ref) for example, ref in batch if example.example_id in outcome.trained_ids]
    if len(kept) < len(batch):
        log.warning(
            "%s: %d of %d examples did not fit this update's steps; they stay pending",
            task,
            len(batch) - len(kept),
            len(batch),
        )
    return kept


def trainable_kinds(task: TaskConfig) -> set[str]:
    """Example kinds an update of `task` trains on (others wait, e.g. preferences without DPO)."""
    return TRAINABLE[task.kind] | ({"preference"} if task.training.preference_loss else set())


def step_budget(task: TaskConfig) -> int:
    """How many new examples one update can train on: its optimizer steps' new-example slots
    (as `plan_batches` fills them) spread over its epochs; the rest wait for the next update."""
    settings = task.training
    slots = settings.max_steps * fresh_per_batch(settings.batch_size, task.replay.ratio)
    return max(1, slots // settings.epochs)


def _records_of(examples: Sequence[Example], passages: Mapping[str, str]) -> set[str]:
    """Records the examples came from, and those whose passages their prompts held (so
    `lorafeed adapters affected RECORD_ID` finds a version grounded on a record too)."""
    grounded = {record_id_of(pid) for e in examples for pid in e.passages if pid in passages}
    return {e.record_id for e in examples if e.record_id} | grounded


def _passage_texts(ctx: CycleContext, examples: Sequence[Example]) -> Mapping[str, str]:
    """The texts of every passage `examples` were served with that the knowledge base still
    holds (one lookup per update; a passage deleted since is simply left out)."""
    wanted = sorted({pid for example in examples for pid in example.passages})
    if ctx.passages is None or not wanted:
        return {}
    found = ctx.passages(wanted)
    if len(found) < len(wanted):
        log.info("%d of %d passages are no longer in the knowledge base", len(wanted) - len(found),
                 len(wanted))  # fmt: skip
    return found


def _replay(task: TaskConfig, pending: PendingStore, new: int) -> list[Example]:
    ratio = task.replay.ratio
    wanted = int(round(new * ratio / (1.0 - ratio))) if ratio > 0 else 0
    sample = pending.replay_sample(task.name, wanted, task.training.seed) if wanted else []
    labels = set(task.labels or ())  # a label dropped from the set is no longer trainable
    return [e for e in sample if e.kind != "label" or e.label in labels]


def _judge(
    task: TaskConfig,
    base_dir: Path,
    candidate: Path,
    champion: Path | None,
    pools: GatePools,
    ctx: CycleContext,
    passages: Mapping[str, str],
) -> tuple[GateResult, dict[str, float]]:
    if not pools.target:
        reason = "rejected: no held-out examples yet, so no evidence of improvement"
        return GateResult(False, reason, {"target_n": 0.0}), {}
    evaluator = Evaluator(task, base_dir, device=ctx.device, dtype=ctx.dtype, passages=passages)
    new, old = evaluator.scores(candidate, pools.target), evaluator.scores(champion, pools.target)
    target = TargetMetric(
        new.metric,
        new.value,
        old.value,
        new.per_example,
        old.per_example,
        higher_is_better=new.higher_is_better,
    )
    retention = tuple(
        _compare(
            f"retention_{domain}",
            evaluator.scores(candidate, pool),
            evaluator.scores(champion, pool),
        )
        for domain, pool in pools.retention.items()
    )
    probe = _probe(task, evaluator, candidate, champion, pools)
    result = decide(GateInputs(target, retention, probe), task.gate, seed=task.training.seed)
    metrics = {
        f"candidate_{new.metric}": new.value,
        f"champion_{old.metric}": old.value,
        "heldout_n": float(len(pools.target)),
    }
    return result, metrics


def _compare(name: str, new: EvalScores, old: EvalScores) -> MetricComparison:
    return MetricComparison(
        name,
        new.value,
        old.value,
        higher_is_better=new.higher_is_better,
        relative=not new.higher_is_better,
    )


def _probe(
    task: TaskConfig, evaluator: Evaluator, candidate: Path, champion: Path | None, pools: GatePools
) -> MetricComparison | None:
    if task.kind == "classification":
        if not pools.probe:
            return None
        return _compare(
            "probe_accuracy",
            evaluator.scores(candidate, pools.probe),
            evaluator.scores(champion, pools.probe),
        )
    new = evaluator.probe(candidate, general_probe_texts())
    old = evaluator.probe(champion, general_probe_texts())
    return _compare("probe_perplexity", new, old)


def _respect_pin(task: TaskConfig, store: AdapterStore, verdict: GateResult) -> GateResult:
    pin = store.pinned(task.name)
    if pin is None or not verdict.promoted:
        return verdict
    reason = (
        f"not promoted: {task.name} is pinned at {pin.version or 'base model'} by "
        f"{pin.actor} ({pin.reason}); the gate said {verdict.reason}"
    )
    return GateResult(False, reason, verdict.numbers)


def _write(
    task: TaskConfig,
    ctx: CycleContext,
    parent: AdapterManifest | None,
    base_sha: str,
    outcome: UpdateOutcome,
    batch: Sequence[tuple[Example, Any]],
    verdict: GateResult,
    metrics: dict[str, float],
    passages: Mapping[str, str],
) -> AdapterManifest:
    examples = [example for example, _ref in batch]
    sources = sorted({e.domain for e in examples if e.record_id is not None})
    domains = sorted({e.domain for e in examples})
    parent_sources = [] if parent is None else list(parent.lineage.knowledge_sources)
    parent_domains = _strings(None if parent is None else parent.configs.get(DATA_DOMAINS_KEY))
    kind = bump_kind(
        parent,
        base_model_sha256=base_sha,
        label_set=task.labels,
        knowledge_sources=sources,
        data_domains=domains,
    )
    version = next_free_version(
        ctx.store.root, task.name, None if parent is None else parent.version, kind
    )
    lineage = Lineage(
        offsets=ctx.pending.offset_ranges([ref for _e, ref in batch]),
        request_ids=sorted({e.request_id for e in examples if e.request_id}),
        record_ids=sorted(_records_of(examples, passages)),
        knowledge_sources=sorted(set(parent_sources) | set(sources)),
    )
    base_configs = lineage_configs(
        label_set=task.labels, data_domains=sorted(set(parent_domains) | set(domains))
    )
    configs: dict[str, JsonValue] = dict(base_configs)
    configs |= {
        "task": task.model_dump(mode="json", by_alias=True),
        "training": {
            "steps": outcome.steps,
            "examples": outcome.examples,
            "replayed": outcome.examples - len(examples),
            "tokens": outcome.tokens,
            "fisher_samples": outcome.fisher_samples,
            "seconds": outcome.seconds,
            "losses": [round(loss, 6) for loss in outcome.losses],
        },
        EXAMPLE_IDS_KEY: list[JsonValue](sorted(e.example_id for e in examples)),
        "bump": kind,
    }
    lora = task.lora.model_copy(update={"target_modules": list(outcome.target_modules)})
    fields = {
        "schema_version": 1,
        "task": task.name,
        "version": version,
        "parent_version": None if parent is None else parent.version,
        "kind": task.kind,
        "base_model_id": task.base_model,
        "base_model_sha256": base_sha,
        "lora": lora.model_dump(mode="json"),
        "configs": configs,
        "metrics": metrics
        | {
            "train_loss_last": outcome.losses[-1] if outcome.losses else 0.0,
            **({"ewc_penalty": outcome.ewc_penalty} if outcome.ewc_penalty is not None else {}),
        },
        "gate": GateDecision(
            promoted=verdict.promoted, reason=verdict.reason[:4000], numbers=verdict.numbers
        ).model_dump(mode="json"),
        "lineage": lineage.model_dump(mode="json"),
        "created_at": ctx.clock(),
    }
    manifest = ctx.store.write_version(task.name, version, outcome.files_dir, fields)
    log.info("wrote %s@%s (%s): %s", task.name, version, kind, manifest.gate.reason)
    record(task, manifest, ctx)
    return manifest


def _strings(value: object) -> list[str]:
    return [str(item) for item in value] if isinstance(value, list) else []


def record(task: TaskConfig, manifest: AdapterManifest, ctx: CycleContext) -> None:
    """Mark the version's examples consumed (offering them to replay) and queue its events,
    in one transaction."""
    events = publication_events(manifest, manifest.parent_version, ctx.clock())
    raw_ids = manifest.configs.get(EXAMPLE_IDS_KEY)
    ids = [str(i) for i in raw_ids] if isinstance(raw_ids, list) else []
    ctx.pending.consume(
        task.name,
        manifest.version,
        ids,
        [(Topic.MODEL_EVENTS.value, task.name, encode(event)) for event in events],
        replay_capacity=task.replay.capacity,
        replay_seed=task.training.seed,
        version_state=RECORDED,
    )
    failpoints.failpoint(AFTER_CONSUME)


def finish(task: str, manifest: AdapterManifest, ctx: CycleContext) -> None:
    """Move the champion pointer for a promoted version (once), then send its queued events."""
    champion = ctx.store.champion(task)
    current = None if champion is None else champion.version
    if manifest.gate.promoted and current != manifest.version:
        try:
            ctx.store.set_champion(task, manifest.version, expected_current=manifest.parent_version)
        except (ChampionChanged, PinnedTask) as exc:
            log.warning(
                "%s@%s passed the gate but is not promoted: %s", task, manifest.version, exc
            )
            ctx.pending.outbox_drop_promotion(task, manifest.version, str(exc))
        failpoints.failpoint(AFTER_POINTER)
    ctx.pending.set_version_state(task, manifest.version, FINISHED)
    send_outbox(ctx)


def send_outbox(ctx: CycleContext) -> int:
    """Send every queued event, oldest first; a resend after a crash is harmless."""
    unsent = ctx.pending.outbox_unsent()
    if not unsent:
        return 0
    ctx.send([(Topic(item.topic), item.key or "", item.payload) for item in unsent])
    for item in unsent:
        ctx.pending.outbox_mark_sent(item.id)
    return len(unsent)


def recover(ctx: CycleContext, tasks: Sequence[TaskConfig]) -> list[str]:
    """After a crash: record versions written but not yet consumed, finish versions whose
    pointer step may not have happened, and send queued events. Returns what it completed."""
    done = []
    for leftover in ctx.store.gc_temp():  # dirs of writers that died before their rename
        log.info("removed %s, left by a crashed writer", leftover)
    for task in tasks:
        known = set(ctx.pending.versions(task.name))
        for version in ctx.store.versions(task.name):
            if version not in known:
                record(task, ctx.store.verify(task.name, version), ctx)
            if ctx.pending.version_state(task.name, version) == RECORDED:
                finish(task.name, ctx.store.verify(task.name, version), ctx)
                done.append(f"{task.name}@{version}")
    send_outbox(ctx)
    return done
