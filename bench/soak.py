"""Soak: every lorafeed service under steady load for N minutes (default 10), then the invariant
check of the fault suite over everything that was sent.

On its own embedded stack (isolated ports, dir, prefix; stopped at the end) it runs two streams
workers, the learner and two serving nodes (tests/faults/world.py) and keeps up: corpus records
(and a few bad ones) into records.raw; /v1/score, streamed chat and /v1/feedback through both
nodes (bench/loadgen.py), so the learner trains `chat` and `intent` every few examples; and
adapter swaps: a `swap` task, scored by a second load, gets a new version written into the store
and promoted every `--swap-every-s` seconds. Every minute it prints throughput, p99 latencies,
records indexed, versions, swaps and the RSS of every process; at the end the invariant report
and, per process, PASS/MISS for "RSS at the last minute within 50 MB of minute 2".

Usage: python bench/soak.py [--minutes 10] [--records-per-s 1] [--swap-every-s 30] [--keep]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests/ (not an installed package) must be importable

import psutil  # noqa: E402

from bench.loadgen import Mix, RequestRecord, percentile  # noqa: E402
from lorafeed.kafka_clients import make_producer  # noqa: E402
from lorafeed.stack import Stack  # noqa: E402
from lorafeed.task_catalog import load_catalog  # noqa: E402
from schemas import AdapterPromoted, Topic, encode, topic_name  # noqa: E402
from schemas.manifest import manifest_sha256  # noqa: E402
from tests.faults.history import History, settle  # noqa: E402
from tests.faults.load import (  # noqa: E402
    CorrectionLoad,
    RecordFeed,
    corpus_records,
    hostile,
    interleave,
    request_load,
)
from tests.faults.world import LABELS, FaultWorld, fault_tasks  # noqa: E402
from tests.support.adapters import add_version, build_adapter, tiny_base_dir  # noqa: E402
from tests.support.learner_proc import task_table  # noqa: E402
from tests.support.stack import RunningStack, isolated_stack_settings  # noqa: E402

RSS_BUDGET_MB = 50.0
SWAP_MIX = Mix(score_task="swap", chat_task="chat", chat_share=0.0, feedback_share=0.0)


@dataclass
class Swapper:
    """Writes `swap`@1.0.N into the store, makes it champion and announces AdapterPromoted,
    every `every_s` seconds, on a thread (the learner never trains `swap`: no feedback)."""

    world: FaultWorld
    every_s: float
    published: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="swapper", daemon=True)
        self.error: BaseException | None = None
        task = load_catalog(self.world.root / "tasks.toml").task("swap")
        self._base = tiny_base_dir(self.world.models_dir)
        build = self.world.root / "build"
        self._task = task
        self._files = [build_adapter(task, self._base, build / f"s{s}", seed=s) for s in (1, 2, 3)]
        self._producer = make_producer(self.world.stack.bootstrap)

    def start(self) -> Swapper:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)
        if self.error is not None:
            raise RuntimeError(f"swapper failed: {self.error!r}") from self.error

    def _run(self) -> None:
        try:
            n = 0
            while not self._stop.wait(self.every_s):
                n += 1
                version = f"1.0.{n}"
                manifest = add_version(self.world.store, self._task, version, self._base,
                                       self._files[n % len(self._files)])
                event = AdapterPromoted(
                    schema_version=1, event_id=uuid.uuid4().hex, task="swap",
                    occurred_at=datetime.now(UTC), version=version,
                    manifest_sha256=manifest_sha256(manifest))
                self._producer.produce(topic_name(Topic.MODEL_EVENTS, self.world.prefix),
                                       key="swap", value=encode(event))
                self._producer.flush(30)
                self.published.append(version)
        except BaseException as exc:  # reported by stop()
            self.error = exc


def rss_mb(pid: int | None) -> float:
    """RSS of `pid` and its children, MB (0 when it is gone)."""
    if pid is None:
        return 0.0
    try:
        process = psutil.Process(pid)
        total = sum(p.memory_info().rss for p in [process, *process.children(True)])
        return float(total) / 2**20
    except psutil.Error:
        return 0.0


def processes(world: FaultWorld) -> dict[str, int | None]:
    """Every process to watch: the services, then the stack's components."""
    pids: dict[str, int | None] = {
        name: s.handle.pid if s.handle else None for name, s in world.services.items()
    }
    state = Stack(world.stack.settings).state()
    for name, component in (state.components.items() if state else []):
        pids[name] = component.pid
    return pids


def minute_row(minute: int, records: list[RequestRecord], since: float, until: float,
               produced: int, indexed: int, versions: int, swaps: int,
               rss: dict[str, float]) -> str:
    chosen = [r for r in records if since <= r.started_at < until]
    span = max(until - since, 1e-9)

    def p99(endpoint: str) -> float:
        return percentile([r.latency_s * 1000 for r in chosen
                           if r.endpoint == endpoint and not r.failed], 0.99)

    failed = sum(r.failed for r in chosen)
    memory = " ".join(f"{name} {mb:.0f}" for name, mb in rss.items())
    return (f"{minute:>3} {len(chosen) / span:>6.1f} {failed:>5} {p99('score'):>8.0f} "
            f"{p99('chat'):>8.0f} {p99('feedback'):>8.0f} {produced:>6} {indexed:>6} "
            f"{versions:>5} {swaps:>5}  {memory}")


