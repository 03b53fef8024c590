"""StreamDecoder: text pieces never split a character or leak a stop string, and add up to the
decoded text."""

from __future__ import annotations

from collections.abc import Sequence

from serving.decoding import StreamDecoder

# A toy vocabulary of byte strings, decoded the way byte-level BPE decoders do.
VOCAB = {1: b"Hel", 2: b"lo", 3: b" wor", 4: b"ld", 5: b"\xe2\x82", 6: b"\xac!", 7: b"EN", 8: b"D"}


def decode(ids: Sequence[int]) -> str:
    return b"".join(VOCAB[i] for i in ids).decode("utf-8", errors="replace")


def stream(ids: list[int], stop: Sequence[str] = ()) -> tuple[list[str], StreamDecoder]:
    decoder = StreamDecoder(decode, stop)
    pieces = [decoder.push(i) for i in ids]
    if not decoder.stopped:
        pieces.append(decoder.flush())
    return pieces, decoder


def test_pieces_add_up_to_the_text() -> None:
    pieces, decoder = stream([1, 2, 3, 4])
    assert pieces == ["Hel", "lo", " wor", "ld", ""]
    assert "".join(pieces) == decoder.text == "Hello world"


def test_a_split_multibyte_character_waits_for_its_second_half() -> None:
    pieces, _ = stream([1, 5, 6])
    assert pieces == ["Hel", "", "\u20ac!", ""]


def test_a_stop_string_ends_the_text_and_is_never_sent() -> None:
    pieces, decoder = stream([1, 2, 7, 8, 3], stop=["END"])
    assert decoder.stopped
    assert pieces == ["Hel", "lo", "", "", ""]  # "EN" was held; nothing after the stop
    assert decoder.push(4) == ""


def test_a_held_stop_prefix_is_released_when_it_does_not_complete() -> None:
    pieces, decoder = stream([1, 7, 2], stop=["END"])
    assert not decoder.stopped
    assert pieces == ["Hel", "", "ENlo", ""]


def test_a_stop_string_spanning_tokens_and_the_earliest_of_several() -> None:
    pieces, _ = stream([1, 2, 3, 4], stop=["o w", "rld"])
    assert "".join(pieces) == "Hell"


def test_held_text_is_flushed_at_the_end() -> None:
    pieces, _ = stream([1, 7], stop=["END"])
    assert pieces == ["Hel", "", "EN"]
