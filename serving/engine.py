"""One task's model on one model-owner thread: the base model with LoRA adapter versions loaded
side by side (serving/adapter_slots.py), micro-batched scoring and streamed generation.

Every forward pass, adapter load, `set_adapter` and delete runs on that single thread, so no pass
can ever see two versions (peft swaps mid-pass otherwise mix layers). The engine holds no notion
of the "active" version: callers name the version of every call (the registry decides which).
"""

from __future__ import annotations

import asyncio
import copy
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from lorafeed.task_models import base_model_sha256, load_base, resolved_targets, torch_dtype
from schemas.tasks import TaskConfig
from serving.adapter_slots import AdapterSlots, check_weights_file
from serving.errors import EngineClosed, InvalidRequest, ServingError, WrongTaskKind
from serving.generation import Generation, GenerationSettings
from serving.microbatch import MicroBatchConfig, MicroBatcher

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

T = TypeVar("T")
DEFAULT_PROBE = "The customer asked when the parcel would ship and how refunds work."


@dataclass(frozen=True)
class ScoreResult:
    """One scored text: the top label, every label's probability, whether the top-two gap is
    below the task's `low_margin`, and the version (None: base model) that produced it."""

    label: str
    probabilities: dict[str, float]
    low_margin: bool
    version: str | None


@dataclass(frozen=True)
class EngineConfig:
    """score_batch: micro-batching of score calls (max batch, wait, queue bound);
    probe_text: the fixed input of the smoke probe every new adapter must pass."""

    score_batch: MicroBatchConfig = field(default_factory=MicroBatchConfig)
    probe_text: str = DEFAULT_PROBE


