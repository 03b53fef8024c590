"""PendingStore: durable examples, splits, consume + outbox atomicity, purge, replay, ratings."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from learner.aggregate import Agreed, Disputed, Vote
from learner.errors import PendingStoreError
from learner.examples import Example, is_heldout
from learner.pending import OffsetRef, OutboxMessage, PendingStore, offset_ranges
from schemas.manifest import OffsetRange

PROMPT = (("user", "q?"),)
ROOT = Path(__file__).resolve().parents[3]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def sft(i: int, task: str = "qa", **fields: object) -> Example:
    values: dict[str, object] = {"prompt": PROMPT, "text": f"answer {i}", "request_id": f"r{i}"}
    values.update(fields)
    return Example(f"fb:r{i}:sft:-", task, "sft", **values)  # type: ignore[arg-type]


def doc(record: str, n: int, text: str, task: str = "qa") -> Example:
    return Example(f"rec:{record}:{n}", task, "text", text=text, domain="wiki", record_id=record)


def train_ids(count: int, percent: int = 20) -> list[int]:
    return [i for i in range(10_000) if not is_heldout(f"fb:r{i}:sft:-", percent)][:count]


def heldout_ids(count: int, percent: int = 20) -> list[int]:
    return [i for i in range(10_000) if is_heldout(f"fb:r{i}:sft:-", percent)][:count]


@pytest.fixture
def store(tmp_path: Path) -> PendingStore:
    return PendingStore(tmp_path / "state.sqlite", clock=Clock())


def test_store_uses_wal_and_full_sync(store: PendingStore) -> None:
    assert store._query("PRAGMA journal_mode")[0][0] == "wal"
    assert store._query("PRAGMA synchronous")[0][0] == 2  # FULL


def test_redelivery_counts_once_and_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    ids = train_ids(3)
    with PendingStore(path) as store:
        ref = OffsetRef("feedback.events", 0, 7)
        assert store.add([sft(i) for i in ids], 20, ref) == 3
        assert store.add([sft(i) for i in ids], 20, ref) == 0
    with PendingStore(path) as store:
        rows = store.pending("qa")
        assert [e.example_id for e, _ in rows] == [f"fb:r{i}:sft:-" for i in ids]
        assert {ref for _, ref in rows} == {OffsetRef("feedback.events", 0, 7)}
        assert store.stats("qa")[0] == 3


def test_heldout_examples_never_pending(store: PendingStore) -> None:
    train, held = train_ids(4), heldout_ids(3)
    store.add([sft(i) for i in train + held], 20)
    assert {e.example_id for e, _ in store.pending("qa")} == {f"fb:r{i}:sft:-" for i in train}
    assert {e.example_id for e in store.heldout("qa")} == {f"fb:r{i}:sft:-" for i in held}
    assert store.heldout("qa", domains=["wiki"]) == []
    assert store.stats("qa")[0] == 4


def test_negative_examples_are_kept_but_never_pending(store: PendingStore) -> None:
    bad = Example("fb:r1:negative:-", "qa", "negative", prompt=PROMPT, text="wrong")
    assert store.add([bad], 0) == 1
    assert store.pending("qa") == []
    assert store.state_of("qa", bad.example_id) == ("train", "negative", None)
    assert store.domains("qa") == []


def test_stats_report_count_and_oldest(store: PendingStore) -> None:
    assert store.stats("qa") == (0, None)
    ids = train_ids(2)
    store.add([sft(ids[0])], 20)
    store.add([sft(ids[1])], 20)
    count, oldest = store.stats("qa")
    assert count == 2 and oldest == 1001.0


def test_pending_respects_limit_and_task(store: PendingStore) -> None:
    ids = train_ids(5)
    store.add([sft(i) for i in ids], 20)
    store.add([sft(i, task="other") for i in ids], 20)
    assert len(store.pending("qa", limit=2)) == 2
    assert len(store.pending("other")) == 5


def test_pending_and_stats_filter_by_kind_so_untrainable_examples_do_not_starve(
    store: PendingStore,
) -> None:
    ids = train_ids(4)
    preferences = [
        Example(
            f"fb:r{i}:preference:-", "qa", "preference", prompt=PROMPT, text="good", rejected="bad"
        )
        for i in ids[:3]
    ]
    store.add(preferences, 0)  # oldest first: without a kind filter they fill the limit
    store.add([sft(ids[3])], 20)
    assert [e.kind for e, _ in store.pending("qa", limit=2, kinds={"sft", "text"})] == ["sft"]
    assert store.stats("qa", kinds={"sft", "text"})[0] == 1
    assert store.stats("qa")[0] == 4
    assert store.pending("qa", kinds=set()) == []


def test_consume_marks_examples_and_queues_outbox_atomically(store: PendingStore) -> None:
    ids = train_ids(3)
    store.add([sft(i) for i in ids], 20)
    eids = [f"fb:r{i}:sft:-" for i in ids]
    message = ("model.events", "qa", b'{"type":"adapter_published"}')
    assert store.consume("qa", "1.0.0", eids[:2] + ["fb:missing"], [message]) == 2
    assert [e.example_id for e, _ in store.pending("qa")] == eids[2:]
    assert store.state_of("qa", eids[0]) == ("train", "consumed", "1.0.0")
    assert store.consume("qa", "1.0.1", eids[:2]) == 0  # consumed once only
    assert store.versions("qa") == ["1.0.0", "1.0.1"]
    assert store.version_state("qa", "1.0.0") == "trained"
    [item] = store.outbox_unsent()
    assert (item.topic, item.key, item.payload) == message
    assert store.outbox_mark_sent(item.id)
    assert not store.outbox_mark_sent(item.id)
    assert store.outbox_unsent() == []


def test_consume_rolls_back_everything_on_error(store: PendingStore) -> None:
    ids = train_ids(2)
    store.add([sft(i) for i in ids], 20)
    eids = [f"fb:r{i}:sft:-" for i in ids]
    with pytest.raises(TypeError):
        store.consume("qa", "1.0.0", eids, [("model.events", "qa", "not bytes", 1)])  # type: ignore[list-item]
    assert len(store.pending("qa")) == 2
    assert store.outbox_unsent() == [] and store.versions("qa") == []


CRASH_SCRIPT = """
import sys
from pathlib import Path
from learner.pending import PendingStore
store = PendingStore(Path(sys.argv[1]))
ids = [e.example_id for e, _ in store.pending("qa")]
store.consume("qa", "1.0.0", ids, [("model.events", "qa", b"event")], replay_capacity=5)
print("not reached")
"""


def test_sigkill_before_commit_loses_the_whole_consume(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    ids = train_ids(3)
    with PendingStore(path) as store:
        store.add([sft(i) for i in ids], 20)
    env = {**os.environ, "LORAFEED_FAILPOINT": "learner.pending.consume_before_commit"}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [sys.executable, "-c", CRASH_SCRIPT, str(path)], env=env, capture_output=True, timeout=60
    )
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()
    with PendingStore(path) as store:
        assert len(store.pending("qa")) == 3
        assert store.outbox_unsent() == []
        assert store.versions("qa") == []
        assert store.replay_size("qa") == (0, 0)


def test_uncommitted_write_is_invisible_after_reopen(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    PendingStore(path).close()
    raw = sqlite3.connect(path, isolation_level=None)
    raw.execute("BEGIN IMMEDIATE")
    raw.execute(
        "INSERT INTO examples (task, example_id, kind, json, split, state, domain, created_at)"
        " VALUES ('qa', 'x', 'sft', '{}', 'train', 'pending', 'd', 0)"
    )
    raw.close()  # no COMMIT
    with PendingStore(path) as store:
        assert store.stats("qa") == (0, None)


def test_outbox_drop_promotion_withdraws_only_that_event(store: PendingStore) -> None:
    published = b'{"type":"adapter_published","version":"1.0.0"}'
    promoted = b'{"type":"adapter_promoted","version":"1.0.0"}'
    store.consume("qa", "1.0.0", [], [OutboxMessage("model.events", "qa", published)])
    store.outbox_add("qa", "1.0.0", [("model.events", "qa", promoted)])
    assert store.outbox_drop_promotion("qa", "1.0.0", "champion changed") == 1
    assert [item.payload for item in store.outbox_unsent()] == [published]


def test_purge_record_erases_pending_heldout_consumed_and_replay(store: PendingStore) -> None:
    chunks = [doc("d1", n, f"chunk {n}") for n in range(40)]
    store.add(chunks + [doc("d2", 0, "other")], 20)
    train = [e.example_id for e, _ in store.pending("qa") if e.record_id == "d1"]
    store.consume("qa", "1.0.0", train[:3], replay_capacity=100, replay_seed=1)
    counts = store.purge_record("d1")
    held = sum(is_heldout(c.example_id, 20) for c in chunks)
    assert (counts.pending, counts.heldout, counts.consumed, counts.replay) == (
        40 - held - 3,
        held,
        3,
        3,
    )
    assert all(e.record_id == "d2" for e, _ in store.pending("qa"))
    assert all(e.record_id == "d2" for e in store.heldout("qa"))
    assert store.replay_sample("qa", 10, seed=0) == []
    raw = sqlite3.connect(store.path)
    kept = raw.execute("SELECT COUNT(*) FROM examples WHERE record_id = 'd1' AND json != ''")
    assert kept.fetchone()[0] == 0
    raw.close()
    assert store.purge_record("d1").total == 0
    assert store.add([chunks[0]], 20) == 1  # a re-upsert after the delete comes back


def test_replace_record_purges_stale_chunks_and_keeps_unchanged_consumed(
    store: PendingStore,
) -> None:
    old = [doc("d1", n, f"text {n}") for n in range(3)]
    store.add(old, 0)
    store.consume("qa", "1.0.0", [old[0].example_id], replay_capacity=10)
    new = [old[0], doc("d1", 1, "text 1 changed")]
    assert store.replace_record("qa", "d1", new, 0) == 1
    assert store.state_of("qa", old[0].example_id) == ("train", "consumed", "1.0.0")
    assert store.state_of("qa", old[2].example_id) == ("train", "purged", None)
    assert [e.text for e, _ in store.pending("qa")] == ["text 1 changed"]
    assert [e.example_id for e in store.replay_sample("qa", 5, 0)] == [old[0].example_id]


def test_replace_record_drops_changed_replay_copies(store: PendingStore) -> None:
    first = doc("d1", 0, "v1")
    store.add([first], 0)
    store.consume("qa", "1.0.0", [first.example_id], replay_capacity=10)
    store.replace_record("qa", "d1", [doc("d1", 0, "v2")], 0)
    assert store.replay_sample("qa", 5, 0) == []
    assert [e.text for e, _ in store.pending("qa")] == ["v2"]


def test_record_examples_of_two_tasks_do_not_collide(store: PendingStore) -> None:
    store.add([doc("d1", 0, "x", task="a")], 0)
    store.add([doc("d1", 0, "x", task="b")], 0)
    assert len(store.pending("a")) == len(store.pending("b")) == 1
    assert store.purge_record("d1").pending == 2


def test_reservoir_continues_identically_across_reopen(tmp_path: Path) -> None:
    examples = [sft(i) for i in range(200)]
    with PendingStore(tmp_path / "once.sqlite") as once:
        once.replay_offer("qa", examples, capacity=10, seed=42)
        expected = once.replay_sample("qa", 100, seed=0)
    path = tmp_path / "split.sqlite"
    for start, end in ((0, 70), (70, 120), (120, 200)):
        with PendingStore(path) as store:
            store.replay_offer("qa", examples[start:end], capacity=10, seed=42)
    with PendingStore(path) as store:
        assert store.replay_sample("qa", 100, seed=0) == expected
        assert store.replay_size("qa") == (10, 200)
    assert len(expected) == 10
    assert any(int(e.request_id[1:]) >= 10 for e in expected if e.request_id)


def test_reservoir_counts_each_example_once(store: PendingStore) -> None:
    examples = [sft(i) for i in range(30)]
    store.add(examples, 0)
    store.replay_offer("qa", examples, capacity=5, seed=1)
    before = store.replay_sample("qa", 5, seed=0)
    store.replay_offer("qa", examples, capacity=5, seed=1)
    assert store.replay_size("qa") == (5, 30)
    assert store.replay_sample("qa", 5, seed=0) == before
    assert store.replay_sample("qa", 2, seed=0) == before[:2]


def test_reservoir_never_keeps_negatives(store: PendingStore) -> None:
    bad = Example("fb:r1:negative:-", "qa", "negative", prompt=PROMPT, text="wrong")
    assert store.replay_offer("qa", [bad], capacity=5, seed=1) == 0


def vote(annotator: str, label: str, item: str = "req-1") -> Vote:
    return Vote("cls", item, annotator, label, "the input text")


def test_agreeing_votes_make_one_label_example(store: PendingStore) -> None:
    assert store.add_vote(vote("a", "pos"), 0) == Agreed("pos", 1.0, 1)
    assert store.add_vote(vote("b", "pos"), 0) == Agreed("pos", 1.0, 2)
    assert store.add_vote(vote("b", "pos"), 0) == Agreed("pos", 1.0, 2)  # repeat ignored
    [(example, _)] = store.pending("cls")
    assert (example.example_id, example.label, example.agreement) == (
        "fb:req-1:label:-",
        "pos",
        1.0,
    )
    assert example.text == "the input text" and example.request_id == "req-1"


def test_later_disagreeing_vote_moves_pending_label_to_review(store: PendingStore) -> None:
    store.add_vote(vote("a", "pos"), 0)
    outcome = store.add_vote(vote("b", "neg"), 0)
    assert isinstance(outcome, Disputed) and outcome.n == 2
    assert store.pending("cls") == []
    [item] = store.review_list("cls")
    assert item.votes == (("a", "pos"), ("b", "neg"))


def test_disagreement_after_consumption_keeps_the_trained_example(store: PendingStore) -> None:
    store.add_vote(vote("a", "pos"), 0)
    store.consume("cls", "1.0.0", ["fb:req-1:label:-"])
    store.add_vote(vote("b", "neg"), 0)
    assert store.state_of("cls", "fb:req-1:label:-") == ("train", "consumed", "1.0.0")
    assert [i.item for i in store.review_list("cls")] == ["req-1"]


def test_min_agreement_below_one_accepts_a_clear_majority(store: PendingStore) -> None:
    for annotator, label in [("a", "pos"), ("b", "pos"), ("c", "neg")]:
        outcome = store.add_vote(vote(annotator, label), 0, min_agreement=0.6)
    assert outcome == Agreed("pos", 2 / 3, 3)
    [(example, _)] = store.pending("cls")
    assert example.agreement == pytest.approx(2 / 3)


def test_ratings_count_once_per_request_and_version(store: PendingStore) -> None:
    assert store.rating_add("qa", "1.0.1", "r1", -1)
    assert not store.rating_add("qa", "1.0.1", "r1", 1)
    store.rating_add("qa", "1.0.1", "r2", 1)
    store.rating_add("qa", None, "r3", -1)
    assert store.rating_stats("qa", "1.0.1") == (2, 1)
    assert store.rating_stats("qa", None) == (1, 1)
    assert store.rating_stats("qa", "9.9.9") == (0, 0)
    with pytest.raises(ValueError, match="rating 0"):
        store.rating_add("qa", None, "r4", 0)


def test_concurrent_writers_from_threads(store: PendingStore) -> None:
    def work(worker: int) -> None:
        for i in range(25):
            store.add([sft(worker * 1000 + i)], 0)
            store.stats("qa")

    threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.stats("qa")[0] == 100


def test_unknown_schema_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    raw = sqlite3.connect(path)
    raw.execute("PRAGMA user_version=99")
    raw.close()
    with pytest.raises(PendingStoreError, match="schema version 99"):
        PendingStore(path)


def test_offset_ranges_merge_consecutive_offsets_per_partition() -> None:
    refs = [OffsetRef("t", 0, o) for o in (5, 3, 4, 9, 4)] + [OffsetRef("t", 1, 2), None]
    assert offset_ranges(refs) == [
        OffsetRange(topic="t", partition=0, first=3, last=5),
        OffsetRange(topic="t", partition=0, first=9, last=9),
        OffsetRange(topic="t", partition=1, first=2, last=2),
    ]
    assert offset_ranges([]) == []