def _indexed(world: FaultWorld) -> int:
    return len({e.record_id for e in world.scenario.read_all(Topic.RECORDS_INDEXED)
                if hasattr(e, "record_id")})


def _swaps(world: FaultWorld) -> int:
    return world.log_count(": now serving ")


def run(args: argparse.Namespace, root: Path) -> bool:
    settings = isolated_stack_settings(root / "stack")
    stack = Stack(settings)
    world: FaultWorld | None = None
    try:
        running = RunningStack(settings, stack.up())
        tasks = fault_tasks() | {"swap": task_table(
            min_examples=1_000_000, kind="classification", labels=LABELS)}
        world = FaultWorld(running, root / "world", root / "models", tasks=tasks)
        print(f"soak: {args.minutes} min; logs in {root / 'world' / 'logs'}", flush=True)
        world.start_all()
        return soak(world, args)
    finally:
        if world is not None:
            world.stop_all()
        stack.down()


def soak(world: FaultWorld, args: argparse.Namespace) -> bool:
    from lorafeed.embedder import SentenceEmbedder

    history = History(SentenceEmbedder())
    n = int(args.minutes * 60 * args.records_per_s * 1.2) + 50
    items = interleave(corpus_records(n, 1, f"soak{world.tag}"), hostile("soak"))
    feed = RecordFeed(world.stack.bootstrap, topic_name(Topic.RECORDS_RAW, world.prefix),
                      args.records_per_s).start(items)
    load = request_load(world.node_urls, world.keys.app, seed=1, pause_s=args.pause_s,
                        concurrency=args.concurrency).start()
    swap_load = request_load(world.node_urls, world.keys.app, seed=2, pause_s=0.5,
                             mix=SWAP_MIX).start()
    teacher = CorrectionLoad(world.node_urls, world.keys.app).start()
    swapper = Swapper(world, args.swap_every_s).start()
    pids = processes(world)
    rss: dict[int, dict[str, float]] = {}
    print(f"{'min':>3} {'req/s':>6} {'fail':>5} {'score99':>8} {'chat99':>8} {'fb99':>8} "
          f"{'sent':>6} {'index':>6} {'vers':>5} {'swaps':>5}  RSS MB per process", flush=True)
    began, clock = time.time(), threading.Event()
    try:
        for minute in range(1, int(args.minutes) + 1):
            clock.wait(max(0.0, began + 60 * minute - time.time()))  # the sampling clock
            now = time.time()
            rss[minute] = {name: rss_mb(pid) for name, pid in pids.items()}
            versions = sum(len(world.store.versions(t)) for t in world.tasks)
            print(minute_row(minute, load.records + teacher.records + swap_load.records,
                             now - 60, now,
                             feed.produced, _indexed(world), versions, _swaps(world),
                             rss[minute]), flush=True)
            if world.dead():
                print("\n".join(world.dead()), flush=True)
                return False
    finally:
        feed.stop()
        swapper.stop()
        requests, swap_requests = load.stop() + teacher.stop(), swap_load.stop()
        history.add(feed.join(120), requests)
    report = settle(world, history, f"soak {args.minutes} min",
                    extra=[(SWAP_MIX, swap_requests)])
    print(report.text(), flush=True)
    print(f"swap versions published: {len(swapper.published)}")
    return rss_verdict(rss) and report.ok


def rss_verdict(rss: dict[int, dict[str, float]]) -> bool:
    """PASS/MISS per process: RSS at the last minute within RSS_BUDGET_MB of minute 2."""
    if len(rss) < 2:
        print("too short for an RSS verdict")
        return True
    first = 2 if 2 in rss else min(rss)
    last = max(rss)
    ok = True
    print(f"RSS at minute {last} vs minute {first} (budget {RSS_BUDGET_MB:.0f} MB):")
    for name, start in rss[first].items():
        end = rss[last].get(name, 0.0)
        passed = abs(end - start) <= RSS_BUDGET_MB
        ok &= passed
        print(f"  {'PASS' if passed else 'MISS'} {name:<10} {start:8.0f} -> {end:8.0f} MB "
              f"({end - start:+.0f})")
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--records-per-s", type=float, default=1.0)
    parser.add_argument("--swap-every-s", type=float, default=30.0)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--pause-s", type=float, default=0.15,
                        help="each load worker's pause between answers")
    parser.add_argument("--dir", type=Path, default=None, help="work dir (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (logs)")
    args = parser.parse_args()
    if args.minutes <= 0 or args.records_per_s <= 0 or args.swap_every_s <= 0:
        parser.error("--minutes, --records-per-s and --swap-every-s must be positive")
    import transformers

    transformers.logging.set_verbosity_error()  # the swapper's adapter builds are not news
    root = args.dir or Path(tempfile.mkdtemp(prefix="lorafeed-soak-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        ok = run(args, root)
    finally:
        if not args.keep and args.dir is None:
            shutil.rmtree(root, ignore_errors=True)
    print("soak:", "PASS" if ok else "FAIL")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
