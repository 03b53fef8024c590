"""Chat examples train with the passages they were served with, laid out token for token as a
serving node lays them out, and over budget the passages give way before the conversation."""

from __future__ import annotations

import pytest
from transformers import PreTrainedTokenizerBase

from learner.batches import IGNORE, encode_chat, encode_example, encode_pair, passages_of
from learner.errors import InvalidExample
from learner.examples import Example
from lorafeed.grounding import INSTRUCTION, PASSAGE_TOKENS, grounded_turns, passage_line
from lorafeed.tiny_models import tiny_tokenizer
from schemas.tasks import TaskConfig
from serving.prompt import Passage, PromptConfig, build_prompt

GEN = TaskConfig(name="faq", kind="generation", base_model="tiny-llama", max_seq_len=512)
TURNS = [("system", "Be brief."), ("user", "How long do refunds take?")]
REFUND = ("kb-refund#00000", 'Refunds reach the card within "5 to 7" working days.\nAsk us.')
SHIPPING = ("kb-ship#00001", "Parcels ship on Mondays and Thursdays from the Leipzig depot.")


@pytest.fixture(scope="module")
def tok() -> PreTrainedTokenizerBase:
    return tiny_tokenizer()


def _prompt_ids(encoded_ids: tuple[int, ...], labels: tuple[int, ...]) -> list[int]:
    start = next(i for i, label in enumerate(labels) if label != IGNORE)
    return list(encoded_ids[:start])


@pytest.mark.parametrize("turns", [TURNS, TURNS[1:]], ids=["own system turn", "no system turn"])
def test_the_trained_prompt_is_the_served_prompt(
    tok: PreTrainedTokenizerBase, turns: list[tuple[str, str]]
) -> None:
    served = build_prompt(
        [{"role": role, "content": content} for role, content in turns],
        [Passage(*REFUND), Passage(*SHIPPING)],
        tok,
        PromptConfig(max_passages=3, max_prompt_tokens=4096),
    )
    encoded = encode_chat(tok, turns, "Five to seven days.", 4096, [REFUND, SHIPPING])
    assert _prompt_ids(encoded.input_ids, encoded.labels) == served.input_ids
    assert tok.decode([t for t in encoded.labels if t != IGNORE]).startswith("Five to seven days.")


def test_the_layout_quotes_each_passage_on_its_own_line() -> None:
    lines = [passage_line(*REFUND), passage_line(*SHIPPING)]
    assert (
        lines[0] == '[kb-refund#00000] "Refunds reach the card within \\"5 to 7\\" '
        'working days.\\nAsk us."'
    )
    assert grounded_turns(TURNS, lines) == [
        ("system", "Be brief.\n\n" + "\n".join([INSTRUCTION, *lines])),
        TURNS[1],
    ]
    assert grounded_turns(TURNS[1:], lines) == [("system", "\n".join([INSTRUCTION, *lines])),
                                                TURNS[1]]  # fmt: skip
    assert grounded_turns(TURNS, []) == TURNS


def test_passages_give_way_first_lowest_ranked_first(tok: PreTrainedTokenizerBase) -> None:
    answer = "Five to seven days."
    bare = encode_chat(tok, TURNS, answer, 4096)
    one = encode_chat(tok, TURNS, answer, 4096, [REFUND])
    both = encode_chat(tok, TURNS, answer, 4096, [REFUND, SHIPPING])
    assert len(bare.input_ids) < len(one.input_ids) < len(both.input_ids)
    # room for the first passage only: the second goes, the conversation stays whole
    assert encode_chat(tok, TURNS, answer, len(one.input_ids), [REFUND, SHIPPING]) == one
    # room for neither: no passage, and still every turn of the conversation
    assert encode_chat(tok, TURNS, answer, len(bare.input_ids), [REFUND, SHIPPING]) == bare
    # a little short of one whole passage: it is shortened, not dropped
    cut = encode_chat(tok, TURNS, answer, len(one.input_ids) - 3, [REFUND, SHIPPING])
    assert len(bare.input_ids) < len(cut.input_ids) <= len(one.input_ids) - 3
    assert "kb-refund#00000" in tok.decode(list(cut.input_ids))
    # only below the bare conversation do turns go
    assert len(encode_chat(tok, TURNS, answer, len(bare.input_ids) - 2, [REFUND]).input_ids) <= (
        len(bare.input_ids) - 2
    )


def test_a_long_passage_is_cut_to_the_served_length(tok: PreTrainedTokenizerBase) -> None:
    long = ("kb-long#00000", " ".join(f"word{n}" for n in range(2 * PASSAGE_TOKENS)))
    served = build_prompt([{"role": "user", "content": "Tell me."}], [Passage(*long)], tok,
                          PromptConfig(max_prompt_tokens=4096))  # fmt: skip
    encoded = encode_chat(tok, [("user", "Tell me.")], "Sure.", 4096, [long])
    assert _prompt_ids(encoded.input_ids, encoded.labels) == served.input_ids


def test_examples_take_the_passages_the_knowledge_base_still_has(
    tok: PreTrainedTokenizerBase,
) -> None:
    ex = Example("e1", "faq", "sft", prompt=tuple(TURNS), text="Five to seven days.",
                 passages=(SHIPPING[0], "kb-gone#00000", REFUND[0]))  # fmt: skip
    texts = dict([REFUND, SHIPPING])
    assert passages_of(ex, texts) == [SHIPPING, REFUND]  # served order, the deleted one left out
    grounded = encode_example(GEN, tok, ex, texts)
    assert grounded == encode_chat(tok, TURNS, ex.text, 512, [SHIPPING, REFUND])
    assert encode_example(GEN, tok, ex) == encode_chat(tok, TURNS, ex.text, 512)  # no lookup
    pref = Example("p1", "faq", "preference", prompt=tuple(TURNS), text="Five to seven days.",
                   rejected="A month.", passages=(REFUND[0],))  # fmt: skip
    chosen, rejected = encode_pair(tok, pref, 512, texts)
    assert chosen == encode_chat(tok, TURNS, pref.text, 512, [REFUND])
    assert rejected == encode_chat(tok, TURNS, "A month.", 512, [REFUND])


def test_passage_ids_round_trip_and_bad_ones_are_refused() -> None:
    ex = Example("e1", "faq", "sft", prompt=(("user", "q?"),), text="a", passages=("kb-1#00000",))
    assert Example.from_json(ex.to_json()) == ex
    bare = Example("e2", "faq", "sft", prompt=(("user", "q?"),), text="a")
    assert '"passages"' not in bare.to_json()  # the bytes stored before passages existed
    assert Example.from_json(bare.to_json()) == bare
    with pytest.raises(InvalidExample, match="passage ids must be non-empty strings"):
        Example("e3", "faq", "sft", prompt=(("user", "q?"),), text="a", passages=("",))
    with pytest.raises(InvalidExample, match="passages is a str"):
        Example.from_json(ex.to_json().replace('["kb-1#00000"]', '"kb-1#00000"'))
