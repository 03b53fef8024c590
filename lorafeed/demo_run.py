"""The demo's scenario steps after start-up, in order: knowledge; scored transactions, their
labels, a new fraud version live; questions, feedback, a new support version live; a new fraud
pattern and its version; before/after evaluation. One task learns at a time, so training never
competes with serving for the cores. Each step prints what it did; `play` returns the numbers
as :class:`DemoResults`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path

from rich.console import Console

from lorafeed.demo_client import AppClient
from lorafeed.demo_eval import fraud_matrix, support_matrix
from lorafeed.demo_fraud import FraudTraffic, run_round
from lorafeed.demo_knowledge import ingest_corpus
from lorafeed.demo_learning import wait_rollout, wait_version
from lorafeed.demo_plan import Question, Scenario, plan_questions
from lorafeed.demo_results import DemoResults, EvalMatrix, FeedbackResult, VersionResult
from lorafeed.demo_support import SupportTraffic, ask_questions, give_feedback
from lorafeed.demo_watch import TopicWatcher
from lorafeed.knowledge import record_id_of
from lorafeed.up_plan import LEARNER, SCORER_NODE_ID, UpPlan

Step = Callable[[str, str], AbstractContextManager[None]]


class DemoRun:
    """One scenario against running services; `close` releases the client and the watcher."""

    def __init__(self, scenario: Scenario, client: AppClient, bootstrap: str, state_dir: Path,
                 plan: UpPlan, prefix: str, console: Console) -> None:
        self.scenario, self.client, self.console = scenario, client, console
        self.bootstrap, self.prefix, self.state_dir, self.plan = bootstrap, prefix, state_dir, plan
        self.watcher = TopicWatcher(bootstrap, prefix)
        self.versions: list[VersionResult] = []

    def close(self) -> None:
        self.watcher.close()
        self.client.close()

    def play(self, step: Step) -> DemoResults:
        s, console = self.scenario, self.console
        with step("knowledge", "2. knowledge: records.raw -> streams worker -> Milvus"):
            corpus, ingest = ingest_corpus(self.bootstrap, self.prefix, self.watcher, s, console)
        asked, held = plan_questions(corpus, s)
        rounds: list[FraudTraffic] = []
        for index, round_ in enumerate(s.fraud_rounds):
            number = 3 if index == 0 else 4 + index
            with step(f"fraud: {round_.name}", f"{number}. fraud: {round_.name} scored, labelled "
                                               "by analysts, learned, rolled out"):
                rounds.append(self._round(index))
                self._learn("fraud")
            if index == 0:
                with step("support", "4. support: apps ask questions, users give feedback, "
                                     "the learner learns"):
                    answers = ask_questions(self.client, asked, s, console)
                    support = give_feedback(self.client, asked, answers, s, console) \
                        if s.support_learning else None
                    if support:
                        self._learn("support")
        with step("evaluation", f"{4 + len(s.fraud_rounds)}. before / after: every version "
                                "answers the same evaluation slices"):
            matrices = self._evaluate(held)
        samples = tuple((q.text, " ".join(a.text.split())[:200],
                         record_id_of(a.passage_ids[0]) if a.passage_ids else "-")
                        for q, a in list(zip(asked, answers, strict=True))[:4])
        return DemoResults(
            scenario=s.name, wall_seconds=0.0, ingest=ingest, questions=len(answers),
            grounded=sum(1 for q, a in zip(asked, answers, strict=True)
                         if {record_id_of(p) for p in a.passage_ids} & set(q.relevant)),
            scored_http=sum(r.scored_http for r in rounds),
            streamed_scored=sum(r.scored_stream for r in rounds),
            feedback=_feedback(support, rounds), versions=tuple(self.versions),
            matrices=matrices, latencies={k: tuple(v) for k, v in self.client.latencies.items()},
            samples=samples, nodes=tuple(self.plan.node_urls()),
            feedback_request_ids=tuple(
                [*(support.feedback_request_ids if support else ()),
                 *(i for r in rounds for i in r.labelled_request_ids)]),
        )

    def _round(self, index: int) -> FraudTraffic:
        return run_round(self.client, self.watcher, self.bootstrap, self.prefix,
                         self.scenario.fraud_rounds[index], index, self.scenario, self.console)

    def _learn(self, task: str) -> VersionResult:
        known = [v.version for v in self.versions if v.task == task]
        version = wait_version(self.watcher, self.state_dir / "adapters", task, known,
                               self.scenario.learn_timeout_s,
                               self.state_dir / "logs" / f"{LEARNER}.log", self.console)
        if version.promoted:
            nodes = list(self.plan.node_urls())
            if task == "fraud" and self.plan.scorer:
                nodes.append(f"{SCORER_NODE_ID}-scorer")
            version = wait_rollout(self.watcher, self.client, version, nodes, self.console)
        self.versions.append(version)
        return version

    def _evaluate(self, held: Sequence[Question]) -> tuple[EvalMatrix, ...]:
        matrices = []
        for task in ("fraud", "support"):
            versions = [v for v in self.versions if v.task == task]
            if task == "fraud":
                matrices.append(fraud_matrix(self.client, versions, self.scenario, self.console))
            elif versions and held:
                matrices.append(support_matrix(self.client, versions, held, self.scenario,
                                               self.console))
        return tuple(matrices)


def _feedback(support: SupportTraffic | None, rounds: list[FraudTraffic]) -> FeedbackResult:
    return FeedbackResult(
        corrections=support.corrections if support else 0,
        upvotes=support.upvotes if support else 0,
        downvotes=support.downvotes if support else 0,
        labels=sum(r.labels for r in rounds), disputed_items=sum(r.disputed for r in rounds),
        noisy_labels=sum(r.noisy for r in rounds),
        refused=(support.refused if support else 0) + sum(r.refused for r in rounds),
    )
