"""The streams worker as a real process on the real stack: records in, exact index out, through
bad input, redelivery, deletes and updates, crashes at every failpoint, two racing workers and a
Redis outage. Each scenario has its own topics, collection and consumer group."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from lorafeed.corpus import generate_corpus
from lorafeed.embedder import SentenceEmbedder
from lorafeed.kafka_clients import make_producer
from lorafeed.knowledge import KnowledgeBase, KnowledgeConfig
from lorafeed.privacy import contains_raw_pii
from lorafeed.procs import free_port
from lorafeed.stack import Stack
from lorafeed.stores import make_milvus
from schemas import DeadLettered, RecordCleaned, RecordIndexed, Topic, topic_name
from tests.support.expect import (
    Expected,
    dead_reasons,
    expected_outcomes,
    indexed_texts,
    latest_outcomes,
)
from tests.support.stack import RunningStack
from tests.support.workers import Scenario, running, wait_for

pytestmark = pytest.mark.integration

WORKER_TIMEOUT_S = 180


@pytest.fixture(scope="module")
def embedder() -> SentenceEmbedder:
    return SentenceEmbedder()


def _kb(stack: RunningStack, scenario: Scenario) -> KnowledgeBase:
    return KnowledgeBase(
        make_milvus(stack.milvus_uri), KnowledgeConfig(collection=scenario.collection, dim=384)
    )


def _raw(records: list[dict]) -> list[tuple[str, bytes]]:
    return [(r["record_id"], json.dumps(r, ensure_ascii=False).encode()) for r in records]


def _record(
    record_id: str, content: str, content_type: str = "text/plain", **extra: object
) -> dict:
    return {
        "schema_version": 1,
        "record_id": record_id,
        "op": "upsert",
        "source": "tests",
        "content_type": content_type,
        "content": content,
        "metadata": {},
        "occurred_at": "2026-11-20T08:00:00Z",
        **extra,
    }


def _outcomes(scenario: Scenario) -> dict[str, RecordIndexed]:
    return latest_outcomes(
        e for e in scenario.read_all(Topic.RECORDS_INDEXED) if isinstance(e, RecordIndexed)
    )


def _wait_outcomes(scenario: Scenario, ids: set[str], what: str) -> dict[str, RecordIndexed]:
    def covered() -> dict[str, RecordIndexed] | None:
        outcomes = _outcomes(scenario)
        return outcomes if ids <= set(outcomes) else None

    try:
        return wait_for(covered, WORKER_TIMEOUT_S, what)
    except AssertionError as exc:  # say what did happen to the missing records
        dead = {d.key: f"{d.reason.value}: {d.detail}" for d in _dlq(scenario)}
        missing = sorted(ids - set(_outcomes(scenario)))
        raise AssertionError(f"{exc}; missing {missing[:10]}; dead letters {dead}") from None


def assert_index_exact(
    stack: RunningStack, scenario: Scenario, expected: Expected, outcomes: dict[str, RecordIndexed]
) -> dict[str, str]:
    """Every passing record is indexed exactly as recomputed, or is an alias of an indexed
    twin with the same (or nearly the same) content; returns alias -> canonical."""
    indexed = indexed_texts(_kb(stack, scenario))
    aliases = {
        rid: o.duplicate_of
        for rid, o in outcomes.items()
        if rid in expected.prepared and o.duplicate_of
    }
    canonical = set(expected.prepared) - set(aliases)
    assert set(indexed) == canonical
    for record_id in canonical:
        assert indexed[record_id] == expected.chunks[record_id], record_id
    for alias, twin in aliases.items():
        assert twin in canonical, f"{alias} is an alias of {twin}, which is not indexed"
    return {a: t for a, t in aliases.items() if t}


HOSTILE: list[tuple[str, bytes, str]] = [
    ("bad-json", b'{"schema_version": 1, "record_id": ', "not_json"),
    ("bad-utf8", b'{"schema_version": 1, "record_id": "\xff\xfe"}', "not_utf8"),
    (
        "bad-version",
        json.dumps(_record("v2", "text " * 20, schema_version=2)).encode(),
        "schema_version",
    ),
    ("bad-missing", b'{"schema_version": 1, "record_id": "m1", "op": "upsert"}', "invalid_field"),
    ("bad-array", b"[1, 2, 3]", "not_an_object"),
    ("bad-binary", b"\x89PNG\r\n\x1a\n\x00\x00\xff\xd8" * 256, "not_utf8"),
    (
        "bad-bomb",
        json.dumps(_record("bomb", "<div>" * 20_000 + "x", "text/html")).encode(),
        "html_too_deep",
    ),
    ("bad-short", json.dumps(_record("short", "hi")).encode(), "quality_too_short"),
    (
        "bad-long",
        json.dumps(_record("long", "Refund policy details. " * 12_000)).encode(),
        "quality_too_long",
    ),
]


def test_corpus_is_indexed_exactly_once_and_redelivery_changes_nothing(
    stack: RunningStack, tmp_path: Path, embedder: SentenceEmbedder
) -> None:
    scenario = Scenario.create(stack, tmp_path)
    corpus = generate_corpus(60, seed=7)
    expected = expected_outcomes(corpus.records, embedder)
    scenario.publish_raw(_raw(corpus.records) + [(key, value) for key, value, _ in HOSTILE])
    with running() as workers:
        workers["w"] = scenario.start_streams()
        outcomes = _wait_outcomes(scenario, set(expected.prepared), "every record indexed")
        wanted = {key: reason for key, _, reason in HOSTILE}

        def all_dead() -> dict[str, str] | None:
            dead = dead_reasons(_dlq(scenario))
            return dead if set(wanted) <= set(dead) else None

        dead = wait_for(all_dead, 60, "every bad message dead-lettered")
        assert {k: dead[k] for k in wanted} == wanted
        aliases = assert_index_exact(stack, scenario, expected, outcomes)
        for dup, original in corpus.exact_duplicates.items():
            assert {dup, original} & set(aliases), f"exact twins {dup}/{original} both indexed"
        _assert_no_raw_pii(stack, scenario, corpus.pii)

        # Redelivery of everything: the index does not change.
        before = len(scenario.read_all(Topic.RECORDS_INDEXED))
        scenario.publish_raw(_raw(corpus.records))
        wait_for(
            lambda: (
                len(scenario.read_all(Topic.RECORDS_INDEXED)) >= before + len(expected.prepared)
            ),
            WORKER_TIMEOUT_S,
            "the redelivered records processed",
        )
        assert_index_exact(stack, scenario, expected, _outcomes(scenario))
        assert psutil.Process(workers["w"].pid).is_running()


def _dlq(scenario: Scenario) -> list[DeadLettered]:
    return [e for e in scenario.read_all(Topic.RECORDS_DLQ) if isinstance(e, DeadLettered)]


def _assert_no_raw_pii(
    stack: RunningStack, scenario: Scenario, planted: dict[str, list[str]]
) -> None:
    values = {value for values in planted.values() for value in values}
    assert values, "the corpus planted no PII: the check would prove nothing"
    texts = [t for chunks in indexed_texts(_kb(stack, scenario)).values() for t in chunks]
    texts += [
        e.text for e in scenario.read_all(Topic.RECORDS_CLEAN) if isinstance(e, RecordCleaned)
    ]
    texts += [e.detail for e in _dlq(scenario)]
    for text in texts:
        assert not any(value in text for value in values), text[:200]
        assert contains_raw_pii(text) == [], text[:200]


def test_delete_promotes_an_alias_and_update_drops_stale_chunks(
    stack: RunningStack, tmp_path: Path, embedder: SentenceEmbedder
) -> None:
    scenario = Scenario.create(stack, tmp_path)
    rng = random.Random(9)
    body = ". ".join(" ".join(_word(rng) for _ in range(12)) for _ in range(40))
    longer = ". ".join(" ".join(_word(rng) for _ in range(12)) for _ in range(150))
    first = [_record("orig", body), _record("twin", body + " "), _record("long", longer)]
    scenario.publish_raw(_raw(first[:1]))
    with running() as workers:
        workers["w"] = scenario.start_streams()
        _wait_outcomes(scenario, {"orig"}, "the original indexed")
        scenario.publish_raw(_raw(first[1:]))
        outcomes = _wait_outcomes(scenario, {"twin", "long"}, "twin and long processed")
        assert outcomes["twin"].duplicate_of == "orig" and outcomes["twin"].chunk_count == 0
        long_chunks = set(outcomes["long"].chunk_ids)
        assert len(long_chunks) > 3

        deletion = dict(first[0], op="delete", content="")
        shorter = _record("long", "Refunds take five business days after the return arrives.")
        scenario.publish_raw(_raw([deletion, shorter]))

        def settled() -> dict[str, list[str]] | None:
            texts = indexed_texts(_kb(stack, scenario))
            return texts if set(texts) == {"twin", "long"} and len(texts["long"]) == 1 else None

        texts = wait_for(settled, WORKER_TIMEOUT_S, "twin promoted and long shrunk")
        expected = expected_outcomes([first[1], shorter], embedder)
        assert texts == {"twin": expected.chunks["twin"], "long": expected.chunks["long"]}
        latest = _outcomes(scenario)
        assert set(latest["long"].deleted_chunk_ids) == long_chunks - set(latest["long"].chunk_ids)


@pytest.mark.parametrize(
    "point",
    ["streams.after_dedup", "streams.mid_batch", "streams.after_upsert", "streams.before_ack"],
)
def test_a_crash_at_each_failpoint_leaves_the_index_exact(
    stack: RunningStack, tmp_path: Path, embedder: SentenceEmbedder, point: str
) -> None:
    scenario = Scenario.create(stack, tmp_path)
    corpus = generate_corpus(16, seed=11, exact_dup_ratio=0.1)
    expected = expected_outcomes(corpus.records, embedder)
    scenario.publish_raw(_raw(corpus.records))
    with running() as workers:
        workers["crashing"], popen = scenario.spawn_streams(
            "crashing", LORAFEED_FAILPOINT=point, STREAMS_BATCH_MAX="4"
        )
        assert popen.wait(WORKER_TIMEOUT_S) == -signal.SIGKILL, f"no crash at {point}"
        workers["restarted"] = scenario.start_streams("restarted", STREAMS_BATCH_MAX="4")
        outcomes = _wait_outcomes(scenario, set(expected.prepared), "every record after restart")
        assert_index_exact(stack, scenario, expected, outcomes)


def _log(handle: object) -> str:
    return Path(handle.log_path).read_text(errors="replace")  # type: ignore[attr-defined]


def _assigned(handle: object) -> bool:
    """The member's latest assignment (faust logs it as a table) holds some partition."""
    log = _log(handle)
    last = log.rfind("Setting newly assigned partitions")
    return last >= 0 and "{" in log[last : last + 400]


