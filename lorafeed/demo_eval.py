"""Before / after, measured the way an app sees it: every version of a task (and the base
model, `task@base`) answers the same fixed evaluation slices over HTTP. Fraud: accuracy on
never-labelled transactions per pattern. Support: word F1 of answers to held-out questions
against their house-style references, beside the gate's held-out answer log-likelihood."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

from rich.console import Console
from rich.progress import Progress

from lorafeed.demo_client import AppClient, fan_out, round_robin
from lorafeed.demo_plan import Question, Scenario, eval_transactions
from lorafeed.demo_results import EvalMatrix, VersionResult

_WORD = re.compile(r"\w+")


def answer_f1(answer: str, reference: str) -> float:
    """F1 of the lower-cased word multisets of `answer` and `reference` (1.0 if both empty)."""
    got, want = _WORD.findall(answer.lower()), _WORD.findall(reference.lower())
    if not got or not want:
        return float(got == want)
    common = sum((Counter(got) & Counter(want)).values())
    if not common:
        return 0.0
    precision, recall = common / len(got), common / len(want)
    return 2 * precision * recall / (precision + recall)


def row_names(versions: Sequence[VersionResult]) -> tuple[list[str], list[str]]:
    """(what to ask for: "base" and each version, the row labels: rejected ones marked)."""
    asked = ["base", *(v.version for v in versions)]
    shown = ["base", *(v.version + ("" if v.promoted else " (rejected)") for v in versions)]
    return asked, shown


def fraud_matrix(client: AppClient, versions: Sequence[VersionResult], scenario: Scenario,
                 console: Console) -> EvalMatrix:
    """Accuracy of `fraud@base` and every version on each evaluation slice."""
    slices = [eval_transactions(s, i, scenario.seed) for i, s in enumerate(scenario.fraud_evals)]
    rows, shown = row_names(versions)
    jobs = [(row, c, txn) for row in rows for c, txns in enumerate(slices) for txn in txns]
    nodes = round_robin(client.node_urls, len(jobs))
    with Progress(console=console, transient=True) as progress:
        bar = progress.add_task("fraud: every version scores the evaluation slices",
                                total=len(jobs))
        labels = fan_out(jobs, lambda i, job: client.score(nodes[i], f"fraud@{job[0]}",
                                                           job[2].fields).label,
                         4 * scenario.concurrency, lambda: progress.advance(bar))
    hits = [[0] * len(slices) for _ in rows]
    for (row, c, txn), label in zip(jobs, labels, strict=True):
        hits[rows.index(row)][c] += int(label == txn.label)
    values = tuple(tuple(hits[r][c] / len(slices[c]) for c in range(len(slices)))
                   for r in range(len(rows)))
    return EvalMatrix("fraud", "accuracy", tuple(s.name for s in scenario.fraud_evals),
                      tuple(shown), values)


def support_matrix(client: AppClient, versions: Sequence[VersionResult],
                   held: Sequence[Question],
                   scenario: Scenario, console: Console) -> EvalMatrix:
    """Answer F1 of `support@base` and every version on held-out questions against their
    house-style references (greedy, grounded, the scenario's eval max_tokens)."""
    rows, shown = row_names(versions)
    jobs = [(row, q) for row in rows for q in held]
    nodes = round_robin(client.node_urls, len(jobs))
    with Progress(console=console, transient=True) as progress:
        bar = progress.add_task("support: every version answers held-out questions",
                                total=len(jobs))
        answers = fan_out(
            jobs, lambda i, job: client.chat(nodes[i], job[1].text, model=f"support@{job[0]}",
                                             max_tokens=scenario.eval_max_tokens).text,
            scenario.concurrency, lambda: progress.advance(bar))
    values = []
    for row in rows:
        mine = [(q, a) for (r, q), a in zip(jobs, answers, strict=True) if r == row]
        values.append(sum(answer_f1(a, q.reference or "") for q, a in mine) / max(len(mine), 1))
    likelihood = gate_likelihood(versions)
    return EvalMatrix("support", "score", ("answer F1 on held-out questions (HTTP)",
                                           "held-out answer log-likelihood/token (gate)"),
                      tuple(shown), tuple(zip(values, likelihood, strict=True)))


def gate_likelihood(versions: Sequence[VersionResult]) -> list[float]:
    """The gate's target metric per row: the base's (the first gate's champion) and each
    version's own candidate value, NaN where a gate had none."""
    nan = float("nan")
    first = versions[0].gate.get("target.champion", nan) if versions else nan
    return [first, *(v.gate.get("target.candidate", nan) for v in versions)]
