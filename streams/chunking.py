"""Token-aware chunking of cleaned text with overlap, cutting at natural boundaries (pure).

The embedder's fast Hugging Face tokenizer is passed in; its offsets map tokens back to
characters, so every chunk is an exact slice of the input (``text[start:end] == chunk.text``)
and together the chunks cover every non-space character. Inside each window the cut prefers,
in order: a blank line, a line break, a sentence end (``. ! ? ; 。！？；…``), a clause mark
(``, : ，、：``), a word boundary, and only then the middle of a word.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from lorafeed.textsplit import is_cjk

_SENTENCE_END = frozenset(".!?;。！？；…")
_CLAUSE_MARK = frozenset(",:，、：")
_MIN_FILL = 0.5  # a boundary-seeking cut keeps at least this share of the window


class OffsetTokenizer(Protocol):
    """A fast Hugging Face tokenizer (``PreTrainedTokenizerFast``) or anything alike."""

    def __call__(self, text: str, **kwargs: Any) -> Any: ...

    def num_special_tokens_to_add(self, pair: bool = False) -> int: ...


@dataclass(frozen=True)
class ChunkConfig:
    """Knobs of chunking.

    max_tokens: tokens the embedder sees per chunk, its special tokens included (default 200).
    overlap_tokens: tokens repeated from the end of a chunk at the start of the next
        (default 32); must be below max_tokens.
    model_max_tokens: the embedder's sequence limit that max_tokens may not exceed
        (default 256, all-MiniLM-L6-v2's max_seq_length).
    max_chars: hard cap on a chunk's length in characters (default 2000), so that one giant
        token (BERT maps any word over 100 characters to a single [UNK]) cannot make a chunk
        too long to store; such a token is cut into pieces by characters.
    """

    max_tokens: int = 200
    overlap_tokens: int = 32
    model_max_tokens: int = 256
    max_chars: int = 2000

    def __post_init__(self) -> None:
        if self.model_max_tokens < 8:
            raise ValueError(f"model_max_tokens must be >= 8, got {self.model_max_tokens!r}")
        if not 8 <= self.max_tokens <= self.model_max_tokens:
            raise ValueError(
                f"max_tokens must be in [8, model_max_tokens={self.model_max_tokens}], "
                f"got {self.max_tokens!r}"
            )
        if not 0 <= self.overlap_tokens < self.max_tokens:
            raise ValueError(
                f"overlap_tokens must be in [0, max_tokens={self.max_tokens}), "
                f"got {self.overlap_tokens!r}"
            )
        if self.max_chars < 16:
            raise ValueError(f"max_chars must be >= 16, got {self.max_chars!r}")


@dataclass(frozen=True)
class Chunk:
    """One chunk: ``text == source[start_char:end_char]``; ``token_count`` excludes the
    special tokens (the chunker keeps ``token_count + specials <= max_tokens``)."""

    index: int
    text: str
    start_char: int
    end_char: int
    token_count: int


@dataclass(frozen=True)
class _Unit:
    """A token (or tokens sharing characters, or a piece of a giant token) in the text."""

    start: int
    end: int
    tokens: int


def chunk_text(text: str, tokenizer: OffsetTokenizer, config: ChunkConfig) -> list[Chunk]:
    """Split ``text`` into overlapping chunks of at most ``config.max_tokens`` tokens.

    Deterministic; blank text gives ``[]``. Each chunk is re-tokenized on its own and
    shortened if the count drifted past the budget (tokenizers may split a slice
    differently from the same characters inside the whole text).
    """
    if not text.strip():
        return []
    budget = config.max_tokens - tokenizer.num_special_tokens_to_add(pair=False)
    if budget <= config.overlap_tokens:
        raise ValueError(
            f"max_tokens={config.max_tokens} leaves {budget} tokens after special tokens, "
            f"not more than overlap_tokens={config.overlap_tokens}"
        )

    def count(piece: str) -> int:
        return _count_tokens(tokenizer, piece)

    units = _units(text, tokenizer, config.max_chars, budget, count)
    first = len(text) - len(text.lstrip())
    chunks: list[Chunk] = []
    i = 0
    while True:
        start = first if i == 0 else units[i].start
        k = _window_end(text, units, i, start, budget, config.max_chars)
        k, end, tokens = _fit(text, units, i, k, start, budget, count)
        chunks.append(Chunk(len(chunks), text[start:end], start, end, tokens))
        if k >= len(units):
            return chunks
        i = _next_start(text, units, i, k, config.overlap_tokens)


def _count_tokens(tokenizer: OffsetTokenizer, text: str) -> int:
    encoding = tokenizer(text, add_special_tokens=False, verbose=False)
    return len(encoding["input_ids"])


def _units(
    text: str,
    tokenizer: OffsetTokenizer,
    max_chars: int,
    budget: int,
    count: Callable[[str], int],
) -> list[_Unit]:
    """Token spans of ``text``, overlapping spans merged, giant tokens cut into pieces."""
    encoding = tokenizer(
        text, add_special_tokens=False, return_offsets_mapping=True, verbose=False
    )
    units: list[_Unit] = []
    for start, end in encoding["offset_mapping"]:
        if end <= start:
            continue
        if units and start < units[-1].end:
            last = units[-1]
            units[-1] = _Unit(last.start, max(last.end, end), last.tokens + 1)
        else:
            units.append(_Unit(start, end, 1))
    pieces: list[_Unit] = []
    for unit in _with_dropped_text(text, units):
        if unit.end - unit.start <= max_chars:
            pieces.append(unit)
        else:
            pieces.extend(_split_giant(text, unit, max_chars, budget, count))
    return pieces


def _with_dropped_text(text: str, units: list[_Unit]) -> list[_Unit]:
    """`units` plus, as units of no tokens, the non-space text the tokenizer dropped before,
    between and after them (control characters, combining marks its normalizer strips): every
    character then belongs to a unit, so `max_chars` can cut it (a 1000-mark "Z" glued to one
    token made a 1001-character chunk)."""
    covered: list[_Unit] = []
    position = 0
    for unit in [*units, None]:
        gap_end = len(text) if unit is None else unit.start
        gap = text[position:gap_end]
        if gap.strip():
            start = position + len(gap) - len(gap.lstrip())
            covered.append(_Unit(start, position + len(gap.rstrip()), 0))
        if unit is not None:
            covered.append(unit)
            position = unit.end
    return covered


def _split_giant(
    text: str, unit: _Unit, max_chars: int, budget: int, count: Callable[[str], int]
) -> list[_Unit]:
    """Cut an over-long unit into character pieces that each fit the token budget alone."""
    size = max_chars
    while True:
        bounds = range(unit.start, unit.end, size)
        pieces = [_Unit(s, min(s + size, unit.end), 0) for s in bounds]
        counted = [_Unit(p.start, p.end, count(text[p.start : p.end])) for p in pieces]
        if all(p.tokens <= budget for p in counted) or size == 1:
            return counted
        size = max(1, size // 2)


def _chunk_end(text: str, units: list[_Unit], start: int, k: int) -> int:
    """End of a chunk made of units before index ``k``: up to the next unit, minus spaces."""
    end = units[k].start if k < len(units) else len(text)
    while end > start and text[end - 1].isspace():
        end -= 1
    return end


def _window_end(
    text: str, units: list[_Unit], i: int, start: int, budget: int, max_chars: int
) -> int:
    """Index after the last unit of the chunk starting at unit ``i``, boundary-aware."""
    j, tokens = i, 0
    while j < len(units) and (j == i or tokens + units[j].tokens <= budget):
        tokens += units[j].tokens
        j += 1
    while j > i + 1 and _chunk_end(text, units, start, j) - start > max_chars:
        j -= 1
    if j >= len(units):
        return j
    lowest = i + max(1, int((j - i) * _MIN_FILL))
    best_k, best_rank = j, _boundary_rank(text, units, j)
    for k in range(j - 1, lowest - 1, -1):
        rank = _boundary_rank(text, units, k)
        if rank > best_rank:
            best_k, best_rank = k, rank
    return best_k


def _boundary_rank(text: str, units: list[_Unit], k: int) -> int:
    """How good a cut between units ``k-1`` and ``k`` is: 5 blank line ... 0 mid-word."""
    gap = text[units[k - 1].end : units[k].start]
    last = text[units[k - 1].end - 1]
    following = text[units[k].start]
    if gap.count("\n") >= 2:
        return 5
    if "\n" in gap:
        return 4
    if last in _SENTENCE_END and (gap or last != "."):
        return 3
    if last in _CLAUSE_MARK:
        return 2
    if gap or is_cjk(last) or is_cjk(following) or not last.isalnum():
        return 1
    return 0


def _fit(
    text: str,
    units: list[_Unit],
    i: int,
    k: int,
    start: int,
    budget: int,
    count: Callable[[str], int],
) -> tuple[int, int, int]:
    """Shrink the chunk ``units[i:k]`` until its text re-tokenizes within the budget."""
    while True:
        end = _chunk_end(text, units, start, k)
        tokens = count(text[start:end])
        if tokens <= budget or k == i + 1:
            return k, end, tokens
        k -= 1


def _next_start(text: str, units: list[_Unit], i: int, k: int, overlap: int) -> int:
    """First unit of the next chunk: up to ``overlap`` tokens back from ``k``, starting at
    the best boundary found there (a sentence start over a mere word start)."""
    s, tokens = k, 0
    while s > i + 1 and tokens + units[s - 1].tokens <= overlap:
        s -= 1
        tokens += units[s].tokens
    best, best_rank = k, 0
    for candidate in range(k - 1, s - 1, -1):
        rank = _boundary_rank(text, units, candidate)
        if rank >= best_rank:
            best, best_rank = candidate, rank
    return best
