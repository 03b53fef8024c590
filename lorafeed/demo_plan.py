"""The demo's scenario, planned ahead and deterministically (pure): which questions users ask,
what feedback they give (corrections in the house style, ratings, some noise), which
transactions are scored and how analysts label them (some mistakes, some disagreements).

`full()` is what `lorafeed demo` runs; `quick()` is the shortened run of the end-to-end test.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from lorafeed.corpus import Corpus, LabelledQuery
from lorafeed.demo_transactions import Pattern, Transaction, balanced, make_transactions

HOUSE_STYLE = "Qilin Support:"
FeedbackAction = Literal["correction", "upvote", "downvote", "none"]
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class FraudRound:
    """One wave of transactions: `http` scored over /v1/score, `streamed` through
    transactions.raw and the scorer; every one of them labelled afterwards."""

    name: str
    fraud: tuple[Pattern, ...]
    legit: tuple[Pattern, ...]
    http: int
    streamed: int


@dataclass(frozen=True)
class EvalSet:
    """A fixed, balanced slice the demo scores with every version (never labelled)."""

    name: str
    fraud: tuple[Pattern, ...]
    legit: tuple[Pattern, ...]
    size: int


@dataclass(frozen=True)
class Scenario:
    """Sizes, noise and budgets of one demo run (see `full` and `quick`)."""

    name: str
    records: int = 100
    questions: int = 22
    zh_questions: int = 2
    chat_max_tokens: int = 24
    support_learning: bool = True
    eval_questions: int = 6
    eval_max_tokens: int = 24
    downvote_share: float = 0.15
    upvote_share: float = 0.15
    fraud_rounds: tuple[FraudRound, ...] = ()
    fraud_evals: tuple[EvalSet, ...] = ()
    label_noise: float = 0.04
    disputed: int = 3
    seed: int = 7
    learn_timeout_s: float = 900.0
    concurrency: int = 2  # chat calls in flight (one per node); scoring uses four times this
    malformed: tuple[bytes, ...] = field(default=(
        b'{"schema_version": 1, "record_id": "broken-1", "content": ',
        b'{"schema_version": 2, "record_id": "future-1"}',
        b'{"schema_version": 1, "record_id": "short-1", "op": "upsert", "source": "wiki",'
        b' "content_type": "text/plain", "content": "ok", "occurred_at": "2026-01-01T00:00:00Z"}',
    ))

    def __post_init__(self) -> None:
        if self.records < 10:
            raise ValueError(f"scenario {self.name}: records must be >= 10, got {self.records}")
        if self.questions <= 0 or not 0 <= self.zh_questions <= self.questions:
            raise ValueError(f"scenario {self.name}: need 0 <= zh_questions ({self.zh_questions})"
                             f" <= questions ({self.questions}) and questions > 0")
        for share in (self.downvote_share, self.upvote_share, self.label_noise):
            if not 0.0 <= share < 0.5:
                raise ValueError(f"scenario {self.name}: shares must be in [0, 0.5), got {share}")
        if not self.fraud_rounds:
            raise ValueError(f"scenario {self.name}: needs at least one fraud round")


GIFT_CARDS = FraudRound("gift-card runs", ("gift_card",), ("everyday", "travel"), 56, 56)
TAKEOVERS = FraudRound("account takeovers", ("takeover",), ("transfer", "everyday"), 36, 36)
EVAL_GIFT = EvalSet("gift-card runs", ("gift_card",), ("everyday", "travel"), 32)
EVAL_TAKEOVER = EvalSet("account takeovers", ("takeover",), ("transfer",), 32)


def full() -> Scenario:
    """`lorafeed demo`: both tasks learn; the fraud task learns two patterns in turn."""
    return Scenario("full", fraud_rounds=(GIFT_CARDS, TAKEOVERS),
                    fraud_evals=(EVAL_GIFT, EVAL_TAKEOVER))


def quick() -> Scenario:
    """`lorafeed demo --quick`: fewer records and questions; only the fraud task learns, once."""
    return Scenario("quick", records=40, questions=3, zh_questions=1, chat_max_tokens=8,
                    support_learning=False, eval_questions=0,
                    fraud_rounds=(GIFT_CARDS,),
                    fraud_evals=(EvalSet("gift-card runs", ("gift_card",), ("everyday", "travel"),
                                         24),),
                    disputed=2, learn_timeout_s=420.0)


@dataclass(frozen=True)
class Question:
    """A user question, the records that answer it, and the answer in the house style."""

    text: str
    lang: str
    relevant: tuple[str, ...]
    reference: str | None


def plan_questions(corpus: Corpus, scenario: Scenario) -> tuple[list[Question], list[Question]]:
    """(questions asked and given feedback, held-out English questions for evaluation)."""
    rng = random.Random(f"demo-questions:{scenario.seed}")
    english = [q for q in corpus.queries if q.lang == "en"]
    chinese = [q for q in corpus.queries if q.lang == "zh"]
    rng.shuffle(english)
    rng.shuffle(chinese)
    wanted_en = scenario.questions - scenario.zh_questions
    if len(english) < wanted_en + scenario.eval_questions or len(chinese) < scenario.zh_questions:
        raise ValueError(f"the corpus of {scenario.records} records has {len(english)} English "
                         f"and {len(chinese)} Chinese queries: too few for scenario "
                         f"{scenario.name}")
    asked = [_question(q, corpus) for q in english[:wanted_en] + chinese[:scenario.zh_questions]]
    held = [_question(q, corpus) for q in english[wanted_en:wanted_en + scenario.eval_questions]]
    return asked, held


def _question(query: LabelledQuery, corpus: Corpus) -> Question:
    reference = reference_answer(query.text, corpus.bodies[query.relevant_record_ids[0]]) \
        if query.lang == "en" else None
    return Question(query.text, query.lang, query.relevant_record_ids, reference)


def reference_answer(question: str, body: str) -> str:
    """The house-style answer: the page's sentence sharing most words with the question."""
    sentences = [s.strip() for s in _SENTENCE.split(body)
                 if len(s.split()) >= 6 and s.strip().endswith((".", "!", "?"))]
    if not sentences:
        raise ValueError(f"no answer sentence in the page for {question!r}")
    asked = _words(question)
    best = max(sentences, key=lambda s: (len(_words(s) & asked), -sentences.index(s)))
    return f"{HOUSE_STYLE} {best}"


