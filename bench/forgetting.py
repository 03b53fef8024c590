"""Forgetting of ONE classification task (MiniLM + LoRA) that learns domains one after another
through the real learner path: examples into a PendingStore, then `run_cycle` (run_update with
the EWC hook and online Fisher, replay from the store's reservoir, the gate, the version store).

Data: docstring sentences of standard-library module families. Domain k is a pair of families
(d1 email/asyncio, d2 unittest/xml, d3 logging/http, d4 tkinter/decimal). Default scenario
"domain" (Split-MNIST style domain-incremental): the labels are "first"/"second" of the pair, so
every domain reuses both labels with a new input distribution. Scenario "class" labels by family
(new labels per domain); there, an update from a champion collapsed MiniLM's representation so
the new labels stayed at chance for every method (see the report), so it is not the default.
Methods: plain sequential LoRA (lambda 0, no replay), EWC only, EWC + replay (lambda and ratio
from the flags; defaults are the product's), and joint training on every domain in one update
(the upper bound). Each is scored after every step on every domain's test set (sentences never
offered to the learner), per seed (the seed picks the sentences and seeds training). The gate
runs with min_gain 0 and max_forgetting 1, so nothing is rejected for forgetting; it still
rejects a target gain whose bootstrap lower bound is <= 0 (held-out pools are small), and such
an update is promoted anyway through the store, as an operator would, and counted.

Targets: plain sequential must forget >= 10 points (mean BWT <= -10), else the result does not
count; EWC + replay cuts |BWT| by at least half vs plain sequential while the newest domain's
accuracy (last domain, after the last step) stays within 3 points of plain sequential's.
Usage: python bench/forgetting.py [--domains 3] [--seeds 3] [--lam 1000] [--replay 0.25]
                                  [--epochs 6] [--scenario domain|class]
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import random
import statistics
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import transformers
from forgetting_metrics import (  # a sibling module: run as `python bench/forgetting.py`
    average_accuracy,
    backward_transfer,
    mean_spread,
    newest_accuracy,
)
from stdlib_text import family_sentences

from learner.batches import fresh_per_batch
from learner.cycle import CycleContext, run_cycle
from learner.evaluation import Evaluator
from learner.examples import Example
from learner.pending import PendingStore
from lorafeed.adapter_store import AdapterStore
from lorafeed.models import default_cache_dir
from lorafeed.task_models import resolve_base_model
from schemas.tasks import TaskConfig

TASK_NAME = "docfamily"
DOMAIN_FAMILIES = (
    ("email", "asyncio"),
    ("unittest", "xml"),
    ("logging", "http"),
    ("tkinter", "decimal"),
)
PAIR_LABELS = ("first", "second")
METHODS = ("plain", "ewc", "ewc+replay", "joint")
TITLES = {
    "plain": "plain sequential LoRA",
    "ewc": "EWC only",
    "ewc+replay": "EWC + replay",
    "joint": "joint (upper bound)",
}


@dataclass(frozen=True)
class Domain:
    name: str
    train: list[Example]
    test: list[Example]


@dataclass(frozen=True)
class Run:
    """One method on one seed: accuracy rows (one per step), rejected updates, seconds."""

    rows: list[list[float]]
    rejected: int
    seconds: float


def build_domains(count: int, seed: int, args: argparse.Namespace) -> list[Domain]:
    """`count` domains of two module families each, disjoint seeded train/test sentences per
    family; labelled by family ("class") or by position in the pair ("domain")."""
    sentences = family_sentences()
    rng = random.Random(seed)
    domains = []
    for index, families in enumerate(DOMAIN_FAMILIES[:count]):
        name = f"d{index + 1}"
        train: list[Example] = []
        test: list[Example] = []
        for position, family in enumerate(families):
            label = family if args.scenario == "class" else PAIR_LABELS[position]
            picked = rng.sample(sentences[family], args.train_per_label + args.test_per_label)
            for n, text in enumerate(picked):
                example = Example(f"{name}:{family}:{seed}:{n}", TASK_NAME, "label", text=text,
                                  label=label, domain=name)
                (train if n < args.train_per_label else test).append(example)
        rng.shuffle(train)
        domains.append(Domain(name, train, test))
    return domains


def task_labels(count: int, scenario: str) -> list[str]:
    if scenario == "class":
        return [family for pair in DOMAIN_FAMILIES[:count] for family in pair]
    return list(PAIR_LABELS)


def task_for(method: str, args: argparse.Namespace, seed: int, labels: list[str],
             train_size: int) -> TaskConfig:
    """The task as the method trains it; max_steps fits every new example of one update."""
    lam = 0.0 if method in ("plain", "joint") else args.lam
    ratio = args.replay if method == "ewc+replay" else 0.0
    per_batch = fresh_per_batch(args.batch_size, ratio)
    steps = math.ceil(train_size / per_batch) * args.epochs + 1
    return TaskConfig.model_validate({
        "name": TASK_NAME,
        "kind": "classification",
        "base_model": "all-minilm-l6-v2",
        "labels": labels,
        "max_seq_len": args.seq_len,
        "training": {"batch_size": args.batch_size, "max_steps": steps, "epochs": args.epochs,
                     "learning_rate": args.lr, "seed": seed, "holdout_percent": args.holdout},
        "ewc": {"lambda": lam, "fisher_samples": args.fisher_samples, "decay": args.decay},
        "replay": {"ratio": ratio, "capacity": 2000},
        "gate": {"min_gain": 0.0, "max_forgetting": 1.0, "bootstrap_samples": 200,
                 "min_heldout": 1},
    })


def context(root: Path) -> CycleContext:
    root.mkdir(parents=True, exist_ok=True)
    return CycleContext(
        store=AdapterStore(root / "adapters"),
        pending=PendingStore(root / "pending.sqlite3"),
        models_dir=default_cache_dir(),
        base_models={},
        send=lambda events: None,
        max_examples=100_000,
    )


def run_method(method: str, domains: list[Domain], seed: int, args: argparse.Namespace,
               root: Path) -> Run:
    """Train `method` through run_cycle and score the champion on every domain after each step."""
    labels = task_labels(len(domains), args.scenario)
    steps = [domains] if method == "joint" else [[d] for d in domains]
    biggest = max(sum(len(d.train) for d in step) for step in steps)
    task = task_for(method, args, seed, labels, biggest)
    ctx = context(root)
    evaluator = Evaluator(task, resolve_base_model(task.base_model, ctx.models_dir), batch_size=64)
    rows, rejected, began = [], 0, time.perf_counter()
    for step in steps:
        ctx.pending.add([e for d in step for e in d.train], task.training.holdout_percent)
        result = run_cycle(task, ctx)
        assert result is not None, "no pending examples"
        if not result.promoted:  # kept anyway, as an operator would: the benchmark keeps all
            rejected += 1
            ctx.store.set_champion(TASK_NAME, result.version)
        adapter = ctx.store.root / TASK_NAME / result.version
        rows.append([evaluator.scores(adapter, d.test).value for d in domains])
    ctx.pending.close()
    return Run(rows, rejected, time.perf_counter() - began)


def pct(mean_sd: tuple[float, float]) -> str:
    return f"{mean_sd[0] * 100:5.1f} ± {mean_sd[1] * 100:4.1f}"


def print_matrices(runs: dict[str, list[Run]], names: list[str]) -> None:
    print("accuracy (%) on each domain's test set after each step, mean over seeds")
    print(f"{'method':<24}{'after':<8}" + "".join(f"{n:>8}" for n in names))
    for method, seeded in runs.items():
        for step in range(len(seeded[0].rows)):
            cells = [mean_spread([r.rows[step][j] for r in seeded])[0] for j in range(len(names))]
            label = "all" if method == "joint" else names[step]
            title = TITLES[method] if step == 0 else ""
            print(f"{title:<24}{label:<8}" + "".join(f"{c * 100:8.1f}" for c in cells))
    print()


def summarize(runs: dict[str, list[Run]], args: argparse.Namespace) -> None:
    stats = {}
    print(f"{'method':<24}{'avg acc %':>15}{'BWT (points)':>16}{'newest %':>15}"
          f"{'vs joint':>10}{'rejected':>10}{'s/seed':>8}")
    joint_avg = mean_spread([final_average(r) for r in runs["joint"]])[0]
    for method, seeded in runs.items():
        avg = mean_spread([final_average(r) for r in seeded])
        square = method != "joint"
        bwt = mean_spread([backward_transfer(r.rows) for r in seeded]) if square else (0.0, 0.0)
        newest = mean_spread([newest_accuracy(r.rows) if square else r.rows[-1][-1]
                              for r in seeded])
        stats[method] = (avg, bwt, newest)
        seconds = sum(r.seconds for r in seeded) / len(seeded)
        print(f"{TITLES[method]:<24}{pct(avg):>15}{pct(bwt) if square else '-':>16}"
              f"{pct(newest):>15}{avg[0] / joint_avg:>9.2f}x"
              f"{sum(r.rejected for r in seeded):>10}{seconds:>8.0f}")
    plain_bwt, er_bwt = stats["plain"][1][0], stats["ewc+replay"][1][0]
    forgets = -plain_bwt * 100
    counts = forgets >= 10.0
    print(f"\nplain sequential forgets {forgets:.1f} points (BWT): "
          f"{'the result counts' if counts else 'under 10 points: the result does NOT count'}")
    ratio = abs(er_bwt) / abs(plain_bwt) if plain_bwt else float("inf")
    print(f"|BWT| EWC + replay / plain sequential: {ratio:.2f}x "
          f"(EWC only {abs(stats['ewc'][1][0]) / abs(plain_bwt) if plain_bwt else 0:.2f}x; "
          f"target <= 0.50x): {'PASS' if ratio <= 0.5 and counts else 'MISS'}")
    drop = (stats["plain"][2][0] - stats["ewc+replay"][2][0]) * 100
    print(f"newest domain accuracy EWC + replay {stats['ewc+replay'][2][0] * 100:.1f}% vs plain "
          f"{stats['plain'][2][0] * 100:.1f}% ({-drop:+.1f} points; target within 3): "
          f"{'PASS' if drop <= 3.0 and counts else 'MISS'}")
    print(f"settings: lambda {args.lam}, Fisher decay {args.decay}, {args.fisher_samples} Fisher "
          f"samples, replay ratio {args.replay}, lr {args.lr}, batch {args.batch_size}, "
          f"epochs {args.epochs}, seq len {args.seq_len}, holdout {args.holdout}%")


def final_average(run: Run) -> float:
    """Average accuracy after the last step (joint training has one step over every domain)."""
    if len(run.rows) == 1 and len(run.rows[0]) > 1:
        return statistics.fmean(run.rows[0])
    return average_accuracy(run.rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--domains", type=int, default=3,
                        choices=range(2, len(DOMAIN_FAMILIES) + 1))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--scenario", choices=("domain", "class"), default="domain",
                        help="labels: position in the domain's pair, or the module family")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--train-per-label", type=int, default=100)
    parser.add_argument("--test-per-label", type=int, default=60)
    parser.add_argument("--lam", type=float, default=1000.0, help="EWC lambda")
    parser.add_argument("--decay", type=float, default=0.9, help="online Fisher decay")
    parser.add_argument("--fisher-samples", type=int, default=64)
    parser.add_argument("--replay", type=float, default=0.25, help="replayed share of a batch")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--seq-len", type=int, default=48)
    parser.add_argument("--holdout", type=int, default=20, help="percent kept for the gate")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore")  # peft/transformers notices on every adapter load
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    runs: dict[str, list[Run]] = {m: [] for m in METHODS if m in args.methods}
    names: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-forgetting-") as scratch:
        for seed in range(args.seeds):
            domains = build_domains(args.domains, seed, args)
            names = [d.name for d in domains]
            for method in runs:
                run = run_method(method, domains, seed, args, Path(scratch) / f"{method}-{seed}")
                runs[method].append(run)
                print(f"seed {seed} {method}: final row "
                      + " ".join(f"{a * 100:.0f}" for a in run.rows[-1])
                      + f" ({run.seconds:.0f} s, {run.rejected} rejected)", flush=True)
    print(f"\n{args.domains} domains {names} x 2 labels, {args.train_per_label} train "
          f"(~{args.holdout}% held out for the gate) and {args.test_per_label} test sentences "
          f"per label, {args.seeds} seeds\n")
    print_matrices(runs, names)
    if {"plain", "ewc", "ewc+replay", "joint"} <= set(runs):
        summarize(runs, args)


if __name__ == "__main__":
    main()
