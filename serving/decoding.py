"""Token-by-token text streaming for generation: turns generated ids into text pieces that are
safe to send (no half UTF-8 character, no prefix of a stop string) and ends at a stop string.

Pure bookkeeping over a ``decode(ids) -> str`` callable; the model loop lives in the engine.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

_REPLACEMENT = "\ufffd"  # what a decoder shows for an incomplete multi-byte character


@dataclass
class StreamDecoder:
    """Feed token ids with `push`; each call returns the new text that may be sent now.

    Text that could still become a stop string, or ends in an incomplete character, is held
    back until the next token decides it; `flush` returns what is held once generation ends.
    After a stop string is seen, `stopped` is True and the stop string itself is never sent.
    """

    decode: Callable[[Sequence[int]], str]
    stop: Sequence[str] = ()
    ids: list[int] = field(default_factory=list)
    sent: int = 0  # characters of the decoded text already returned
    stopped: bool = False

    def __post_init__(self) -> None:
        self.stop = [s for s in self.stop if s]

    def push(self, token_id: int) -> str:
        """The text newly safe to send after appending ``token_id``."""
        if self.stopped:
            return ""
        self.ids.append(token_id)
        text = self.decode(self.ids)
        cut = self._stop_at(text)
        if cut is not None:
            self.stopped = True
            return self._take(text, cut)
        return self._take(text, len(text) - self._held(text))

    def flush(self) -> str:
        """The held-back text, once no more tokens will come (nothing after a stop)."""
        if self.stopped:
            return ""
        text = self.decode(self.ids).rstrip(_REPLACEMENT)
        return self._take(text, len(text))

    @property
    def text(self) -> str:
        """Everything sent so far is ``decode(ids)[:sent]``; this is the full decoded text."""
        return self.decode(self.ids)

    def _take(self, text: str, end: int) -> str:
        end = max(end, self.sent)
        piece = text[self.sent : end]
        self.sent = end
        return piece

    def _stop_at(self, text: str) -> int | None:
        """Index of the earliest stop string in the part not yet sent (plus an overlap)."""
        if not self.stop:
            return None
        window = max(len(s) for s in self.stop) - 1
        start = max(self.sent - window, 0)
        found = [i for s in self.stop if (i := text.find(s, start)) >= 0]
        return min(found) if found else None

    def _held(self, text: str) -> int:
        """How many trailing characters must wait: a partial character or a stop prefix."""
        trailing = len(text) - len(text.rstrip(_REPLACEMENT))
        if trailing:
            return trailing
        longest = 0
        for s in self.stop:
            for size in range(min(len(s) - 1, len(text)), longest, -1):
                if text.endswith(s[:size]):
                    longest = size
                    break
        return longest
