"""What bench/serving.py runs against: seeded adapter files per task, versions written into an
adapter store and announced on model.events (the learner's path), serving nodes started as
`python -m serving` subprocesses, and in-process reference models (the baselines, and the
expected output of every adapter for the version checks).
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psutil

from lorafeed import procs
from lorafeed.adapter_store import AdapterStore
from lorafeed.kafka_clients import make_producer
from lorafeed.publish import publish_events
from lorafeed.task_models import load_base, open_adapter
from schemas import AdapterPromoted, Topic
from schemas.manifest import manifest_sha256
from schemas.tasks import TaskConfig

ROOT = Path(__file__).resolve().parents[1]
# Ahead of bench/ (the script's directory): `serving` must be the package, not bench/serving.py,
# and tests/ (not an installed package) must be importable.
sys.path.insert(0, str(ROOT))
T = TypeVar("T")
SCALES = {"classification": 0.3, "generation": 0.15}  # lora_B noise: distinct, still fluent


def _support() -> Any:
    """tests/support/adapters.py: builds adapter versions the way the test suite does."""
    from tests.support import adapters

    return adapters


def build_files(task: TaskConfig, base_dir: Path, out: Path, seeds: Sequence[int]) -> list[Path]:
    """One adapter directory per seed (tests/support/adapters.build_adapter: seeded lora_B and
    head noise, so seeds give clearly different outputs)."""
    return [_support().build_adapter(task, base_dir, out / f"{task.name}-{seed}", seed=seed,
                          scale=SCALES[task.kind]) for seed in seeds]


class Releaser:
    """Writes versions into the store, moves the champion pointer and announces AdapterPromoted
    on model.events, as the learner does. Version `1.0.N` of a task uses file set N % sets."""

    def __init__(self, store: AdapterStore, bootstrap: str, prefix: str,
                 tasks: Mapping[str, tuple[TaskConfig, Path, list[Path]]]) -> None:
        self._fields = _support().manifest_fields
        self.store = store
        self.prefix = prefix
        self.tasks = tasks
        self.producer = make_producer(bootstrap)
        self.seed_of: dict[tuple[str, str], int] = {}  # (task, version) -> file set index
        self.sent: list[tuple[str, str, float]] = []  # (task, version, announced at)

    def write(self, task_name: str, n: int) -> tuple[str, str]:
        """Store version 1.0.n and point the champion at it; (version, manifest sha256)."""
        task, base_dir, files = self.tasks[task_name]
        version = f"1.0.{n}"
        fields = self._fields(task, version, base_dir)
        manifest = self.store.write_version(task_name, version, files[n % len(files)], fields)
        self.store.set_champion(task_name, version, force=True)
        self.seed_of[(task_name, version)] = n % len(files)
        return version, manifest_sha256(manifest)

    def announce(self, task_name: str, version: str, digest: str) -> float:
        """Publish AdapterPromoted; the wall-clock time just before it was produced."""
        event = AdapterPromoted(
            schema_version=1, event_id=uuid.uuid4().hex, task=task_name,
            occurred_at=datetime.now(UTC), version=version, manifest_sha256=digest)
        sent_at = time.time()
        publish_events(self.producer, self.prefix, [(Topic.MODEL_EVENTS, task_name, event)])
        self.sent.append((task_name, version, sent_at))
        return sent_at


@dataclass(frozen=True)
class Node:
    name: str
    url: str
    handle: procs.ProcessHandle
    log: Path

    def rss_mb(self) -> float:
        return float(psutil.Process(self.handle.pid).memory_info().rss) / 2**20

    def active(self) -> dict[str, str | None]:
        body = httpx.get(f"{self.url}/v1/models", timeout=10).json()
        return {m["id"]: m["lorafeed"]["active_version"] for m in body["data"]}

    def wait_active(self, expected: Mapping[str, str], timeout_s: float = 300) -> None:
        """Until /v1/models shows `expected` (task -> version); SystemExit with the log tail."""
        deadline = time.monotonic() + timeout_s
        seen: dict[str, str | None] = {}
        while time.monotonic() < deadline:
            if not self.handle.is_alive():
                break
            try:
                seen = self.active()
                if all(seen.get(t) == v for t, v in expected.items()):
                    return
            except (httpx.HTTPError, ValueError, KeyError):
                pass
            time.sleep(0.3)
        raise SystemExit(f"node {self.name}: wanted {dict(expected)}, serves {seen}; log "
                         f"{self.log}:\n{procs.tail(str(self.log), 15)}")

    def stop(self) -> None:
        procs.stop(self.handle)


def start_node(name: str, state_dir: Path, store_root: Path, log: Path,
               extra_env: Mapping[str, str] | None = None) -> Node:
    """`python -m serving` on a free port beside the stack in `state_dir`: auth and rate limit
    off (one anonymous caller would hit the per-key limit), retrieval off."""
    port = procs.free_port()
    env = {
        **os.environ, "LORAFEED_STATE_DIR": str(state_dir), "LORAFEED_ADAPTER_STORE":
        str(store_root), "SERVING_PORT": str(port), "SERVING_NODE_ID": name,
        "SERVING_TASKS_FILE": str(ROOT / "config" / "tasks.toml"),
        "SERVING_AUTH_ENABLED": "false", "SERVING_RATE_LIMIT_PER_MINUTE": "0",
        "SERVING_RETRIEVAL": "false", "HF_HUB_OFFLINE": "1", **(extra_env or {}),
    }
    handle = procs.spawn(f"serving-{name}", [sys.executable, "-m", "serving"], log, env=env,
                         cwd=ROOT)
    return Node(name, f"http://127.0.0.1:{port}", handle, log)


class OwnerThread:
    """Runs model calls on one worker thread, like the engine's model-owner thread: here torch
    on the main thread ran MiniLM ~4x slower than on a worker thread under CPU contention."""

    model: Any

    def __init__(self) -> None:
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="bench-model")
        self._active: int | None = None

    def activate(self, seed: int) -> None:
        """Switch to file set `seed` only when it changes, as the engine does (peft's
        set_adapter walks every module: milliseconds)."""
        if seed != self._active:
            self.model.set_adapter(f"s{seed}")
            self._active = seed

    def timed(self, fn: Callable[[], T]) -> tuple[T, float]:
        """fn's result and its seconds, measured on the worker thread (no hand-off cost)."""

        def run() -> tuple[T, float]:
            began = time.perf_counter()
            result = fn()
            return result, time.perf_counter() - began

        return self._thread.submit(run).result()


