"""The demo's support traffic: users ask questions over /v1/chat/completions (grounded in the
knowledge base, spread over both nodes), then give feedback on the answers over /v1/feedback:
corrections in the house style, up and down votes (some careless), and a few malformed calls."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from lorafeed.demo_client import AppClient, ChatAnswer, fan_out, round_robin
from lorafeed.demo_plan import Question, Scenario, feedback_actions
from lorafeed.knowledge import record_id_of


@dataclass(frozen=True)
class SupportTraffic:
    answers: tuple[ChatAnswer, ...]
    grounded: int
    corrections: int
    upvotes: int
    downvotes: int
    refused: int
    feedback_request_ids: tuple[str, ...]


def ask_questions(client: AppClient, questions: list[Question], scenario: Scenario,
                  console: Console) -> list[ChatAnswer]:
    nodes = round_robin(client.node_urls, len(questions))
    with Progress(console=console, transient=True) as progress:
        bar = progress.add_task("apps ask questions (chat with retrieval)", total=len(questions))
        answers = fan_out(
            questions,
            lambda i, q: client.chat(nodes[i], q.text, max_tokens=scenario.chat_max_tokens),
            scenario.concurrency, lambda: progress.advance(bar),
        )
    grounded = sum(1 for q, a in zip(questions, answers, strict=True) if _grounded(q, a))
    console.print(f"{len(answers)} answers from {', '.join(sorted(set(nodes)))}; "
                  f"{grounded} cited a passage of a record that answers the question",
                  highlight=False)
    console.print(_samples(questions, answers))
    return answers


def _grounded(question: Question, answer: ChatAnswer) -> bool:
    return bool({record_id_of(p) for p in answer.passage_ids} & set(question.relevant))


def _samples(questions: list[Question], answers: list[ChatAnswer]) -> Table:
    table = Table(title="sample answers (base model, grounded)")
    for column in ("node", "question", "answer", "cited"):
        table.add_column(column, overflow="fold")
    picked = [next((i for i, q in enumerate(questions) if q.lang == lang), None)
              for lang in ("en", "zh")]
    for i in (p for p in picked if p is not None):
        answer = answers[i]
        cited = record_id_of(answer.passage_ids[0]) if answer.passage_ids else "-"
        table.add_row(answer.node, questions[i].text, " ".join(answer.text.split())[:160], cited)
    return table


def give_feedback(client: AppClient, questions: list[Question], answers: list[ChatAnswer],
                  scenario: Scenario, console: Console) -> SupportTraffic:
    """Corrections, votes and a few invalid calls, sent in one burst like a feedback queue."""
    actions = feedback_actions(questions, scenario)
    bodies: list[tuple[str, dict[str, Any]]] = []
    for question, answer, action in zip(questions, answers, actions, strict=True):
        base = {"request_id": answer.request_id, "annotator": "user"}
        if action == "correction":
            bodies.append((answer.node, base | {"kind": "correction",
                                                "correction": question.reference}))
        elif action in ("upvote", "downvote"):
            bodies.append((answer.node, base | {"kind": "rating",
                                                "rating": 1 if action == "upvote" else -1}))
    # what careless apps send: the node refuses each with a 4xx and a reason
    invalid: list[dict[str, Any]] = [
        {"request_id": "no-such-request", "kind": "rating", "rating": 1},
        {"request_id": answers[0].request_id, "kind": "label", "label": "fraud"},
    ]
    statuses = fan_out(bodies, lambda _i, pair: client.feedback(pair[0], pair[1]),
                       scenario.concurrency)
    node = next(iter(client.node_urls))
    refused = [client.feedback(node, body, expect_ok=False) for body in invalid]
    traffic = SupportTraffic(
        answers=tuple(answers),
        grounded=sum(1 for q, a in zip(questions, answers, strict=True) if _grounded(q, a)),
        corrections=actions.count("correction"), upvotes=actions.count("upvote"),
        downvotes=actions.count("downvote"), refused=sum(1 for s in refused if s >= 400),
        feedback_request_ids=tuple(body["request_id"] for _n, body in bodies),
    )
    console.print(f"feedback accepted (202): {statuses.count(202)}: {traffic.corrections} "
                  f"corrections in the house style, {traffic.upvotes} up votes, "
                  f"{traffic.downvotes} down votes; refused: {refused} (unknown request, "
                  "label on a chat answer)", highlight=False)
    return traffic
