"""Serving node overhead and live rollout, each figure against a baseline measured in the same run.
Nodes run as `python -m serving` subprocesses (auth and rate limit off, retrieval off) beside an
isolated embedded stack; load comes from bench/loadgen.py in this process.

1. /v1/score (task fraud: all-minilm-l6-v2 + LoRA) p50/p99 and requests/s at concurrency 1, 8, 32
   vs the same model and adapter called in this process on a worker thread like the engine's:
   raw single calls alternate with single HTTP requests (c=1); raw batched forwards (best of
   batch 16 and 32) alternate with --rounds HTTP windows (c=8, 32).
   Targets: p50 at c=1 <= 1.5x raw single; req/s at c=32 >= 0.8x raw batched.
2. Chat tokens/s (task support: SmolLM2-135M + LoRA, fixed prompt, greedy, retrieval off) vs bare
   `model.generate` on the node's own templated prompt ids, runs interleaved. Target >= 0.9x.
3. Live rollout under load on two nodes: each swap writes version 1.0.N into the adapter store,
   moves the champion pointer and publishes AdapterPromoted on model.events (the learner's path;
   nodes follow the topic), fraud first, then support once fraud was seen on both nodes. Figures:
   event -> first /v1/score answer and first chat token from the new version, per node (targets
   p95 < 2 s); failed requests and answers from an unknown version or whose output does not match
   the reported version's reference output (targets 0, 0); node RSS after the last swap vs after
   swap 10 (target within 50 MB). Every swap moves both tasks; the chat token is waited for and
   timed on the first --chat-swaps swaps, later ones wait for /v1/models to show the version.

Usage: python bench/serving.py [--seconds 8] [--levels 1 8 32] [--chat-runs 3] [--swaps 100]
       [--chat-swaps 20] (quick: --seconds 3 --chat-runs 1 --swaps 12 --chat-swaps 5)
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time
import uuid
import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import httpx
import torch
import transformers
from loadgen import SCORE_TEXTS, BackgroundLoad, Mix, RequestRecord, percentile, run_load
from serving_fixtures import (  # sibling modules: run as `python bench/serving.py`
    ROOT,
    ChatModel,
    Node,
    Releaser,
    ScoreModel,
    build_files,
    start_node,
)

from lorafeed import procs
from lorafeed.adapter_store import AdapterStore
from lorafeed.models import default_cache_dir
from lorafeed.settings import StackSettings
from lorafeed.stack import Stack, StackState
from lorafeed.task_catalog import load_catalog
from lorafeed.task_models import resolve_base_model

CHAT_PROMPT = ("Explain step by step how to reset a forgotten password, and what to do when the "
               "reset email never arrives.")
SEEDS = (11, 12, 13)
PROB_TOLERANCE = 1e-3  # batch padding moves probabilities ~1e-6; seeds differ by > 0.05
# Pause before each measured call so the other process's torch threads have gone idle: without
# it, a raw forward started right after a node's answer ran ~3x slower here (OpenMP threads
# still spinning on 2 cores), and the node's calls, which start later, did not suffer it.
SETTLE_S = 0.03


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


# --- 1. score ------------------------------------------------------------------------------------


def paired_single(model: ScoreModel, url: str, calls: int) -> tuple[list[float], list[float]]:
    """Raw single calls alternating with single /v1/score requests on the same texts (seconds
    each): both see the same machine load, which drifts a lot on a shared 2-core box."""
    raw, served = [], []
    with httpx.Client(base_url=url, timeout=60) as client:
        for i in range(calls + 5):
            text = SCORE_TEXTS[i % len(SCORE_TEXTS)]
            time.sleep(SETTLE_S)
            took = model.seconds([text])
            time.sleep(SETTLE_S)
            began = time.perf_counter()
            client.post("/v1/score", json={"task": "fraud", "text": text}).raise_for_status()
            if i >= 5:  # warm-up
                raw.append(took)
                served.append(time.perf_counter() - began)
    return raw, served


def raw_batched(model: ScoreModel, size: int, batches: int) -> float:
    """Texts/s of back-to-back forwards of `size` texts (the median batch)."""
    texts = list(SCORE_TEXTS)
    batch = (texts * (size // len(texts) + 1))[:size]
    model.seconds(batch)
    return size / statistics.median(model.seconds(batch) for _ in range(batches))


def windows(model: ScoreModel, url: str, concurrency: int,
            args: argparse.Namespace) -> tuple[list[RequestRecord], dict[int, list[float]]]:
    """HTTP load windows at `concurrency` alternating with raw batched forwards (batch 16 and
    32); the HTTP records and the raw texts/s of each window."""
    mix = Mix(chat_share=0.0, feedback_share=0.0)
    run_load([url], concurrency=concurrency, seconds=2.0, mix=mix, seed=args.seed)  # warm-up
    records: list[RequestRecord] = []
    rates: dict[int, list[float]] = {16: [], 32: []}
    for _ in range(args.rounds):
        time.sleep(SETTLE_S * 10)
        for size, values in rates.items():
            values.append(raw_batched(model, size, 5))
        time.sleep(SETTLE_S * 10)
        records += run_load([url], concurrency=concurrency, seconds=args.seconds / args.rounds,
                            mix=mix, seed=args.seed)
    return records, rates


def http_rate(records: Sequence[RequestRecord], seconds: float) -> float:
    """Answers per second over the HTTP windows (`seconds` in all)."""
    return sum(not r.failed for r in records) / seconds


def section_score(args: argparse.Namespace, node: Node, model: ScoreModel) -> None:
    raw, served = paired_single(model, node.url, args.raw_calls)
    levels = {c: windows(model, node.url, c, args) for c in args.levels if c > 1}
    raw_ms, served_ms = [v * 1000 for v in raw], [v * 1000 for v in served]
    print("\n[1] /v1/score, task fraud (all-minilm-l6-v2 + LoRA 1.0.0), node in a subprocess")
    print(f"{'':<42}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'failed':>8}{'vs raw':>8}")
    ratio_1 = percentile(served_ms, 0.5) / percentile(raw_ms, 0.5)
    for label, values, ratio in (("raw single call, in-process", raw_ms, ""),
                                 ("HTTP concurrency 1 (alternating with it)", served_ms,
                                  f"{ratio_1:>7.2f}x")):
        print(f"{label:<42}{1000 / statistics.fmean(values):>9.1f}{percentile(values, 0.5):>9.1f}"
              f"{percentile(values, 0.99):>9.1f}{0 if ratio else '':>8}{ratio}")
    ratios = {}
    for c, (records, rates) in levels.items():
        best = max(statistics.median(v) for v in rates.values())
        ok = [r.latency_s * 1000 for r in records if not r.failed]
        rate = http_rate(records, args.seconds)
        ratios[c] = (rate / best, best)
        for size, values in rates.items():
            print(f"{f'raw batched forward, batch {size} (texts/s)':<42}"
                  f"{statistics.median(values):>9.1f}   windows: "
                  + " ".join(f"{v:.0f}" for v in values))
        print(f"{f'HTTP concurrency {c}':<42}{rate:>9.1f}{percentile(ok, 0.5):>9.1f}"
              f"{percentile(ok, 0.99):>9.1f}{len(records) - len(ok):>8}{ratios[c][0]:>7.2f}x")
    print(f"p50 at c=1 / raw single call p50: {ratio_1:.2f}x (target <= 1.5x): "
          f"{verdict(ratio_1 <= 1.5)}")
    if ratios:
        top = max(ratios)
        print(f"req/s at c={top} / raw batched (best batch size, {ratios[top][1]:.0f} texts/s): "
              f"{ratios[top][0]:.2f}x (target >= 0.8x): {verdict(ratios[top][0] >= 0.8)}")


# --- 2. chat -------------------------------------------------------------------------------------


def http_chat(url: str, max_tokens: int) -> tuple[float, int, str]:
    body = {"model": "support", "temperature": 0.0, "max_tokens": max_tokens,
            "lorafeed": {"retrieval": False},
            "messages": [{"role": "user", "content": CHAT_PROMPT}]}
    began = time.perf_counter()
    response = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=300)
    took = time.perf_counter() - began
    response.raise_for_status()
    data = response.json()
    return took, data["usage"]["completion_tokens"], data["choices"][0]["message"]["content"]


def section_chat(args: argparse.Namespace, node: Node, model: ChatModel) -> None:
    ids = model.prompt_ids(CHAT_PROMPT)
    model.generate(ids, 4)
    http_chat(node.url, 4)
    bare: list[float] = []
    served: list[float] = []
    same = True
    for _ in range(args.chat_runs):
        time.sleep(SETTLE_S * 10)
        text, count, took = model.generate(ids, args.max_tokens)
        time.sleep(SETTLE_S * 10)
        bare.append(count / took)
        took, tokens, answer = http_chat(node.url, args.max_tokens)
        served.append(tokens / took)
        same = same and answer == text
    ratio = statistics.median(served) / statistics.median(bare)
    print(f"\n[2] chat, task support (SmolLM2-135M + LoRA 1.0.0), {len(ids)}-token prompt, "
          f"max_tokens {args.max_tokens}, greedy, retrieval off, {args.chat_runs} runs each")
    print(f"{'':<44}{'tokens/s (median)':>18}{'runs':>26}")
    print(f"{'bare model.generate, in-process':<44}{statistics.median(bare):>18.2f}"
          f"{'  '.join(f'{v:.2f}' for v in bare):>26}")
    print(f"{'POST /v1/chat/completions (non-streamed)':<44}{statistics.median(served):>18.2f}"
          f"{'  '.join(f'{v:.2f}' for v in served):>26}")
    print(f"answer identical to bare generate: {'yes' if same else 'NO'}; ratio served / bare: "
          f"{ratio:.2f}x (target >= 0.9x): {verdict(ratio >= 0.9)}")


# --- 3. rollout ----------------------------------------------------------------------------------


class Watch:
    """Scans the live record list for the first answer of a version on each node."""

    def __init__(self, records: list[RequestRecord]) -> None:
        self.records = records
        self.seen = 0
        self.first: dict[tuple[str, str, str], float] = {}

    def poll(self) -> None:
        end = len(self.records)
        for record in self.records[self.seen:end]:
            if record.failed or record.adapter_version is None:
                continue
            at = record.ended_at if record.endpoint == "score" else record.first_token_at
            key = (record.node, record.endpoint, record.adapter_version)
            if at is not None and at < self.first.get(key, float("inf")):
                self.first[key] = at
        self.seen = end

    def wait(self, nodes: Sequence[Node], endpoint: str, version: str, sent_at: float,
             timeout_s: float) -> list[float]:
        """Seconds from `sent_at` to each node's first answer by `version` (inf: none)."""
        deadline = time.monotonic() + timeout_s
        keys = [(n.url, endpoint, version) for n in nodes]
        while time.monotonic() < deadline and not all(k in self.first for k in keys):
            time.sleep(0.05)
            self.poll()
        return [self.first.get(k, float("inf")) - sent_at for k in keys]


