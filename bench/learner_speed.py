"""Speed of one incremental learner update per task kind, against a plain Hugging Face Trainer
doing the same update in the same run, and the cost of EWC.

Per kind (classification on MiniLM, generation on SmolLM2-135M-Instruct) a champion adapter with
a stored Fisher is made first (a short update, not measured). Then three measurements, each in
its own subprocess so peak RSS does not mix, all continuing the champion on the same examples
(stdlib docstrings: label-a-sentence inputs, or "what does X do?" chat pairs) with the same LoRA
config, batch size, steps and learning rate, no replay:
  trainer   `transformers.Trainer` on the champion opened with `PeftModel.from_pretrained`
            (constant lr, AdamW, no clipping, like the learner), then `save_pretrained`;
  lambda 0  `run_update` with EWC lambda 0 (no penalty, no Fisher afterwards);
  EWC       `run_update` with the task's lambda: the penalty towards the champion every step and
            the online Fisher estimate (`fisher_samples` examples) after training.
Wall time covers loading the model, encoding, training and writing files (imports excluded);
"loop" is the optimizer steps alone. Examples/s and tokens/s are over the whole update. Each
measurement runs `--repeats` times in alternating order and the fastest run counts.

Targets: learner (lambda 0) >= 1.0x the Trainer's examples/s; EWC update <= 1.3x the wall time
of the lambda 0 update.
Usage: python bench/learner_speed.py [--examples 256] [--seq-len 64] [--repeats 2]
                                     [--kinds classification generation]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from stdlib_text import documented_objects, family_sentences

from learner.examples import Example
from schemas.tasks import TaskConfig

KINDS = ("classification", "generation")
MODELS = {"classification": "all-minilm-l6-v2", "generation": "smollm2-135m-instruct"}
CLS_LABELS = ("email", "asyncio", "logging", "http")
GEN_SOURCES = ("email", "asyncio", "logging", "json", "http", "urllib", "unittest", "xml")
MEASURED = ("trainer", "lambda0", "ewc")
TITLES = {"trainer": "HF Trainer (baseline)", "lambda0": "run_update, lambda 0",
          "ewc": "run_update, EWC + Fisher"}


def task_for(kind: str, args: argparse.Namespace, *, lam: float | None = None) -> TaskConfig:
    return TaskConfig.model_validate({
        "name": "speed",
        "kind": kind,
        "base_model": MODELS[kind],
        "labels": list(CLS_LABELS) if kind == "classification" else None,
        "max_seq_len": args.seq_len,
        "training": {"batch_size": args.batch_size, "max_steps": 100_000, "epochs": 1,
                     "learning_rate": 2e-4 if kind == "generation" else 1e-3, "seed": 0},
        "ewc": {"lambda": 1000.0 if lam is None else lam, "fisher_samples": args.fisher_samples},
        "replay": {"ratio": 0.0},
    })


def examples_for(kind: str, count: int, seq_len: int, seed: int) -> list[Example]:
    """`count` examples of about `seq_len` tokens (a token is ~0.75 words here)."""
    rng = random.Random(seed)
    words = max(8, int(seq_len * 0.75))
    out = []
    if kind == "classification":
        sentences = family_sentences()
        for n in range(count):
            label = CLS_LABELS[n % len(CLS_LABELS)]
            text = ""
            while len(text.split()) < words:
                text += " " + rng.choice(sentences[label])
            out.append(Example(f"c{seed}:{n}", "speed", "label", text=text.strip(), label=label))
        return out
    objects = list(documented_objects(GEN_SOURCES))
    for n, (name, doc) in enumerate(rng.sample(objects, count)):
        answer = " ".join(doc.split()[: max(8, words - 30)])  # the chat template takes ~30
        prompt = (("user", f"What does {name} do in the Python standard library?"),)
        out.append(Example(f"g{seed}:{n}", "speed", "sft", prompt=prompt, text=answer))
    return out


# --- one measurement (runs in a subprocess) -----------------------------------------------------


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    """Run `spec` in this process and return its figures (imports are done before timing)."""
    import torch  # noqa: F401  (import cost stays outside the timed region)
    import transformers

    from learner.update import UpdateInputs, run_update
    from lorafeed.models import default_cache_dir
    from lorafeed.task_models import resolve_base_model

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    args = argparse.Namespace(**spec["args"])
    kind, what = spec["kind"], spec["what"]
    lam = 0.0 if what == "lambda0" else None
    task = task_for(kind, args, lam=lam)
    base_dir = resolve_base_model(task.base_model, default_cache_dir())
    champion = Path(spec["champion"]) if spec.get("champion") else None
    if what == "champion":
        task = task.model_copy(update={"ewc": task.ewc.model_copy(update={"fisher_samples": 8})})
        train = examples_for(kind, 16, args.seq_len, seed=1)
    else:
        train = examples_for(kind, args.examples, args.seq_len, seed=0)
    loop = LoopClock()
    began = time.perf_counter()
    if what == "trainer":
        steps, tokens = trainer_update(task, base_dir, champion, train, Path(spec["out"]), loop)
    else:
        outcome = run_update(UpdateInputs(task, base_dir, champion, train, ()), Path(spec["out"]),
                             hooks=[loop])
        steps, tokens = outcome.steps, outcome.tokens
    wall = time.perf_counter() - began
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kB
    return {"wall": wall, "loop": loop.seconds(), "steps": steps, "tokens": tokens,
            "examples": len(train), "peak_mb": peak_mb}


class LoopClock:
    """Times the optimizer steps: a learner hook and a Trainer callback at once."""

    def __init__(self) -> None:
        self.start = self.end = 0.0

    def seconds(self) -> float:
        return self.end - self.start

    # learner TrainHook
    def on_start(self, state: object) -> None:
        self.start = time.perf_counter()

    def extra_loss(self, state: object, batch: object) -> None:
        return None

    def on_step_end(self, state: object) -> None:
        return None

    def on_end(self, state: object) -> None:
        self.end = time.perf_counter()


def trainer_update(task: TaskConfig, base_dir: Path, champion: Path | None,
                   train: list[Example], out_dir: Path, loop: LoopClock) -> tuple[int, int]:
    """The baseline: the same update through `transformers.Trainer` and plain peft."""
    from peft import PeftModel
    from transformers import (
        AutoModelForCausalLM,
        AutoModelForSequenceClassification,
        AutoTokenizer,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    from learner.batches import collate, encode_example, pad_id_of

    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if task.kind == "classification":
        labels = list(task.labels or ())
        model = AutoModelForSequenceClassification.from_pretrained(
            base_dir, num_labels=len(labels), id2label=dict(enumerate(labels)),
            label2id={label: i for i, label in enumerate(labels)})
    else:
        model = AutoModelForCausalLM.from_pretrained(base_dir)
    model.config.pad_token_id = tokenizer.pad_token_id
    assert champion is not None
    peft_model = PeftModel.from_pretrained(model, str(champion), is_trainable=True)
    encoded = [encode_example(task, tokenizer, example) for example in train]  # same tokens
    pad = pad_id_of(tokenizer)

    class Clock(TrainerCallback):
        def on_train_begin(self, *a: Any, **k: Any) -> None:
            loop.on_start(None)

        def on_train_end(self, *a: Any, **k: Any) -> None:
            loop.on_end(None)

    settings = task.training
    trainer = Trainer(
        model=peft_model,
        args=TrainingArguments(
            output_dir=str(out_dir / "trainer"), per_device_train_batch_size=settings.batch_size,
            max_steps=-(-len(train) // settings.batch_size), learning_rate=settings.learning_rate,
            lr_scheduler_type="constant", weight_decay=0.01, max_grad_norm=0.0,
            optim="adamw_torch", logging_strategy="no", save_strategy="no", report_to=[],
            use_cpu=True, seed=settings.seed, disable_tqdm=True, dataloader_num_workers=0),
        train_dataset=encoded,  # type: ignore[arg-type]
        data_collator=lambda items: dict(collate(items, pad)),
        callbacks=[Clock()],
    )
    result = trainer.train()
    peft_model.save_pretrained(str(out_dir))
    return int(result.global_step), sum(len(item.input_ids) for item in encoded)


# --- the driver ---------------------------------------------------------------------------------


def run_measurement(spec: dict[str, Any]) -> dict[str, Any]:
    """`measure(spec)` in a fresh Python process; its last stdout line is the JSON result."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], env=env,
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{spec['kind']} {spec['what']} failed:\n{done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def bench_kind(kind: str, args: argparse.Namespace, scratch: Path) -> dict[str, dict[str, Any]]:
    """Each measurement `repeats` times, in alternating order; the fastest run of each is kept
    (the least disturbed by other load), with the highest peak RSS seen."""
    common = {"kind": kind, "args": vars(args)}
    champion = scratch / f"{kind}-champion"
    run_measurement({**common, "what": "champion", "out": str(champion)})
    runs: dict[str, list[dict[str, Any]]] = {what: [] for what in MEASURED}
    for rep in range(args.repeats):
        for what in MEASURED if rep % 2 == 0 else MEASURED[::-1]:
            out = scratch / f"{kind}-{what}-{rep}"
            result = run_measurement({**common, "what": what, "out": str(out),
                                      "champion": str(champion)})
            runs[what].append(result)
            print(f"  {kind} {what} #{rep + 1}: {result['wall']:.1f} s", flush=True)
    best = {}
    for what, seen in runs.items():
        best[what] = min(seen, key=lambda r: r["wall"]) | {
            "peak_mb": max(r["peak_mb"] for r in seen),
            "walls": [r["wall"] for r in seen],
        }
    return best


def print_table(kind: str, results: dict[str, dict[str, Any]], args: argparse.Namespace) -> None:
    base = results["trainer"]
    model = MODELS[kind]
    print(f"\n{kind} on {model}: {base['examples']} examples, {args.seq_len} tokens max, batch "
          f"{args.batch_size}, {base['steps']} steps; fastest of {args.repeats} runs")
    print(f"{'':<28}{'wall s':>8}{'loop s':>8}{'ex/s':>8}{'tok/s':>8}{'peak MB':>9}"
          f"{'ex/s vs Trainer':>17}")
    for what in MEASURED:
        r = results[what]
        rate = r["examples"] / r["wall"]
        print(f"{TITLES[what]:<28}{r['wall']:>8.1f}{r['loop']:>8.1f}{rate:>8.1f}"
              f"{r['tokens'] / r['wall']:>8.0f}{r['peak_mb']:>9.0f}"
              f"{rate / (base['examples'] / base['wall']):>16.2f}x"
              f"   (runs: {', '.join(f'{w:.1f}' for w in r['walls'])} s)")


def summary(kind: str, results: dict[str, dict[str, Any]]) -> list[str]:
    trainer, plain, ewc = results["trainer"], results["lambda0"], results["ewc"]
    speed = trainer["wall"] / plain["wall"]
    overhead = ewc["wall"] / plain["wall"]
    tail = ewc["wall"] - ewc["loop"] - (plain["wall"] - plain["loop"])
    return [
        f"{kind}: learner (lambda 0) / HF Trainer examples/s {speed:.2f}x (loop alone "
        f"{trainer['loop'] / plain['loop']:.2f}x; target >= 1.0x): "
        f"{'PASS' if speed >= 1.0 else 'MISS'}",
        f"{kind}: EWC update / lambda 0 update wall {overhead:.2f}x (loop alone "
        f"{ewc['loop'] / plain['loop']:.2f}x, Fisher estimate +{tail:.0f} s; target <= 1.3x): "
        f"{'PASS' if overhead <= 1.3 else 'MISS'}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--examples", type=int, default=256)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--fisher-samples", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2, help="runs per measurement")
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        warnings.filterwarnings("ignore")
        print(json.dumps(measure(json.loads(args.worker))))
        return
    worker_args = {k: v for k, v in vars(args).items() if k not in ("worker", "kinds")}
    lines: list[str] = []
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-learner-") as scratch:
        for kind in args.kinds:
            results = bench_kind(kind, argparse.Namespace(**worker_args), Path(scratch))
            print_table(kind, results, args)
            lines += summary(kind, results)
    print(f"\nload average (1/5/15 min) before {load_before[0]:.2f}/{load_before[1]:.2f}/"
          f"{load_before[2]:.2f}, after {' / '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
