"""Scores adapters on example lists for the promotion gate: accuracy (classification), answer
log-likelihood and an optional greedy-answer token F1 (generation), and a perplexity probe.

The learner's cycle builds one `Evaluator` per gate decision; the base model is loaded once and
candidate and champion adapters are attached by name beside it. Scores are paired by example.
"""

from __future__ import annotations

import ast
import importlib.util
import math
import re
from collections import Counter, OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import torch
from torch import Tensor, nn

from learner.batches import IGNORE, Encoded, collate, encode_example, encode_text, pad_id_of
from learner.errors import TrainingError
from learner.examples import Example
from learner.losses import token_logprobs
from lorafeed.task_models import load_base, open_adapter, torch_dtype

if TYPE_CHECKING:
    from schemas.tasks import TaskConfig

MATCH_TOKENS: Final = 32  # greedy tokens generated per answer for the "match" score
_MAX_LOADED: Final = 3  # adapters kept attached (candidate, champion, one spare)
_PROBE_MODULES: Final = (
    "sched", "calendar", "shelve", "tempfile", "inspect", "socket",
    "locale", "copy", "operator", "pdb", "ast", "tokenize",
)  # fmt: skip
_PROBE_MAX_CHARS: Final = 600


@dataclass(frozen=True)
class EvalScores:
    """An aggregate `value` of `metric`, the per-example scores it came from (paired with the
    input order), its direction, and secondary metrics (macro_f1, match) in `extra`."""

    metric: str
    value: float
    per_example: tuple[float, ...]
    higher_is_better: bool
    extra: Mapping[str, float] = field(default_factory=dict)


class Evaluator:
    """Scores adapter directories (or the bare base, `None`) on examples of one task."""

    def __init__(
        self,
        task: TaskConfig,
        base_dir: Path,
        *,
        device: str = "cpu",
        batch_size: int = 8,
        passages: Mapping[str, str] | None = None,
        dtype: str = "float32",
    ) -> None:
        self.task = task
        self.passages = passages or {}  # chunk pk -> text: chat examples scored as served
        self.device = device
        self.batch_size = batch_size
        base, self.tokenizer = load_base(task, base_dir, device=device, dtype=torch_dtype(dtype))
        self.model: Any = base  # becomes a PeftModel once an adapter is attached
        self.pad_id = pad_id_of(self.tokenizer)
        self._loaded: OrderedDict[tuple[str, int], str] = OrderedDict()
        self._names = 0

    def scores(
        self, adapter_dir: Path | None, examples: Sequence[Example], *, match: bool = False
    ) -> EvalScores:
        """Accuracy per example (classification) or mean answer log-likelihood per example
        (generation; `match` adds the mean token F1 of greedy answers, bounded length)."""
        if not examples:
            raise TrainingError(f"task {self.task.name!r}: nothing to evaluate (no examples)")
        encoded = [
            encode_example(self.task, self.tokenizer, example, self.passages)
            for example in examples
        ]
        with self._using(adapter_dir) as model, torch.no_grad():
            if self.task.kind == "classification":
                return self._classification(model, encoded)
            scores = self._neg_losses(model, encoded)
            extra = {"match": self._match(model, encoded, examples)} if match else {}
        return EvalScores("neg_loss", _mean(scores), tuple(scores), True, extra)

    def probe(self, adapter_dir: Path | None, texts: Sequence[str]) -> EvalScores:
        """Perplexity on general text: per text, and over all tokens (lower is better)."""
        if self.task.kind != "generation":
            raise TrainingError(f"task {self.task.name!r}: the perplexity probe needs a causal LM")
        encoded = [encode_text(self.tokenizer, text, self.task.max_seq_len) for text in texts]
        with self._using(adapter_dir) as model, torch.no_grad():
            sums, counts = self._logprob_sums(model, encoded)
        per_text = tuple(math.exp(-s / max(c, 1)) for s, c in zip(sums, counts, strict=True))
        total = math.exp(-sum(sums) / max(sum(counts), 1))
        return EvalScores("perplexity", total, per_text, False)

    @contextmanager
    def _using(self, adapter_dir: Path | None) -> Iterator[nn.Module]:
        from peft import PeftModel

        model: Any = self.model
        if adapter_dir is None:
            if isinstance(model, PeftModel):
                with model.disable_adapter():
                    yield model
            else:
                yield model
            return
        name = self._attach(Path(adapter_dir))
        attached: Any = self.model
        attached.set_adapter(name)
        yield attached

    def _attach(self, adapter_dir: Path) -> str:
        """The adapter's name, loading it unless already attached; evicts the oldest beyond
        `_MAX_LOADED` (never the last one: peft cannot run without an adapter)."""
        weights = adapter_dir / "adapter_model.safetensors"
        key = (str(adapter_dir.resolve()), weights.stat().st_mtime_ns if weights.exists() else 0)
        if key in self._loaded:
            self._loaded.move_to_end(key)
            return self._loaded[key]
        name = f"eval{self._names}"
        self._names += 1
        self.model = open_adapter(
            self.task, self.model, adapter_dir, trainable=False, adapter_name=name
        )
        self._loaded[key] = name
        while len(self._loaded) > _MAX_LOADED:
            _old_key, old_name = self._loaded.popitem(last=False)
            self.model.delete_adapter(old_name)
        return name

    def _batches(self, encoded: Sequence[Encoded]) -> Iterator[dict[str, Tensor]]:
        for start in range(0, len(encoded), self.batch_size):
            batch = collate(encoded[start : start + self.batch_size], self.pad_id)
            yield {key: value.to(self.device) for key, value in batch.items()}

    def _classification(self, model: nn.Module, encoded: Sequence[Encoded]) -> EvalScores:
        predicted: list[int] = []
        for batch in self._batches(encoded):
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
            predicted += logits.logits.argmax(-1).tolist()  # [B]
        truth = [int(item.label if item.label is not None else -1) for item in encoded]
        correct = tuple(float(p == t) for p, t in zip(predicted, truth, strict=True))
        f1 = macro_f1(truth, predicted, len(self.task.labels or ()))
        return EvalScores("accuracy", _mean(correct), correct, True, {"macro_f1": f1})

    def _logprob_sums(
        self, model: nn.Module, encoded: Sequence[Encoded]
    ) -> tuple[list[float], list[int]]:
        sums: list[float] = []
        counts: list[int] = []
        for batch in self._batches(encoded):
            total, count = token_logprobs(model, batch)  # [B], [B]
            sums += total.tolist()
            counts += [int(c) for c in count.tolist()]
        return sums, counts

    def _neg_losses(self, model: nn.Module, encoded: Sequence[Encoded]) -> list[float]:
        sums, counts = self._logprob_sums(model, encoded)
        return [s / max(c, 1) for s, c in zip(sums, counts, strict=True)]

    def _match(self, model: Any, encoded: Sequence[Encoded], examples: Sequence[Example]) -> float:
        """Mean token F1 of greedy answers (<= MATCH_TOKENS new tokens) over chat examples."""
        prompts = [
            (list(item.input_ids[: _answer_start(item)]), example.text)
            for item, example in zip(encoded, examples, strict=True)
            if example.kind != "text"
        ]
        scores = []
        for start in range(0, len(prompts), self.batch_size):
            chunk = prompts[start : start + self.batch_size]
            answers = self._generate(model, [ids for ids, _ref in chunk])
            scores += [
                token_f1(answer, ref) for answer, (_ids, ref) in zip(answers, chunk, strict=True)
            ]
        return _mean(scores) if scores else 0.0

    def _generate(self, model: Any, prompts: Sequence[list[int]]) -> list[str]:
        width = max(len(ids) for ids in prompts)
        ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)  # [B, T] left pad
        mask = torch.zeros((len(prompts), width), dtype=torch.long)  # [B, T]
        for row, prompt in enumerate(prompts):
            ids[row, width - len(prompt) :] = torch.tensor(prompt, dtype=torch.long)
            mask[row, width - len(prompt) :] = 1
        output = model.generate(
            input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
            max_new_tokens=MATCH_TOKENS, do_sample=False, pad_token_id=self.pad_id,
        )  # fmt: skip
        return [
            str(self.tokenizer.decode(row[width:], skip_special_tokens=True))
            for row in output.tolist()
        ]