def swap_round(releaser: Releaser, watch: Watch, nodes: Sequence[Node], n: int,
               timeout_s: float, chat: bool) -> dict[str, list[float]]:
    """Fraud, then support, to version 1.0.n; seconds to each node's first answer by the new
    version (the chat one only when `chat`, else until /v1/models shows it)."""
    version, digest = releaser.write("fraud", n)
    sent_at = releaser.announce("fraud", version, digest)
    delays = {"score": watch.wait(nodes, "score", version, sent_at, timeout_s)}
    version, digest = releaser.write("support", n)
    sent_at = releaser.announce("support", version, digest)
    if chat:
        delays["chat"] = watch.wait(nodes, "chat", version, sent_at, timeout_s)
    else:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and any(
                node.active().get("support") != version for node in nodes):
            time.sleep(0.05)
    return delays


def references(score: ScoreModel, chat: ChatModel, mix: Mix) -> tuple[list, list]:
    """Expected probabilities [seed][text] and chat texts [seed][prompt] of every file set."""
    probs = [score.probabilities(mix.texts, seed) for seed in range(len(SEEDS))]
    ids = [chat.prompt_ids(p) for p in mix.prompts]
    texts = [[chat.generate(i, mix.chat_max_tokens, seed)[0] for i in ids]
             for seed in range(len(SEEDS))]
    return probs, texts