def _word(rng: random.Random) -> str:
    return "".join(
        rng.choice("bcdfghjklmnprstvwz") + rng.choice("aeiou") for _ in range(rng.randint(2, 4))
    )


def test_two_workers_racing_on_near_duplicate_pairs_index_exactly_one_of_each(
    stack: RunningStack, tmp_path: Path, embedder: SentenceEmbedder
) -> None:
    scenario = Scenario.create(stack, tmp_path)
    rng = random.Random(5)
    pairs = []
    for i in range(100):
        words = [_word(rng) for _ in range(200)]
        twin = list(words)
        twin[rng.randrange(len(twin))] = _word(rng)
        pairs.append(
            (_record(f"p{i:03d}a", " ".join(words)), _record(f"p{i:03d}b", " ".join(twin)))
        )
    with running() as workers:
        workers["one"] = scenario.start_streams("one", STREAMS_BATCH_MAX="8")
        workers["two"] = scenario.start_streams("two", STREAMS_BATCH_MAX="8")
        # Both members ready and the group settled before any record exists: then they race.
        wait_for(
            lambda: all("streams worker ready" in _log(h) for h in workers.values()),
            WORKER_TIMEOUT_S,
            "both workers ready",
        )
        wait_for(lambda: all(_assigned(h) for h in workers.values()), 60, "both assigned")
        # Each pair's halves go to different partitions, so often to different workers.
        producer = make_producer(stack.bootstrap)
        name = topic_name(Topic.RECORDS_RAW, scenario.prefix)
        for i, (a, b) in enumerate(pairs):
            for record, partition in ((a, i % 4), (b, (i + 2) % 4)):
                producer.produce(
                    name,
                    key=record["record_id"],
                    partition=partition,
                    value=json.dumps(record).encode(),
                )
        assert producer.flush(30) == 0
        ids = {r["record_id"] for pair in pairs for r in pair}
        outcomes = _wait_outcomes(scenario, ids, "all 200 records processed")
        for handle in workers.values():
            assert "batch of" in _log(handle), f"worker {handle.name} indexed nothing"
    indexed = set(indexed_texts(_kb(stack, scenario)))
    for a, b in pairs:
        kept = {a["record_id"], b["record_id"]} & indexed
        assert len(kept) == 1, f"pair {a['record_id']}: indexed {kept}"
        other = ({a["record_id"], b["record_id"]} - kept).pop()
        assert outcomes[other].duplicate_of == kept.pop()


