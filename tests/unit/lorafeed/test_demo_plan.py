"""The demo's planned scenario: transactions, questions, feedback and label noise, all seeded."""

from __future__ import annotations

from collections import Counter

import pytest

from lorafeed.corpus import generate_corpus
from lorafeed.demo_plan import (
    HOUSE_STYLE,
    Scenario,
    eval_transactions,
    feedback_actions,
    full,
    label_votes,
    plan_questions,
    quick,
    reference_answer,
    round_transactions,
)
from lorafeed.demo_transactions import LABEL_OF, balanced, make_transactions


def test_transactions_are_seeded_balanced_and_labelled_by_pattern() -> None:
    counts = balanced(10, ["gift_card"], ["everyday", "travel"])
    assert counts == {"gift_card": 5, "everyday": 3, "travel": 2}
    txns = make_transactions(counts, seed=3)
    assert txns == make_transactions(counts, seed=3)
    assert txns != make_transactions(counts, seed=4)
    assert Counter(t.pattern for t in txns) == counts
    assert all(t.label == LABEL_OF[t.pattern] for t in txns)
    assert len({t.txn_id for t in txns}) == 10
    gift = [t for t in txns if t.pattern == "gift_card"]
    assert all(t.fields["device"] == "new device" and t.fields["ip_country"] != "CN"
               for t in gift)


def test_legit_look_alikes_share_single_fraud_signals() -> None:
    txns = make_transactions({"travel": 60, "transfer": 60}, seed=1)
    travel = [t for t in txns if t.pattern == "travel"]
    assert any(t.fields["ip_country"] != "CN" for t in travel)
    assert any(t.fields["device"] == "new device" for t in txns if t.pattern == "transfer")


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: make_transactions({"phishing": 1}, seed=0), "unknown transaction pattern"),
        (lambda: make_transactions({"travel": -1}, seed=0), "must be >= 0, got -1"),
        (lambda: balanced(1, ["gift_card"], ["travel"]), "n=1"),
    ],
)
def test_bad_transaction_requests_name_the_value(call: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()  # type: ignore[operator]


def test_rounds_and_eval_slices_never_overlap() -> None:
    scenario = full()
    rounds = [round_transactions(r, i, scenario.seed) for i, r in enumerate(scenario.fraud_rounds)]
    evals = [eval_transactions(e, i, scenario.seed) for i, e in enumerate(scenario.fraud_evals)]
    fields = [repr(sorted(t.fields.items())) for batch in rounds + evals for t in batch]
    assert len(fields) == len(set(fields))
    assert [len(r) for r in rounds] == [r.http + r.streamed for r in scenario.fraud_rounds]


def test_label_votes_carry_the_planned_noise_and_disputes() -> None:
    scenario = full()
    txns = round_transactions(scenario.fraud_rounds[0], 0, scenario.seed)
    votes = label_votes(txns, scenario, 0)
    assert votes == label_votes(txns, scenario, 0)
    wrong = sum(1 for t, v in zip(txns, votes, strict=True) if v[0].label != t.label)
    assert wrong == round(len(txns) * scenario.label_noise)
    disputed = [v for v in votes if len(v) > 1]
    assert len(disputed) == scenario.disputed
    assert all(v[0].label != v[1].label and v[1].annotator != v[0].annotator for v in disputed)


def test_questions_split_into_asked_and_held_out_with_house_style_references() -> None:
    scenario = full()
    corpus = generate_corpus(scenario.records, seed=42)
    asked, held = plan_questions(corpus, scenario)
    assert len(asked) == scenario.questions and len(held) == scenario.eval_questions
    assert sum(q.lang == "zh" for q in asked) == scenario.zh_questions
    assert not {q.text for q in asked} & {q.text for q in held}
    for question in asked + held:
        if question.lang == "en":
            assert question.reference and question.reference.startswith(HOUSE_STYLE)
        else:
            assert question.reference is None
    too_small = Scenario("tiny", records=10, questions=9, zh_questions=0,
                         fraud_rounds=scenario.fraud_rounds)
    with pytest.raises(ValueError, match="too few for scenario tiny"):
        plan_questions(generate_corpus(10, seed=42), too_small)


def test_reference_answer_picks_the_sentence_closest_to_the_question() -> None:
    body = ("Orders ship from Shanghai. Refunds are issued within 7 business days of the return. "
            "Our support team answers within one day.")
    assert reference_answer("When are refunds issued after a return?", body) == (
        f"{HOUSE_STYLE} Refunds are issued within 7 business days of the return.")
    with pytest.raises(ValueError, match="no answer sentence"):
        reference_answer("why?", "Too short.")


def test_feedback_actions_mix_corrections_votes_and_skip_chinese() -> None:
    scenario = full()
    asked, _ = plan_questions(generate_corpus(scenario.records, seed=42), scenario)
    actions = feedback_actions(asked, scenario)
    assert actions == feedback_actions(asked, scenario)
    assert all(a == "none" for q, a in zip(asked, actions, strict=True) if q.lang == "zh")
    counts = Counter(actions)
    assert counts["correction"] > counts["upvote"] + counts["downvote"] > 0


def test_scenarios_validate_their_numbers() -> None:
    assert quick().records < full().records
    assert not quick().support_learning
    with pytest.raises(ValueError, match="needs at least one fraud round"):
        Scenario("empty")
    with pytest.raises(ValueError, match=r"shares must be in \[0, 0.5\), got 0.7"):
        Scenario("noisy", label_noise=0.7, fraud_rounds=full().fraud_rounds)