def output_problems(records: Sequence[RequestRecord], releaser: Releaser, labels: list[str],
                    expected: tuple[list, list]) -> tuple[Counter[str], int, int]:
    """(unknown / mismatched counts, score answers checked, chat answers checked)."""
    problems: Counter[str] = Counter()
    checked = Counter[str]()
    probs, texts = expected
    for r in records:
        if r.failed or r.endpoint == "feedback":
            continue
        task = "fraud" if r.endpoint == "score" else "support"
        seed = releaser.seed_of.get((task, r.adapter_version or ""))
        if seed is None:
            problems[f"{r.endpoint} from unknown version {r.adapter_version}"] += 1
            continue
        assert r.item is not None
        if r.endpoint == "score":
            got = [r.output[label] for label in labels]
            gap = max(abs(a - b) for a, b in zip(got, probs[seed][r.item], strict=True))
            checked["score"] += 1
            if gap > PROB_TOLERANCE:
                problems["score output not its version's"] += 1
        elif len({t[r.item] for t in texts}) == len(texts):  # seeds tell apart on this prompt
            checked["chat"] += 1
            if r.output != texts[seed][r.item]:
                problems["chat output not its version's"] += 1
    return problems, checked["score"], checked["chat"]


def section_rollout(args: argparse.Namespace, nodes: Sequence[Node], releaser: Releaser,
                    labels: list[str], expected: tuple[list, list], mix: Mix) -> None:
    load = BackgroundLoad([n.url for n in nodes],
                          {"concurrency": args.load_concurrency, "mix": mix, "seed": args.seed})
    load.start()
    watch = Watch(load.records)
    time.sleep(2.0)
    swap_round(releaser, watch, nodes, 1, 60, True)  # warm-up: both followers consuming
    rss: dict[int, float] = {}
    delays: dict[str, list[list[float]]] = {"score": [], "chat": []}
    began = time.time()
    for i in range(1, args.swaps + 1):
        chat = i <= args.chat_swaps
        swapped = swap_round(releaser, watch, nodes, i + 1, args.swap_timeout, chat)
        for endpoint, values in swapped.items():
            delays[endpoint].append(values)
        if i in (args.rss_early, args.swaps):
            rss[i] = nodes[0].rss_mb()
    records = load.stop()
    during = [r for r in records if r.started_at >= began]
    print(f"\n[3] live rollout: {args.swaps} swaps (fraud, then support) via store + pointer + "
          f"AdapterPromoted on model.events, under load ({args.load_concurrency} clients over "
          f"{len(nodes)} nodes, {mix.chat_workers} of them chatting, {mix.chat_max_tokens} tokens; "
          f"{mix.feedback_share:.0%} feedback) for {time.time() - began:.0f} s")
    worst = print_delays(delays, nodes)
    ttft = [r.first_token_at - r.started_at for r in during
            if r.endpoint == "chat" and r.first_token_at is not None]
    scored = [r.latency_s for r in during if r.endpoint == "score" and not r.failed]
    print(f"for scale, under this load: /v1/score latency p50 {percentile(scored, 0.5):.2f} s, "
          f"chat time to first token p50 {percentile(ttft, 0.5):.2f} s p95 "
          f"{percentile(ttft, 0.95):.2f} s (any version)")
    summarize_rollout(during, releaser, labels, expected, rss, worst)