def _answer_start(item: Encoded) -> int:
    return next((i for i, label in enumerate(item.labels) if label != IGNORE), len(item.labels))


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def token_f1(prediction: str, reference: str) -> float:
    """SQuAD-style F1 of lower-cased word tokens (1.0 when both are empty)."""
    predicted, expected = _words(prediction), _words(reference)
    if not predicted or not expected:
        return float(predicted == expected)
    common = sum((Counter(predicted) & Counter(expected)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(expected)
    return 2 * precision * recall / (precision + recall)


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def macro_f1(truth: Sequence[int], predicted: Sequence[int], classes: int) -> float:
    """Unweighted mean over classes present in truth or predictions of per-class F1."""
    present = sorted(set(truth) | set(predicted))
    scores = []
    for label in present:
        tp = sum(1 for t, p in zip(truth, predicted, strict=True) if t == p == label)
        fp = sum(1 for t, p in zip(truth, predicted, strict=True) if p == label != t)
        fn = sum(1 for t, p in zip(truth, predicted, strict=True) if t == label != p)
        scores.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return _mean(scores) if scores and classes else 0.0


@cache
def _probe_texts() -> tuple[str, ...]:
    texts = []
    for name in _PROBE_MODULES:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
            continue
        source = Path(spec.origin).read_text(encoding="utf-8")
        texts += _prose_paragraphs(ast.get_docstring(ast.parse(source)) or "")
    if len(texts) < 4:
        raise TrainingError(f"only {len(texts)} probe paragraphs found in {_PROBE_MODULES}")
    return tuple(texts)


def _prose_paragraphs(doc: str) -> list[str]:
    """Paragraphs of plain English: no indented or bulleted lines, no code, mostly letters."""
    found = []
    for paragraph in re.split(r"\n\s*\n", doc):
        lines = paragraph.splitlines()
        if any(line.startswith((" ", "\t", "*", "-")) for line in lines):
            continue
        if any(marker in paragraph for marker in (">>>", "--", "==")):
            continue
        text = re.sub(r":\w+:`([^`]*)`", r"\1", " ".join(line.strip() for line in lines))
        letters = sum(ch.isalpha() or ch.isspace() for ch in text) / max(len(text), 1)
        if len(text) >= 200 and letters > 0.9:
            found.append(text[:_PROBE_MAX_CHARS])
    return found


def general_probe_texts() -> list[str]:
    """Fixed English paragraphs from Python standard-library module docstrings (read from the
    source files, so `-OO` does not matter); the same list on every call of one Python."""
    return list(_probe_texts())
