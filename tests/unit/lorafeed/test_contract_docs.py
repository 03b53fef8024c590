"""docs/contracts.md is generated from schemas/ and the samples, and its examples decode."""

from __future__ import annotations

import re
from pathlib import Path

from lorafeed import contract_docs
from lorafeed.contract_docs import REGENERATE, ROLES, render
from schemas.codec import decode
from schemas.topics import TOPICS, Topic

ROOT = Path(__file__).resolve().parents[3]
COMMITTED = ROOT / "docs" / "contracts.md"
DRIFTED = (
    "docs/contracts.md drifted from schemas/ or lorafeed/samples.py; regenerate it with "
    f"`{REGENERATE}` (or `python -m lorafeed.contract_docs`) and commit the result"
)
SECTION = re.compile(r"^## `([a-z.]+)`$(.*?)(?=^## |\Z)", re.MULTILINE | re.DOTALL)
EXAMPLE = re.compile(r"^```json\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def test_committed_reference_matches_the_code() -> None:
    assert COMMITTED.is_file(), DRIFTED
    assert COMMITTED.read_text(encoding="utf-8") == render(), DRIFTED


def test_every_topic_has_roles_a_section_and_a_decodable_example() -> None:
    assert set(ROLES) == set(Topic)
    sections = {name: body for name, body in SECTION.findall(render())}
    assert set(sections) == {topic.value for topic in Topic}
    for topic in Topic:
        examples = EXAMPLE.findall(sections[topic.value])
        assert examples, f"{topic.value} has no example"
        for example in examples:
            decode(topic, example.encode("utf-8"))  # raises if the example is not valid


def test_every_value_type_is_described() -> None:
    text = render()
    for spec in TOPICS.values():
        for name in (cls.__name__ for cls in contract_docs._value_types(spec)):
            assert f"**{name}**" in text


def test_render_is_stable() -> None:
    assert render() == render()
