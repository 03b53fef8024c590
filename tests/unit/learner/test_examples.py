"""Example validation, JSON round trip and the deterministic heldout split."""

from __future__ import annotations

import pytest

from learner.errors import InvalidExample
from learner.examples import Example, is_heldout

PROMPT = (("system", "be brief"), ("user", "What is 2+2?"))


def sft(**overrides: object) -> Example:
    fields: dict[str, object] = {
        "example_id": "fb:r1:sft:-",
        "task": "qa",
        "kind": "sft",
        "prompt": PROMPT,
        "text": "4",
        "request_id": "r1",
    }
    fields.update(overrides)
    return Example(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "example",
    [
        sft(),
        Example("rec:d1:0", "qa", "text", text="Some doc.", domain="wiki", record_id="d1"),
        Example("fb:r2:label:ann", "cls", "label", text="great", label="pos", agreement=0.75),
        sft(example_id="fb:r1:preference:-", kind="preference", text="4", rejected="5"),
        sft(example_id="fb:r1:negative:-", kind="negative", text="five"),
        sft(text='ünïcode ✓ "quoted"\nnewline'),
    ],
)
def test_json_round_trip_is_identity(example: Example) -> None:
    again = Example.from_json(example.to_json())
    assert again == example
    assert again.to_json() == example.to_json()


def test_to_json_is_key_sorted_and_compact() -> None:
    text = sft().to_json()
    assert text.startswith('{"agreement":null,"domain":"feedback","example_id":')
    assert ", " not in text


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"kind": "bogus"}, "'bogus'"),
        ({"example_id": ""}, "example_id is empty"),
        ({"task": ""}, "task is empty"),
        ({"text": ""}, "text is empty"),
        ({"kind": "label", "prompt": ()}, "label is required, got None"),
        ({"label": "pos"}, "label 'pos' only allowed"),
        ({"kind": "preference"}, "rejected is required"),
        ({"kind": "preference", "rejected": "4"}, "chosen equals rejected"),
        ({"rejected": "5"}, "rejected '5' only allowed"),
        ({"prompt": ()}, "prompt turns are required"),
        ({"prompt": (("user",),)}, "('user',)"),
        ({"agreement": 1.5}, "agreement 1.5"),
    ],
)
def test_invalid_examples_name_the_bad_value(overrides: dict[str, object], needle: str) -> None:
    with pytest.raises(InvalidExample) as caught:
        sft(**overrides)
    assert needle in str(caught.value)


@pytest.mark.parametrize(
    "text",
    ["not json", "[1, 2]", '{"example_id": "x", "task": "t", "kind": "text"}', '{"nope": 1}'],
)
def test_from_json_rejects_malformed_input(text: str) -> None:
    with pytest.raises(InvalidExample):
        Example.from_json(text)


def test_heldout_split_is_deterministic_and_near_the_percent() -> None:
    ids = [f"fb:req-{i}:sft:-" for i in range(4000)]
    chosen = [i for i in ids if is_heldout(i, 20)]
    assert chosen == [i for i in ids if is_heldout(i, 20)]
    assert 0.17 < len(chosen) / len(ids) < 0.23
    assert not any(is_heldout(i, 0) for i in ids)
    assert all(is_heldout(i, 100) for i in ids)


def test_heldout_split_is_monotone_in_percent() -> None:
    ids = [f"rec:doc:{i}" for i in range(500)]
    assert {i for i in ids if is_heldout(i, 10)} <= {i for i in ids if is_heldout(i, 30)}


def test_heldout_rejects_bad_percent() -> None:
    with pytest.raises(InvalidExample, match="101"):
        is_heldout("x", 101)