def print_delays(delays: dict[str, list[list[float]]], nodes: Sequence[Node]) -> dict[str, float]:
    """The per-node table of swap delays; the worst node's p95 per endpoint."""
    print(f"{'event -> first answer by the new version':<44}{'swaps':>6}{'p50 s':>8}{'p95 s':>8}"
          f"{'max s':>8}{'missed':>8}")
    worst = {}
    for endpoint, what in (("score", "first /v1/score answer"), ("chat", "first chat token")):
        for index, node in enumerate(nodes):
            values = [row[index] for row in delays[endpoint]]
            finite = [v for v in values if v != float("inf")]
            p95 = percentile(values, 0.95)
            worst[endpoint] = max(worst.get(endpoint, 0.0), p95)
            print(f"{f'{what}, node {node.name}':<44}{len(values):>6}"
                  f"{percentile(finite, 0.5):>8.2f}{p95:>8.2f}{max(values, default=0):>8.2f}"
                  f"{len(values) - len(finite):>8}")
    return worst


def summarize_rollout(records: Sequence[RequestRecord], releaser: Releaser, labels: list[str],
                      expected: tuple[list, list], rss: dict[int, float],
                      worst: dict[str, float]) -> None:
    counts = Counter(r.endpoint for r in records)
    failed = Counter(f"{r.endpoint} {r.status} {r.error}" for r in records if r.failed)
    problems, n_score, n_chat = output_problems(records, releaser, labels, expected)
    print("requests during the swaps: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
          + f"; failed {sum(failed.values())}")
    for what, count in failed.most_common(3):
        print(f"  {count} x {what[:160]}")
    print(f"output checks: {n_score} score answers vs their version's probabilities (tol "
          f"{PROB_TOLERANCE}), {n_chat} chat answers vs their version's greedy text; problems: "
          + (", ".join(f"{k} {v}" for k, v in problems.items()) or "none"))
    for endpoint, what in (("score", "/v1/score answer"), ("chat", "chat token")):
        print(f"event -> first {what} p95 (worst node) {worst[endpoint]:.2f} s (target < 2 s): "
              f"{verdict(worst[endpoint] < 2.0)}")
    print(f"failed requests {sum(failed.values())} (target 0): {verdict(not failed)}")
    print(f"answers from an unknown or mixed version {sum(problems.values())} (target 0): "
          f"{verdict(not problems)}")
    if len(rss) == 2:
        (early, rss_early), (late, rss_late) = sorted(rss.items())
        grew = rss_late - rss_early
        print(f"node RSS after swap {early} {rss_early:.0f} MB, after swap {late} "
              f"{rss_late:.0f} MB "
              f"({grew:+.0f} MB; target within 50 MB): {verdict(abs(grew) <= 50)}")


