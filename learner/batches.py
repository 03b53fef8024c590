"""Examples to tensors: chat examples with assistant-only labels (grounded in the passages they
were served with, laid out as serving lays them out), plain text, labelled inputs, preference
pairs, and the seeded plan that mixes new examples with replayed ones per batch.

Called by `learner.update` (training, Fisher) and `learner.evaluation` (scoring). Untrusted text
never becomes a special token: tokenizer markers inside it are broken up before templating.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import torch

from learner.errors import TrainingError
from learner.ewc import Batch
from learner.examples import Example
from lorafeed.grounding import (
    PASSAGE_TOKENS,
    grounded_turns,
    passage_line,
    shortened,
    truncate_tokens,
)

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from schemas.tasks import TaskConfig

IGNORE: Final = -100  # label of tokens that carry no loss
_JOINER: Final = "\u200d"  # zero-width joiner: invisible, breaks the marker's exact match
GENERATION_KINDS: Final = frozenset({"sft", "text"})
NO_PASSAGES: Final[Mapping[str, str]] = {}


@dataclass(frozen=True)
class Encoded:
    """One tokenized example: `labels` align with `input_ids` (IGNORE where no loss);
    `label` is the class index of a classification example (then `labels` is empty)."""

    input_ids: tuple[int, ...]
    labels: tuple[int, ...] = ()
    label: int | None = None

    @property
    def trained_tokens(self) -> int:
        return sum(1 for value in self.labels if value != IGNORE)


def neutralize(tokenizer: PreTrainedTokenizerBase, text: str) -> str:
    """`text` with every special/added token string broken by a zero-width joiner."""
    markers = {*tokenizer.all_special_tokens, *tokenizer.get_added_vocab()}
    for marker in sorted((m for m in markers if len(m) > 1), key=len, reverse=True):
        if marker in text:
            text = text.replace(marker, marker[0] + _JOINER + marker[1:])
    return text


def _render(tokenizer: PreTrainedTokenizerBase, turns: Sequence[tuple[str, str]], gen: bool) -> str:
    messages = [{"role": role, "content": content} for role, content in turns]
    text: Any = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen)
    return str(text)


def _ids(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def chat_parts(
    tokenizer: PreTrainedTokenizerBase, prompt: Sequence[tuple[str, str]], answer: str
) -> tuple[list[int], list[int]]:
    """Token ids of the templated prompt (with the generation prompt) and of the answer turn.

    The answer part is what the template appends after the generation prompt (answer text and
    end-of-turn marker), tokenized on its own as the model produces it when generating.
    """
    turns = [(role, neutralize(tokenizer, content)) for role, content in prompt]
    reply = neutralize(tokenizer, answer)
    prompt_text = _render(tokenizer, turns, gen=True)
    full_text = _render(tokenizer, [*turns, ("assistant", reply)], gen=False)
    if full_text.startswith(prompt_text):
        return _ids(tokenizer, prompt_text), _ids(tokenizer, full_text[len(prompt_text) :])
    eos = tokenizer.eos_token or ""
    return _ids(tokenizer, prompt_text), _ids(tokenizer, reply + eos)


def encode_chat(
    tokenizer: PreTrainedTokenizerBase,
    prompt: Sequence[tuple[str, str]],
    answer: str,
    max_len: int,
    passages: Sequence[tuple[str, str]] = (),
) -> Encoded:
    """Prompt (grounded in `passages`, (id, text) best first) + answer within `max_len` tokens
    with loss on the answer only.

    Each passage is cut to `PASSAGE_TOKENS`; over budget, passages go first (the lowest ranked,
    then the last one is shortened), then earlier turns, then the prompt loses tokens from its
    left; the answer keeps all its tokens unless it alone exceeds what is left after a quarter of
    `max_len`.
    """
    turns = list(prompt)
    kept = [(pid, truncate_tokens(text, PASSAGE_TOKENS, tokenizer)) for pid, text in passages]
    prompt_ids, answer_ids = _grounded_parts(tokenizer, turns, kept, answer)
    while kept and len(prompt_ids) + len(answer_ids) > max_len:
        overflow = len(prompt_ids) + len(answer_ids) - max_len
        kept = kept[:-1] if len(kept) > 1 else _shortened(tokenizer, kept[0], overflow)
        prompt_ids, answer_ids = _grounded_parts(tokenizer, turns, kept, answer)
    while len(prompt_ids) + len(answer_ids) > max_len and len(turns) > 1:
        turns = turns[1:]
        prompt_ids, answer_ids = chat_parts(tokenizer, turns, answer)
    if len(prompt_ids) + len(answer_ids) > max_len:
        floor = min(len(prompt_ids), max(1, max_len // 4))  # context the answer needs
        keep_prompt = max(min(len(prompt_ids), max_len - len(answer_ids)), floor)
        answer_ids = answer_ids[: max_len - keep_prompt]
        prompt_ids = prompt_ids[len(prompt_ids) - keep_prompt :]
    labels = [IGNORE] * len(prompt_ids) + answer_ids
    return Encoded(tuple(prompt_ids + answer_ids), tuple(labels))


def _grounded_parts(
    tokenizer: PreTrainedTokenizerBase,
    turns: Sequence[tuple[str, str]],
    passages: Sequence[tuple[str, str]],
    answer: str,
) -> tuple[list[int], list[int]]:
    lines = [passage_line(pid, text) for pid, text in passages]
    return chat_parts(tokenizer, grounded_turns(turns, lines), answer)


def _shortened(
    tokenizer: PreTrainedTokenizerBase, passage: tuple[str, str], overflow: int
) -> list[tuple[str, str]]:
    pid, text = passage
    shorter = shortened(text, overflow, tokenizer)
    return [(pid, shorter)] if shorter else []


def encode_text(tokenizer: PreTrainedTokenizerBase, text: str, max_len: int) -> Encoded:
    """A document for plain language-model loss on every token (its first `max_len` tokens)."""
    ids = _ids(tokenizer, neutralize(tokenizer, text))[:max_len]
    return Encoded(tuple(ids), tuple(ids))


def encode_label(
    tokenizer: PreTrainedTokenizerBase, text: str, label: int, max_len: int
) -> Encoded:
    """An input to classify (with the tokenizer's own special tokens), cut to `max_len`."""
    ids = tokenizer(text, truncation=True, max_length=max_len)["input_ids"]
    return Encoded(tuple(int(i) for i in ids), (), label)


def encode_example(
    task: TaskConfig,
    tokenizer: PreTrainedTokenizerBase,
    example: Example,
    passages: Mapping[str, str] = NO_PASSAGES,
) -> Encoded:
    """The training encoding of an example of `task` (sft, text, or label by kind); chat
    examples are grounded in those of their passages `passages` (id -> text) holds."""
    if task.kind == "classification":
        labels = list(task.labels or ())
        if example.kind != "label" or example.label not in labels:
            raise TrainingError(
                f"example {example.example_id!r} ({example.kind}, label {example.label!r}) "
                f"is not a label example of {task.name!r} with labels {labels}"
            )
        return encode_label(tokenizer, example.text, labels.index(example.label), task.max_seq_len)
    if example.kind == "text":
        return encode_text(tokenizer, example.text, task.max_seq_len)
    if example.kind in ("sft", "preference"):  # a preference's chosen answer is a good answer
        grounding = passages_of(example, passages)
        return encode_chat(tokenizer, example.prompt, example.text, task.max_seq_len, grounding)
    raise TrainingError(
        f"example {example.example_id!r} of kind {example.kind!r} cannot train {task.name!r}"
    )


def passages_of(example: Example, texts: Mapping[str, str]) -> list[tuple[str, str]]:
    """(id, text) of the example's passages that `texts` holds, in the example's order (a
    passage deleted since it was served is left out)."""
    return [(pid, texts[pid]) for pid in example.passages if pid in texts]


def collate(encoded: Sequence[Encoded], pad_id: int, *, attention_mask: bool = True) -> Batch:
    """Right-padded tensors: input_ids [B, T], attention_mask [B, T] (unless omitted, e.g. for
    vmap), and labels [B, T] (IGNORE on padding) or [B] class indices for classification."""
    if not encoded:
        raise TrainingError("cannot collate an empty batch")
    width = max(len(item.input_ids) for item in encoded)
    ids = torch.full((len(encoded), width), pad_id, dtype=torch.long)  # [B, T]
    mask = torch.zeros((len(encoded), width), dtype=torch.long)  # [B, T]
    token_labels = torch.full((len(encoded), width), IGNORE, dtype=torch.long)  # [B, T]
    for row, item in enumerate(encoded):
        size = len(item.input_ids)
        ids[row, :size] = torch.tensor(item.input_ids, dtype=torch.long)
        mask[row, :size] = 1
        if item.labels:
            token_labels[row, :size] = torch.tensor(item.labels, dtype=torch.long)
    batch = {"input_ids": ids}
    if attention_mask:
        batch["attention_mask"] = mask
    classes = [item.label for item in encoded]
    if all(label is not None for label in classes):
        batch["labels"] = torch.tensor(classes, dtype=torch.long)  # [B]
    elif any(label is not None for label in classes):
        raise TrainingError("a batch mixes classification and token-level examples")
    else:
        batch["labels"] = token_labels
    return batch


def pad_id_of(tokenizer: PreTrainedTokenizerBase) -> int:
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if not isinstance(pad, int):
        raise TrainingError(f"tokenizer {type(tokenizer).__name__} has no pad or eos token id")
    return pad


# --- preference pairs --------------------------------------------------------------------------


def encode_pair(
    tokenizer: PreTrainedTokenizerBase,
    example: Example,
    max_len: int,
    passages: Mapping[str, str] = NO_PASSAGES,
) -> tuple[Encoded, Encoded]:
    """(chosen, rejected) encodings of a preference example, each with answer-only labels."""
    if example.kind != "preference" or example.rejected is None:
        raise TrainingError(f"example {example.example_id!r} ({example.kind}) is no preference")
    grounding = passages_of(example, passages)
    chosen = encode_chat(tokenizer, example.prompt, example.text, max_len, grounding)
    rejected = encode_chat(tokenizer, example.prompt, example.rejected, max_len, grounding)
    return chosen, rejected


def collate_pairs(pairs: Sequence[tuple[Encoded, Encoded]], pad_id: int) -> Batch:
    """chosen_* and rejected_* input_ids / attention_mask / labels, each [B, T_side]."""
    batch: dict[str, torch.Tensor] = {}
    for side, index in (("chosen", 0), ("rejected", 1)):
        part = collate([pair[index] for pair in pairs], pad_id)
        batch |= {f"{side}_{key}": value for key, value in part.items()}
    return batch


# --- batch plan --------------------------------------------------------------------------------


def plan_batches(
    train: Sequence[Example],
    replay: Sequence[Example],
    *,
    batch_size: int,
    ratio: float,
    epochs: int,
    max_steps: int,
    seed: int,
) -> list[list[Example]]:
    """The examples of each step: `epochs` seeded passes over `train`, each batch topped up with
    round(batch_size * ratio) replayed examples drawn in a seeded cycle; at most `max_steps`."""
    if batch_size < 1 or epochs < 1 or max_steps < 1 or not 0.0 <= ratio < 1.0:
        raise TrainingError(
            f"bad batch plan: batch_size={batch_size} epochs={epochs} "
            f"max_steps={max_steps} ratio={ratio}"
        )
    rng = random.Random(seed)
    replayed = batch_size - fresh_per_batch(batch_size, ratio) if replay else 0
    new_per_batch = batch_size - replayed if train else 0
    if new_per_batch == 0:
        return []
    replay_stream = _cycle_shuffled(list(replay), rng) if replayed else iter(())
    plan: list[list[Example]] = []
    for _epoch in range(epochs):
        order = list(train)
        rng.shuffle(order)
        for start in range(0, len(order), new_per_batch):
            fresh = order[start : start + new_per_batch]
            plan.append(fresh + list(itertools.islice(replay_stream, replayed)))
            if len(plan) == max_steps:
                return plan
    return plan


def fresh_per_batch(batch_size: int, ratio: float) -> int:
    """New examples in each planned batch when replay data exists (the rest is replayed); at
    least one, so a high ratio on a small batch still makes progress."""
    return max(1, batch_size - round(batch_size * ratio))


def _cycle_shuffled(items: list[Example], rng: random.Random) -> Iterator[Example]:
    while True:
        order = list(items)
        rng.shuffle(order)
        yield from order