def _words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


def feedback_actions(questions: Sequence[Question], scenario: Scenario) -> list[FeedbackAction]:
    """Per question: corrections for most English answers, some up/down votes (a few of them
    careless: users also vote on answers they did not read), nothing for Chinese ones."""
    rng = random.Random(f"demo-feedback:{scenario.seed}")
    actions: list[FeedbackAction] = []
    for question in questions:
        if question.reference is None:
            actions.append("none")
            continue
        roll = rng.random()
        if roll < scenario.downvote_share:
            actions.append("downvote")
        elif roll < scenario.downvote_share + scenario.upvote_share:
            actions.append("upvote")
        else:
            actions.append("correction")
    return actions


@dataclass(frozen=True)
class LabelVote:
    annotator: str
    label: str


def round_transactions(round_: FraudRound, index: int, seed: int) -> list[Transaction]:
    """The transactions of fraud round `index` (HTTP ones first, then streamed ones)."""
    counts = balanced(round_.http + round_.streamed, round_.fraud, round_.legit)
    return make_transactions(counts, seed=seed * 100 + index, id_prefix=f"r{index}")


def eval_transactions(eval_set: EvalSet, index: int, seed: int) -> list[Transaction]:
    counts = balanced(eval_set.size, eval_set.fraud, eval_set.legit)
    return make_transactions(counts, seed=seed * 100 + 50 + index, id_prefix=f"e{index}")


def label_votes(transactions: Sequence[Transaction], scenario: Scenario,
                round_index: int) -> list[list[LabelVote]]:
    """Analysts' votes per transaction: the true label from "analyst", flipped for a
    `label_noise` share (mistakes the learner cannot see), and for `disputed` items a second
    analyst who disagrees (the learner holds those for review instead of training on them)."""
    rng = random.Random(f"demo-labels:{scenario.seed}:{round_index}")
    flip = {"fraud": "legit", "legit": "fraud"}
    order = list(range(len(transactions)))
    rng.shuffle(order)
    disputed = set(order[: scenario.disputed])
    noisy = set(order[scenario.disputed: scenario.disputed
                      + round(len(order) * scenario.label_noise)])
    votes = []
    for n, txn in enumerate(transactions):
        first = flip[txn.label] if n in noisy else txn.label
        item = [LabelVote("analyst", first)]
        if n in disputed:
            item.append(LabelVote("second-analyst", flip[first]))
        votes.append(item)
    return votes
