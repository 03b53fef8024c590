"""Prompt builder for retrieval-augmented chat: renders the conversation with the model's chat
template and quotes retrieved passages as data, with their ids, in a system message.

Contract: text from passages or from the caller's messages can never become a special or added
token. Every untrusted string has the tokenizer's marker strings escaped before templating, and
after tokenizing, every token overlapping an untrusted span is checked (`PromptInjectionError`
if one ever is special). Passages are truncated and dropped, lowest ranked first, to fit
`PromptConfig.max_prompt_tokens`; the conversation itself is never cut (`PromptTooLong`).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lorafeed.grounding import (
    PASSAGE_TOKENS,
    grounded_turns,
    passage_line,
    shortened,
    truncate_tokens,
)

if TYPE_CHECKING:
    from transformers.tokenization_utils_base import PreTrainedTokenizerBase

    from lorafeed.retrieval import Hit

ROLES = frozenset({"system", "user", "assistant"})
# Inserted after the first character of a marker: invisible, and it breaks the exact match the
# tokenizer needs to emit the marker's id.
_JOINER = "\u200d"


class PromptError(ValueError):
    """Base error of the prompt builder."""


class PromptTooLong(PromptError):
    """The conversation alone does not fit in ``max_prompt_tokens``."""


class PromptInjectionError(PromptError):
    """Untrusted text would have produced a special or added token id."""


@dataclass(frozen=True)
class PromptConfig:
    """Knobs of the prompt builder.

    max_passages: passages kept at most, highest ranked first (default 3).
    passage_tokens: each passage is cut to this many tokens (default 128).
    max_prompt_tokens: the whole templated prompt, generation prompt included (default 384).
    """

    max_passages: int = 3
    passage_tokens: int = PASSAGE_TOKENS
    max_prompt_tokens: int = 384

    def __post_init__(self) -> None:
        if self.max_passages < 0:
            raise ValueError(f"max_passages must be >= 0, got {self.max_passages!r}")
        if self.passage_tokens < 1:
            raise ValueError(f"passage_tokens must be >= 1, got {self.passage_tokens!r}")
        if self.max_prompt_tokens < 1:
            raise ValueError(f"max_prompt_tokens must be >= 1, got {self.max_prompt_tokens!r}")


@dataclass(frozen=True)
class Passage:
    """A retrieved passage: ``id`` is what the answer cites (the chunk pk, e.g. kb-1#00002)."""

    id: str
    text: str


@dataclass(frozen=True)
class BuiltPrompt:
    """The prompt to generate from: ``input_ids`` tokenize ``text`` (special tokens parsed);
    ``cited_ids`` are the ids of the passages it contains, in rank order."""

    input_ids: list[int]
    cited_ids: list[str]
    text: str


@dataclass(frozen=True)
class _Span:
    start: int
    end: int
    label: str


def passages_from_hits(hits: Iterable[Hit]) -> list[Passage]:
    """Retrieval hits, best first, as passages cited by their chunk pk."""
    return [Passage(id=hit.pk, text=hit.text) for hit in hits]


def forbidden_ids(tokenizer: PreTrainedTokenizerBase) -> frozenset[int]:
    """Ids untrusted text must never produce: every special and every added token."""
    return frozenset(tokenizer.all_special_ids) | frozenset(tokenizer.added_tokens_decoder)


def neutralize(text: str, tokenizer: PreTrainedTokenizerBase) -> str:
    """``text`` with every special/added token string broken by a zero-width joiner."""
    markers = {str(t) for t in tokenizer.all_special_tokens}
    markers |= {token.content for token in tokenizer.added_tokens_decoder.values()}
    ordered = sorted((m for m in markers if len(m) > 1), key=len, reverse=True)
    for _ in range(8):  # a joiner cannot create a new marker, but re-check rather than assume
        if not any(marker in text for marker in ordered):
            return text
        for marker in ordered:
            text = text.replace(marker, marker[0] + _JOINER + marker[1:])
    raise PromptInjectionError(f"could not neutralize markers in {text[:80]!r}")


def build_prompt(
    messages: Sequence[Mapping[str, str]],
    passages: Sequence[Passage],
    tokenizer: PreTrainedTokenizerBase,
    config: PromptConfig | None = None,
) -> BuiltPrompt:
    """The templated prompt for ``messages`` (OpenAI-style role/content dicts) grounded on
    ``passages`` (best first), with a generation prompt, fitted to ``max_prompt_tokens``."""
    config = config or PromptConfig()
    _check_messages(messages)
    bare = _render(messages, [], tokenizer)
    if len(bare.input_ids) > config.max_prompt_tokens:
        raise PromptTooLong(
            f"the conversation alone is {len(bare.input_ids)} tokens, "
            f"max_prompt_tokens is {config.max_prompt_tokens}"
        )
    kept = [
        Passage(p.id, truncate_tokens(p.text, config.passage_tokens, tokenizer))
        for p in passages[: config.max_passages]
    ]
    while kept:
        built = _render(messages, kept, tokenizer)
        overflow = len(built.input_ids) - config.max_prompt_tokens
        if overflow <= 0:
            return built
        if len(kept) > 1:
            kept.pop()  # lowest ranked goes first
            continue
        kept = _shorten(kept[0], overflow, tokenizer)
    return bare


def _shorten(
    passage: Passage, overflow: int, tokenizer: PreTrainedTokenizerBase
) -> list[Passage]:
    """``passage`` cut by at least ``overflow`` tokens, or nothing when no text would be left."""
    shorter = shortened(passage.text, overflow, tokenizer)
    return [Passage(passage.id, shorter)] if shorter else []


def _check_messages(messages: Sequence[Mapping[str, str]]) -> None:
    if not messages:
        raise PromptError("messages is empty; at least one user turn is needed")
    for index, message in enumerate(messages):
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            raise PromptError(f"message {index} has role {role!r}; allowed: {sorted(ROLES)}")
        if not isinstance(content, str):
            raise PromptError(f"message {index} content must be a string, got {content!r}")


def _render(
    messages: Sequence[Mapping[str, str]],
    passages: Sequence[Passage],
    tokenizer: PreTrainedTokenizerBase,
) -> BuiltPrompt:
    """Templates with a placeholder per untrusted string, substitutes the neutralized strings,
    tokenizes once and verifies every token overlapping an untrusted span."""
    slots: dict[str, tuple[str, str]] = {}  # placeholder -> (label, neutralized text)

    def slot(label: str, text: str) -> str:
        key = f"@@slot-{uuid.uuid4().hex}@@"
        slots[key] = (label, text)
        return key

    templated = [
        {"role": m["role"], "content": slot(f"message {i}", neutralize(m["content"], tokenizer))}
        for i, m in enumerate(messages)
    ]
    if passages:
        lines = [
            slot(f"passage {p.id!r}",
                 passage_line(neutralize(p.id, tokenizer), neutralize(p.text, tokenizer)))
            for p in passages
        ]
        turns = grounded_turns([(m["role"], m["content"]) for m in templated], lines)
        templated = [{"role": role, "content": content} for role, content in turns]
    skeleton = tokenizer.apply_chat_template(templated, tokenize=False, add_generation_prompt=True)
    if not isinstance(skeleton, str):
        raise PromptError(f"the chat template rendered {type(skeleton).__name__}, not text")
    text, spans = _substitute(skeleton, slots)
    encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    input_ids: list[int] = list(encoding["input_ids"])
    _verify(input_ids, encoding["offset_mapping"], spans, tokenizer)
    return BuiltPrompt(input_ids=input_ids, cited_ids=[p.id for p in passages], text=text)


def _substitute(skeleton: str, slots: Mapping[str, tuple[str, str]]) -> tuple[str, list[_Span]]:
    """``skeleton`` with each placeholder replaced, and the character span each one became."""
    found = []
    for key, (label, value) in slots.items():
        if skeleton.count(key) != 1:
            raise PromptError(f"the chat template rendered {label} {skeleton.count(key)} times")
        found.append((skeleton.index(key), key, label, value))
    parts: list[str] = []
    spans: list[_Span] = []
    cursor = length = 0
    for position, key, label, value in sorted(found):
        parts.append(skeleton[cursor:position])
        length += position - cursor
        spans.append(_Span(length, length + len(value), label))
        parts.append(value)
        length += len(value)
        cursor = position + len(key)
    parts.append(skeleton[cursor:])
    return "".join(parts), spans


def _verify(
    input_ids: Sequence[int],
    offsets: Sequence[tuple[int, int]],
    spans: Sequence[_Span],
    tokenizer: PreTrainedTokenizerBase,
) -> None:
    """Raises if a token overlapping an untrusted span is special or added."""
    forbidden = forbidden_ids(tokenizer)
    for token_id, (start, end) in zip(input_ids, offsets, strict=True):
        if token_id not in forbidden:
            continue
        for span in spans:
            if start < span.end and span.start < end:
                raise PromptInjectionError(
                    f"{span.label} would produce special token id {token_id} "
                    f"({tokenizer.convert_ids_to_tokens(token_id)!r}) at chars {start}-{end}"
                )
