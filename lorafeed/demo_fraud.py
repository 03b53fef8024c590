"""The demo's fraud traffic, one round at a time: apps score transactions over /v1/score and a
batch system streams more through transactions.raw to the scorer; later the analysts' labels
(chargebacks, reviews) come back over /v1/feedback, with mistakes and disagreements."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.progress import Progress

from lorafeed.demo_client import AppClient, fan_out, round_robin
from lorafeed.demo_plan import FraudRound, Scenario, label_votes, round_transactions
from lorafeed.demo_watch import TopicWatcher
from lorafeed.kafka_clients import make_producer
from schemas import Topic, encode, topic_name
from schemas.transactions import TransactionReceived

STREAM_TIMEOUT_S = 180.0


@dataclass(frozen=True)
class FraudTraffic:
    scored_http: int
    scored_stream: int
    labels: int
    noisy: int
    disputed: int
    refused: int
    accuracy_served: float  # of the labels' truth, what the served version said
    labelled_request_ids: tuple[str, ...]


def run_round(client: AppClient, watcher: TopicWatcher, bootstrap: str, prefix: str,
              round_: FraudRound, index: int, scenario: Scenario,
              console: Console) -> FraudTraffic:
    txns = round_transactions(round_, index, scenario.seed)
    http, streamed = txns[: round_.http], txns[round_.http:]
    nodes = round_robin(client.node_urls, len(http))
    with Progress(console=console, transient=True) as progress:
        bar = progress.add_task(f"scoring {round_.name}: /v1/score + transactions.raw",
                                total=len(txns))
        scores = fan_out(http, lambda i, t: client.score(nodes[i], "fraud", t.fields),
                         4 * scenario.concurrency, lambda: progress.advance(bar))
        event_ids = _publish(bootstrap, prefix, [t.fields for t in streamed])

        def streamed_scores() -> dict[str, Any] | None:
            found = {e.event_id: e for e in watcher.events(Topic.SCORES_OUT)
                     if e.event_id in event_ids}
            progress.update(bar, completed=len(http) + len(found))
            return found if len(found) == len(event_ids) else None

        by_event = watcher.wait(streamed_scores, STREAM_TIMEOUT_S,
                                f"the scorer to score {len(event_ids)} streamed transactions")
    request_ids = [s.request_id for s in scores] + event_ids
    served = [s.label for s in scores] + [by_event[e].label for e in event_ids]
    votes = label_votes(txns, scenario, index)
    bodies = [
        {"request_id": request_id, "kind": "label", "label": vote.label,
         "annotator": vote.annotator}
        for request_id, item in zip(request_ids, votes, strict=True) for vote in item
    ]
    label_nodes = round_robin(client.node_urls, len(bodies))
    fan_out(bodies, lambda i, body: client.feedback(label_nodes[i], body), 4 * scenario.concurrency)
    invalid = [{"request_id": request_ids[0], "kind": "label", "label": "chargeback"},
               {"request_id": request_ids[1], "kind": "correction", "correction": "legit"}]
    refused = [client.feedback(label_nodes[0], body, expect_ok=False) for body in invalid]
    correct = sum(1 for t, label in zip(txns, served, strict=True) if t.label == label)
    traffic = FraudTraffic(
        scored_http=len(http), scored_stream=len(event_ids), labels=len(bodies),
        noisy=sum(1 for t, item in zip(txns, votes, strict=True) if item[0].label != t.label),
        disputed=sum(1 for item in votes if len(item) > 1),
        refused=sum(1 for status in refused if status >= 400),
        accuracy_served=correct / len(txns), labelled_request_ids=tuple(request_ids),
    )
    console.print(
        f"{round_.name}: scored {traffic.scored_http} over HTTP and {traffic.scored_stream} "
        f"through the scorer (served accuracy {traffic.accuracy_served:.0%}); "
        f"{traffic.labels} label votes sent ({traffic.noisy} wrong, {traffic.disputed} items "
        f"disputed by a second analyst); refused: {refused} (label outside the set, correction "
        "on a score)", highlight=False)
    return traffic


def _publish(bootstrap: str, prefix: str, rows: list[dict[str, Any]]) -> list[str]:
    producer = make_producer(bootstrap)
    name = topic_name(Topic.TRANSACTIONS_RAW, prefix)
    ids = []
    for fields in rows:
        event = TransactionReceived(schema_version=1, event_id=f"tx-{uuid.uuid4().hex[:16]}",
                                    task="fraud", fields=fields, occurred_at=datetime.now(UTC))
        producer.produce(name, key=event.event_id, value=encode(event))
        producer.poll(0)
        ids.append(event.event_id)
    if producer.flush(30):
        raise RuntimeError("the broker did not acknowledge the streamed transactions in 30 s")
    return ids