def test_a_redis_outage_is_retried_not_dead_lettered(
    stack: RunningStack, tmp_path: Path, embedder: SentenceEmbedder
) -> None:
    scenario = Scenario.create(stack, tmp_path)
    corpus = generate_corpus(6, seed=21, exact_dup_ratio=0, near_dup_ratio=0)
    expected = expected_outcomes(corpus.records, embedder)
    with running() as workers:
        workers["w"] = scenario.start_streams()
        scenario.publish_raw(_raw(corpus.records[:1]))
        _wait_outcomes(scenario, {corpus.records[0]["record_id"]}, "the worker up and indexing")
        redis_pid = Stack(stack.settings).state().components["redis"].pid  # type: ignore[union-attr]
        psutil.Process(redis_pid).kill()
        scenario.publish_raw(_raw(corpus.records[1:]))
        time.sleep(8)  # the worker sees the outage and retries with backoff meanwhile
        assert set(_outcomes(scenario)) == {corpus.records[0]["record_id"]}
        assert _dlq(scenario) == []
        assert psutil.Process(workers["w"].pid).is_running()
        Stack(stack.settings).up()  # Redis comes back (with its appendonly data)
        outcomes = _wait_outcomes(scenario, set(expected.prepared), "indexing after the outage")
    assert_index_exact(stack, scenario, expected, outcomes)
    assert _dlq(scenario) == []