class ScoreModel(OwnerThread):
    """A classification task's model in this process with every file set loaded as adapter
    s<i>: the engine's forward (tokenize, forward, softmax) without serving around it."""

    def __init__(self, task: TaskConfig, base_dir: Path, files: Sequence[Path]) -> None:
        super().__init__()
        model: Any
        self.base, self.tokenizer = load_base(task, base_dir)
        model = self.base
        for index, directory in enumerate(files):
            model = open_adapter(task, model, directory, trainable=False, adapter_name=f"s{index}")
        self.model = model.eval()
        self.task = task

    def probabilities(self, texts: Sequence[str], seed: int = 0) -> list[list[float]]:
        """Each text's label probabilities under file set `seed` (on the worker thread)."""
        return self.timed(lambda: self._probabilities(texts, seed))[0]

    def seconds(self, texts: Sequence[str], seed: int = 0) -> float:
        """How long one forward of `texts` took, on the worker thread."""
        return self.timed(lambda: self._probabilities(texts, seed))[1]

    def _probabilities(self, texts: Sequence[str], seed: int) -> list[list[float]]:
        import torch

        self.activate(seed)
        batch = self.tokenizer(list(texts), padding=True, truncation=True,
                               max_length=self.task.max_seq_len, return_tensors="pt")
        with torch.inference_mode():
            # through the base model, as the engine does: peft injected the LoRA layers into it,
            # and PeftModel's own forward costs more per call
            logits = self.base(**batch).logits  # (texts, labels)
        return [list(map(float, row)) for row in torch.softmax(logits.float(), dim=-1).tolist()]


class ChatModel(OwnerThread):
    """A generation task's model in this process with every file set loaded as adapter s<i>;
    `generate` is bare `model.generate` (greedy) on given prompt ids."""

    def __init__(self, task: TaskConfig, base_dir: Path, files: Sequence[Path]) -> None:
        super().__init__()
        model: Any
        model, self.tokenizer = load_base(task, base_dir)
        for index, directory in enumerate(files):
            model = open_adapter(task, model, directory, trainable=False, adapter_name=f"s{index}")
        self.model = model.eval()

    def prompt_ids(self, user_text: str) -> list[int]:
        """The node's templated prompt for one user turn, no passages (serving.prompt)."""
        from serving.prompt import build_prompt

        turns = [{"role": "user", "content": user_text}]
        return list(build_prompt(turns, [], self.tokenizer).input_ids)

    def generate(
        self, ids: Sequence[int], max_tokens: int, seed: int = 0
    ) -> tuple[str, int, float]:
        """Greedy answer text, its token count (EOS not counted) and seconds, on the worker
        thread."""
        (text, count), took = self.timed(lambda: self._generate(ids, max_tokens, seed))
        return text, count, took

    def _generate(self, ids: Sequence[int], max_tokens: int, seed: int) -> tuple[str, int]:
        import torch

        self.activate(seed)
        with torch.inference_mode():
            out = self.model.generate(torch.tensor([list(ids)]), max_new_tokens=max_tokens,
                                      do_sample=False, pad_token_id=self.tokenizer.pad_token_id)
        new = out[0, len(ids):].tolist()
        eos = self.tokenizer.eos_token_id
        if eos in new:
            new = new[: new.index(eos)]
        return self.tokenizer.decode(new, skip_special_tokens=True), len(new)