class TaskEngine:
    """The model of one task. Build with `TaskEngine.load`; `close` when done."""

    def __init__(
        self,
        task: TaskConfig,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        *,
        base_sha256: str,
        config: EngineConfig | None = None,
    ) -> None:
        self.task = task
        self.tokenizer = tokenizer  # for the prompt builder, on the event-loop thread
        self.base_sha256 = base_sha256
        self.targets = resolved_targets(task, model)
        self.config = config or EngineConfig()
        self._model = model  # peft injects LoRA layers into it in place; forwards go through it
        self._owner_tokenizer = copy.deepcopy(tokenizer)  # fast tokenizers are not reentrant
        self._slots = AdapterSlots(task, model)
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"model-owner-{task.name}")
        self._batcher: MicroBatcher[tuple[str, str | None], ScoreResult | ServingError] = (
            MicroBatcher(self._score_batch, self.config.score_batch, executor=self._executor)
        )
        self._closed = False

    @classmethod
    def load(
        cls,
        task: TaskConfig,
        base_dir: Path,
        *,
        device: str = "cpu",
        dtype: str = "float32",
        config: EngineConfig | None = None,
    ) -> TaskEngine:
        """Load the task's base model from `base_dir` in `dtype` (blocking; call before
        serving)."""
        model, tokenizer = load_base(task, base_dir, device=device, dtype=torch_dtype(dtype))
        return cls(task, model, tokenizer, base_sha256=base_model_sha256(base_dir), config=config)

    @property
    def loaded_versions(self) -> frozenset[str]:
        """Versions loaded and usable now."""
        return self._slots.versions

    @property
    def context_tokens(self) -> int | None:
        """The longest sequence the model takes (prompt and answer); None when unknown."""
        limit = int(getattr(self._model.config, "max_position_embeddings", 0) or 0)
        return limit or None

    @property
    def pending(self) -> int:
        """Texts waiting for a score batch (a gauge for metrics)."""
        return self._batcher.pending

    def count_tokens(self, text: str) -> int:
        """Tokens of `text` without special tokens (markers in it count as plain text)."""
        ids = self.tokenizer(text, add_special_tokens=False, split_special_tokens=True)
        return len(ids["input_ids"])

    # --- requests --------------------------------------------------------------------------

    async def score(self, texts: Sequence[str], version: str | None) -> list[ScoreResult]:
        """Label probabilities of each text under `version` (None: the base model); the first
        text that cannot be scored raises its error."""
        results = await self.score_each(texts, version)
        for result in results:
            if isinstance(result, ServingError):
                raise result
        return [r for r in results if isinstance(r, ScoreResult)]

    async def score_each(
        self, texts: Sequence[str], version: str | None
    ) -> list[ScoreResult | ServingError]:
        """`score`, with each text's own outcome: a result, or the error that text alone got
        (e.g. `InvalidRequest` for a text the tokenizer turns into no tokens at all)."""
        self._require("classification", "scoring")
        if not texts:
            raise InvalidRequest("texts is empty; give at least one text to score")
        return list(await asyncio.gather(*(self._batcher.submit((t, version)) for t in texts)))

    def generate(
        self,
        prompt_ids: Sequence[int],
        *,
        max_tokens: int,
        temperature: float = 0.0,
        stop: Sequence[str] = (),
        version: str | None,
        seed: int | None = None,
    ) -> Generation:
        """An async iterator of text pieces answering `prompt_ids` with `version`; use
        ``await engine.generate(...).complete()`` for the whole answer at once."""
        self._require("generation", "generation")
        if not prompt_ids or not all(isinstance(i, int) for i in prompt_ids):
            raise InvalidRequest(
                f"prompt_ids must be a non-empty list of ints, got {prompt_ids!r:.80}"
            )
        limit = int(getattr(self._model.config, "max_position_embeddings", 0) or 0)
        if limit and len(prompt_ids) >= limit:
            raise InvalidRequest(f"prompt has {len(prompt_ids)} tokens; the model holds {limit}")
        allowed = max_tokens if not limit else min(max_tokens, limit - len(prompt_ids))
        settings = GenerationSettings(allowed, temperature, tuple(stop), seed)
        return Generation(
            run=self._run,
            forward=self._forward_last,
            decode=self._decode,
            eos_ids=self._eos_ids(),
            prompt_ids=list(prompt_ids),
            settings=settings,
            version=version,
        )

    # --- adapters ---------------------------------------------------------------------------

    async def load_adapter_aside(self, version: str, version_dir: Path) -> None:
        """Load `version` from its (verified) directory without changing what others use.
        AdapterRefused if its weights are unreadable or not finite (checked before loading)."""
        if version in self._slots.versions:
            return
        await asyncio.to_thread(check_weights_file, self.task.name, version, version_dir)
        await self._run(lambda: self._slots.load(version, version_dir))

    async def smoke_check(self, version: str) -> None:
        """AdapterRefused unless `version`'s weights and its output on the probe are finite."""
        await self._run(lambda: self._slots.smoke(version, self._probe()))

    async def unload(self, version: str) -> None:
        """Remove `version` from the model and give its memory back (no-op if not loaded)."""
        await self._run(lambda: self._slots.unload(version))

    async def close(self) -> None:
        """Finish queued score batches, then stop the model-owner thread."""
        if self._closed:
            return
        self._closed = True
        await self._batcher.close()
        await asyncio.to_thread(self._executor.shutdown, True)

    # --- on the model-owner thread ----------------------------------------------------------

    async def _run(self, fn: Callable[[], T]) -> T:
        if self._closed:
            raise EngineClosed(f"engine of task {self.task.name!r} is closed")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    def _require(self, kind: str, wanted: str) -> None:
        if self.task.kind != kind:
            raise WrongTaskKind(self.task.name, self.task.kind, wanted)
        if self._closed:
            raise EngineClosed(f"engine of task {self.task.name!r} is closed")

    def _score_batch(self, items: list[tuple[str, str | None]]) -> list[ScoreResult | ServingError]:
        """One forward pass per version present in the batch; results in input order."""
        import torch

        groups: dict[str | None, list[int]] = defaultdict(list)
        for index, (_text, version) in enumerate(items):
            groups[version].append(index)
        results: list[ScoreResult | ServingError | None] = [None] * len(items)
        labels = list(self.task.labels or ())
        for version, indices in groups.items():
            try:
                self._slots.activate(version)
            except ServingError as exc:  # only this version's texts fail
                for index in indices:
                    results[index] = exc
                continue
            batch = self._tokenize([items[i][0] for i in indices])
            lengths = batch["attention_mask"].sum(-1).tolist()  # (texts,)
            empty = [i for i, n in zip(indices, lengths, strict=True) if n == 0]
            if empty:  # a row of padding only: no forward can score it (an all-empty batch fails)
                for index in empty:
                    results[index] = InvalidRequest("the text gives the model no tokens to read")
                indices = [i for i in indices if i not in empty]
                if not indices:
                    continue
                batch = self._tokenize([items[i][0] for i in indices])
            with torch.inference_mode():
                logits = self._model(**batch).logits  # (texts, labels)
            probabilities = torch.softmax(logits.float(), dim=-1).tolist()
            for index, row in zip(indices, probabilities, strict=True):
                results[index] = self._result(labels, row, version)
        return [r for r in results if r is not None]

    def _tokenize(self, texts: list[str]) -> Any:
        return self._owner_tokenizer(
            texts,
            padding=True,
            truncation=True,
            max_length=self.task.max_seq_len,
            return_tensors="pt",
            return_attention_mask=True,
        )

    def _result(self, labels: list[str], row: list[float], version: str | None) -> ScoreResult:
        ranked = sorted(row, reverse=True)
        margin = ranked[0] - ranked[1] if len(ranked) > 1 else 1.0
        best = max(range(len(row)), key=row.__getitem__)
        return ScoreResult(
            label=labels[best],
            probabilities=dict(zip(labels, row, strict=True)),
            low_margin=margin < self.task.low_margin,
            version=version,
        )

    def _probe(self) -> dict[str, Any]:
        return dict(self._owner_tokenizer([self.config.probe_text], return_tensors="pt"))

    def _forward_last(
        self, ids: Sequence[int], cache: Any, version: str | None
    ) -> tuple[torch.Tensor, Any]:
        import torch

        self._slots.activate(version)
        with torch.inference_mode():
            out = self._model(
                input_ids=torch.tensor([list(ids)]),
                past_key_values=cache,
                use_cache=True,
                logits_to_keep=1,
            )
        return out.logits[0, -1], out.past_key_values  # (vocab,)

    def _decode(self, ids: Sequence[int]) -> str:
        text = self._owner_tokenizer.decode(list(ids), skip_special_tokens=True)
        return text if isinstance(text, str) else "".join(text)

    def _eos_ids(self) -> frozenset[int]:
        found: set[int] = set()
        for source in (self.tokenizer.eos_token_id, self._model.generation_config.eos_token_id):
            if isinstance(source, int):
                found.add(source)
            elif isinstance(source, list):
                found.update(i for i in source if isinstance(i, int))
        return frozenset(found)