JS = Path(__file__).resolve().parents[1] / "js"


@pytest.mark.skipif(not (JS / "node_modules" / "kafkajs").exists(), reason="make js installs it")
def test_a_kafkajs_record_becomes_searchable_and_metrics_count_it(
    stack: RunningStack, tmp_path: Path
) -> None:
    scenario = Scenario.create(stack, tmp_path)
    port = free_port()
    record = _record(
        "js-faq-1", "如何申请发票？登录账户后在订单页面点击下载电子发票，联系 li.na@example.com。"
    )
    name = topic_name(Topic.RECORDS_RAW, scenario.prefix)
    with running() as workers:
        workers["w"] = scenario.start_streams(STREAMS_METRICS_PORT=str(port))
        subprocess.run(
            [
                "node",
                str(JS / "kafka_interop.js"),
                stack.bootstrap,
                "produce",
                name,
                record["record_id"],
            ],
            input=json.dumps(record).encode(),
            check=True,
            capture_output=True,
            timeout=60,
        )
        _wait_outcomes(scenario, {"js-faq-1"}, "the kafkajs record indexed")
        found = subprocess.run(
            [
                sys.executable,
                "-m",
                "lorafeed",
                "search",
                "电子发票",
                "--json",
                "--collection",
                scenario.collection,
            ],
            env=scenario.env(),
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        ).stdout
        hits = json.loads(found)
        assert hits and hits[0]["record_id"] == "js-faq-1"
        assert "li.na@example.com" not in found
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read()
    text = metrics.decode()
    assert "lorafeed_streams_records_indexed_total 1.0" in text
    assert "lorafeed_streams_chunks_indexed_total" in text
    assert "example.com" not in text and "js-faq-1" not in text


def test_a_worker_that_cannot_reach_milvus_exits_loudly(
    stack: RunningStack, tmp_path: Path
) -> None:
    scenario = Scenario.create(stack, tmp_path)
    closed = f"http://127.0.0.1:{free_port()}"
    handle, popen = scenario.spawn_streams("no-milvus", LORAFEED_MILVUS_URI=closed)
    with running({"w": handle}):
        assert popen.wait(WORKER_TIMEOUT_S) == 3
    log = Path(handle.log_path).read_text(errors="replace")
    assert "streams worker cannot start" in log and closed.split("//")[1] in log
