"""Gate pools: target = the batch's domains, retention = every other domain, probe frozen."""

from __future__ import annotations

from learner.examples import Example
from learner.pools import gate_pools


def _label(n: int, domain: str) -> Example:
    return Example(example_id=f"e{n}", task="t", kind="label", text=f"text {n}", label="a",
                   domain=domain)


def test_target_is_the_batch_domains_and_the_rest_is_retention() -> None:
    heldout = [_label(1, "cards"), _label(2, "loans"), _label(3, "cards"), _label(4, "wire")]
    pools = gate_pools(heldout, {"cards"}, classification=True, probe_size=2)
    assert [e.example_id for e in pools.target] == ["e1", "e3"]
    assert {d: [e.example_id for e in p] for d, p in pools.retention.items()} == {
        "loans": ["e2"], "wire": ["e4"]}
    assert [e.example_id for e in pools.probe] == ["e1", "e2"]


def test_without_held_out_data_in_the_batch_domains_the_whole_pool_is_the_target() -> None:
    heldout = [_label(1, "cards"), _label(2, "loans")]
    pools = gate_pools(heldout, {"new"})
    assert [e.example_id for e in pools.target] == ["e1", "e2"]
    assert pools.probe == []


def test_negative_examples_never_judge_and_pools_are_capped_to_the_newest() -> None:
    negative = Example(example_id="n", task="t", kind="negative", prompt=(("user", "q"),),
                       text="bad answer")
    heldout = [negative, *(_label(n, "cards") for n in range(10))]
    pools = gate_pools(heldout, {"cards"}, cap=3)
    assert [e.example_id for e in pools.target] == ["e7", "e8", "e9"]
