"""One streamed generation: an async iterator of text pieces whose every decoding step is a
separate job on the engine's model-owner thread, so score batches and adapter swaps interleave
with long answers and each step runs on the generation's own adapter version and KV cache.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from serving.decoding import StreamDecoder
from serving.errors import InvalidRequest

if TYPE_CHECKING:
    import torch

T = TypeVar("T")
FinishReason = Literal["stop", "length", "cancelled"]
MAX_TEMPERATURE = 5.0

Runner = Callable[[Callable[[], T]], Awaitable[T]]
"""Runs a function on the model-owner thread and awaits its result."""
Forward = Callable[[Sequence[int], Any, "str | None"], "tuple[torch.Tensor, Any]"]
"""``forward(new_ids, cache, version) -> (logits of the last position (vocab,), cache)``."""


@dataclass(frozen=True)
class GenerationSettings:
    """max_tokens: new tokens at most; temperature 0 is greedy (deterministic); stop: strings
    that end the answer (never sent); seed: sampling seed when temperature > 0 (None: random)."""

    max_tokens: int
    temperature: float = 0.0
    stop: tuple[str, ...] = ()
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise InvalidRequest(f"max_tokens must be >= 1, got {self.max_tokens!r}")
        if not 0.0 <= self.temperature <= MAX_TEMPERATURE:
            raise InvalidRequest(
                f"temperature must be in [0, {MAX_TEMPERATURE}], got {self.temperature!r}"
            )


@dataclass(frozen=True)
class Completion:
    """A finished generation: its text, why it ended, token counts, and the version used."""

    text: str
    finish_reason: FinishReason
    prompt_tokens: int
    completion_tokens: int
    version: str | None


def pick_token(logits: torch.Tensor, temperature: float, generator: torch.Generator | None) -> int:
    """Greedy argmax at temperature 0, else a sample from softmax(logits / temperature)."""
    import torch

    if temperature == 0.0:
        return int(torch.argmax(logits).item())
    # Shift, and divide in float64: logits / a tiny temperature overflow to inf (softmax then
    # gives NaN) and a tiny temperature rounds to 0 in float32; shifted logits are <= 0, so a
    # tiny temperature tends to argmax as it should.
    shifted = logits.double() - logits.double().max()  # (vocab,)
    probabilities = torch.softmax(shifted / temperature, dim=-1)  # (vocab,)
    return int(torch.multinomial(probabilities, 1, generator=generator).item())


class Generation:
    """Text pieces of one answer, streamed; `finish_reason`, `completion_tokens` are set once
    iteration ends. Stop iterating early (or `aclose`) to cancel: the KV cache is dropped."""

    def __init__(
        self,
        *,
        run: Runner[str],
        forward: Forward,
        decode: Callable[[Sequence[int]], str],
        eos_ids: frozenset[int],
        prompt_ids: Sequence[int],
        settings: GenerationSettings,
        version: str | None,
    ) -> None:
        self.version = version
        self.prompt_tokens = len(prompt_ids)
        self.completion_tokens = 0
        self.finish_reason: FinishReason | None = None
        self._run = run
        self._forward = forward
        self._eos_ids = eos_ids
        self._settings = settings
        self._decoder = StreamDecoder(decode, settings.stop)
        self._next_ids: list[int] = list(prompt_ids)
        self._cache: Any = None
        self._generator: torch.Generator | None = None
        if settings.temperature > 0.0:
            import torch

            self._generator = torch.Generator()
            if settings.seed is None:
                self._generator.seed()
            else:
                self._generator.manual_seed(settings.seed)

    def __aiter__(self) -> Generation:
        return self

    async def __anext__(self) -> str:
        while self.finish_reason is None:
            piece = await self._run(self._step)
            if piece:
                return piece
        raise StopAsyncIteration

    async def aclose(self) -> None:
        """Stop generating and release the KV cache."""
        if self.finish_reason is None:
            self.finish_reason = "cancelled"
        self._cache = None

    async def complete(self) -> Completion:
        """Run to the end and return the whole answer."""
        pieces = [piece async for piece in self]
        assert self.finish_reason is not None  # set by the last step
        return Completion(
            text="".join(pieces),
            finish_reason=self.finish_reason,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            version=self.version,
        )

    def _step(self) -> str:
        """One forward pass and one token (on the model-owner thread); the text it releases."""
        if self.finish_reason is not None:  # cancelled while this step was queued
            return ""
        logits, self._cache = self._forward(self._next_ids, self._cache, self.version)
        token = pick_token(logits, self._settings.temperature, self._generator)
        if token in self._eos_ids:
            return self._finish("stop", self._decoder.flush())
        self.completion_tokens += 1
        piece = self._decoder.push(token)
        if self._decoder.stopped:
            return self._finish("stop", piece)
        if self.completion_tokens >= self._settings.max_tokens:
            return self._finish("length", piece + self._decoder.flush())
        self._next_ids = [token]
        return piece

    def _finish(self, reason: FinishReason, piece: str) -> str:
        self.finish_reason = reason
        self._cache = None
        return piece