# --- driver --------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8.0,
                        help="HTTP seconds per concurrency level, split into --rounds windows")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--raw-calls", type=int, default=100)
    parser.add_argument("--chat-runs", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--swaps", type=int, default=100)
    parser.add_argument("--rss-early", type=int, default=10)
    parser.add_argument("--chat-swaps", type=int, default=20,
                        help="swaps whose first chat token is waited for and timed")
    parser.add_argument("--swap-timeout", type=float, default=20.0)
    parser.add_argument("--load-concurrency", type=int, default=10)
    parser.add_argument("--chat-workers", type=int, default=4,
                        help="of the rollout's clients, how many only chat (the rest score)")
    parser.add_argument("--sections", nargs="+", default=["score", "chat", "rollout"],
                        choices=["score", "chat", "rollout"])
    parser.add_argument("--torch-threads", type=int, default=None,
                        help="torch threads of this process and of every node (default: torch's)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", type=Path, default=None,
                        help="work in this (new) directory and keep it: node logs, store")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore")
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as scratch:
        tmp = Path(scratch) if args.keep is None else args.keep
        tmp.mkdir(parents=True, exist_ok=args.keep is None)
        settings = StackSettings(
            state_dir=tmp / "state", kafka_port=0, milvus_port=0,
            redis_url=f"redis://127.0.0.1:{procs.free_port()}/0",
            topic_prefix=f"b{uuid.uuid4().hex[:8]}.", health_timeout_s=60)
        stack = Stack(settings)
        nodes: list[Node] = []
        try:
            run(args, tmp, stack.up(), settings, nodes)
        finally:
            for node in nodes:
                node.stop()
            stack.down()


def run(args: argparse.Namespace, tmp: Path, state: StackState, settings: StackSettings,
        nodes: list[Node]) -> None:
    began = time.perf_counter()
    catalog = load_catalog(ROOT / "config" / "tasks.toml")
    tasks = {}
    for name in ("fraud", "support"):
        task = catalog.tasks[name]
        base_dir = resolve_base_model(task.base_model, default_cache_dir(), catalog.base_models)
        tasks[name] = (task, base_dir, build_files(task, base_dir, tmp / "files", SEEDS))
    store = AdapterStore(tmp / "adapters")
    assert state.bootstrap_servers
    releaser = Releaser(store, state.bootstrap_servers, settings.topic_prefix, tasks)
    for name in tasks:
        releaser.announce(name, *releaser.write(name, 0))
    threads = {"SERVING_TORCH_THREADS": str(args.torch_threads)} if args.torch_threads else {}
    start = lambda name: start_node(  # noqa: E731
        name, settings.state_dir, store.root, tmp / f"{name}.log", threads)
    nodes.append(start("bench-a"))
    score_model = ScoreModel(*tasks["fraud"])
    chat_model = ChatModel(*tasks["support"])
    nodes[0].wait_active({"fraud": "1.0.0", "support": "1.0.0"})
    print(f"set-up {time.perf_counter() - began:.0f} s (stack, adapters, node a); load "
          f"{os.getloadavg()[0]:.2f}", flush=True)
    if "score" in args.sections:
        section_score(args, nodes[0], score_model)
    if "chat" in args.sections:
        section_chat(args, nodes[0], chat_model)
    if "rollout" in args.sections:
        nodes.append(start("bench-b"))
        mix = Mix(chat_workers=args.chat_workers, feedback_share=0.2, chat_max_tokens=12)
        expected = references(score_model, chat_model, mix)
        nodes[1].wait_active({"fraud": "1.0.0", "support": "1.0.0"})
        labels = list(tasks["fraud"][0].labels or ())
        section_rollout(args, nodes, releaser, labels, expected, mix)
        (tmp / "announced.tsv").write_text(
            "".join(f"{t}\t{v}\t{at:.3f}\n" for t, v, at in releaser.sent))
    print(f"\ntotal {time.perf_counter() - began:.0f} s; load average (1, 5, 15 min) "
          + " ".join(f"{v:.2f}" for v in os.getloadavg()))


if __name__ == "__main__":
    main()
