"""Feedback routing rules and record -> example extraction."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from learner.aggregate import Vote
from learner.intake import (
    RatingSignal,
    Rejection,
    chunk_chars,
    examples_from_record,
    record_matches,
    route_feedback,
    scrub_feedback,
)
from lorafeed.privacy import Pseudonymizer, contains_raw_pii
from schemas.dead_letters import DeadLetterReason
from schemas.feedback import FeedbackReceived
from schemas.records import RecordCleaned
from schemas.tasks import TaskConfig

NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
GEN = TaskConfig(name="qa", kind="generation", base_model="tiny-llama", knowledge_sources=["wiki"])
CLS = TaskConfig(name="sent", kind="classification", base_model="tiny", labels=["pos", "neg"])
TASKS = {"qa": GEN, "sent": CLS}
CHAT = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "2+2?"}]


def feedback(task: str = "qa", kind: str = "rating", **fields: Any) -> FeedbackReceived:
    values: dict[str, Any] = {
        "schema_version": 1,
        "request_id": "req-1",
        "task": task,
        "kind": kind,
        "adapter_version": "1.0.2",
        "input": CHAT if task == "qa" else "great movie",
        "output": "5" if task == "qa" else "neg",
        "served_at": NOW,
        "received_at": NOW,
    }
    values.update(fields)
    return FeedbackReceived.model_validate(values)


def test_unknown_task_is_dead_lettered() -> None:
    routed = route_feedback(feedback(task="nope", rating=1), TASKS)
    assert routed.rejection is not None
    assert routed.rejection.reason is DeadLetterReason.UNKNOWN_TASK
    assert "'nope'" in routed.rejection.detail
    assert routed.examples == () and routed.votes == ()


def test_positive_rating_on_generation_is_sft_and_a_watch_signal() -> None:
    routed = route_feedback(feedback(rating=1, annotator="ann-7"), TASKS)
    [example] = routed.examples
    assert example.example_id == "fb:req-1:sft:ann-7"
    assert (example.kind, example.text, example.request_id) == ("sft", "5", "req-1")
    assert example.prompt == (("system", "be brief"), ("user", "2+2?"))
    assert routed.rating == RatingSignal("qa", "1.0.2", "req-1", 1)


def test_negative_rating_on_generation_is_a_negative_example() -> None:
    routed = route_feedback(feedback(rating=-1, adapter_version=None), TASKS)
    [example] = routed.examples
    assert (example.example_id, example.kind, example.text) == (
        "fb:req-1:negative:-",
        "negative",
        "5",
    )
    assert routed.rating == RatingSignal("qa", None, "req-1", -1)


def test_rating_of_an_empty_answer_is_only_a_signal() -> None:
    routed = route_feedback(feedback(rating=1, output=""), TASKS)
    assert routed.examples == () and routed.rating is not None


def test_correction_on_generation_gives_sft_and_preference() -> None:
    routed = route_feedback(feedback(kind="correction", correction="4"), TASKS)
    sft, pref = routed.examples
    assert (sft.example_id, sft.kind, sft.text) == ("fb:req-1:sft:-", "sft", "4")
    assert (pref.kind, pref.text, pref.rejected) == ("preference", "4", "5")
    assert routed.rating is None


def test_generation_examples_keep_the_ids_of_the_passages_they_were_served_with() -> None:
    ids = ["kb-refund#00000", "kb-ship#00003"]
    for event in (
        feedback(kind="correction", correction="4", retrieved_passage_ids=ids),
        feedback(rating=1, retrieved_passage_ids=ids),
        feedback(rating=-1, retrieved_passage_ids=ids),
    ):
        examples = route_feedback(event, TASKS).examples
        assert examples and all(e.passages == tuple(ids) for e in examples), examples
    assert route_feedback(feedback(rating=1), TASKS).examples[0].passages == ()


def test_correction_equal_to_the_output_gives_no_preference() -> None:
    routed = route_feedback(feedback(kind="correction", correction="5"), TASKS)
    assert [e.kind for e in routed.examples] == ["sft"]


def test_string_input_on_generation_becomes_a_user_turn() -> None:
    routed = route_feedback(feedback(rating=1, input="hello"), TASKS)
    assert routed.examples[0].prompt == (("user", "hello"),)


def test_label_on_classification_is_a_vote() -> None:
    routed = route_feedback(feedback("sent", "label", label="pos", annotator="a1"), TASKS)
    assert routed.votes == (Vote("sent", "req-1", "a1", "pos", "great movie"),)
    assert routed.examples == () and routed.rejection is None


def test_label_without_annotator_votes_as_dash() -> None:
    routed = route_feedback(feedback("sent", "label", label="neg"), TASKS)
    assert routed.votes[0].annotator == "-"


@pytest.mark.parametrize(
    ("event", "reason", "needle"),
    [
        (feedback("sent", "label", label="meh"), DeadLetterReason.LABEL_NOT_IN_SET, "'meh'"),
        (feedback("qa", "label", label="pos"), DeadLetterReason.KIND_NOT_FOR_TASK, "generation"),
        (
            feedback("sent", "correction", correction="pos"),
            DeadLetterReason.KIND_NOT_FOR_TASK,
            "classification",
        ),
        (
            feedback("sent", "label", label="pos", input=CHAT),
            DeadLetterReason.INVALID_FIELD,
            "2 chat messages",
        ),
        (
            feedback("sent", "label", label="pos", input=""),
            DeadLetterReason.INVALID_FIELD,
            "text is empty",
        ),
        (
            feedback("qa", "rating", rating=1, input=" "),
            DeadLetterReason.INVALID_FIELD,
            "prompt turns are required",
        ),
    ],
)
def test_rejections_name_the_problem(
    event: FeedbackReceived, reason: DeadLetterReason, needle: str
) -> None:
    routed = route_feedback(event, TASKS)
    assert routed.rejection is not None
    assert routed.rejection.reason is reason
    assert needle in routed.rejection.detail


def test_rating_on_classification_is_monitoring_only() -> None:
    routed = route_feedback(feedback("sent", "rating", rating=-1), TASKS)
    assert routed.examples == () and routed.votes == ()
    assert routed.rating == RatingSignal("sent", "1.0.2", "req-1", -1)


def record(text: str, source: str = "wiki", op: str = "upsert", **metadata: Any) -> RecordCleaned:
    return RecordCleaned.model_validate(
        {
            "schema_version": 1,
            "record_id": "doc-1",
            "op": op,
            "source": source,
            "content_type": "text/plain",
            "text": text,
            "metadata": metadata,
            "occurred_at": NOW,
            "content_sha256": "a" * 64,
            "cleaned_at": NOW,
        }
    )


def test_record_matching_by_source_or_metadata_filter() -> None:
    task = GEN.model_copy(update={"knowledge_sources": ["wiki", "team=support", "faq=true"]})
    assert record_matches(record("x"), task)
    assert record_matches(record("x", source="crm", team="support"), task)
    assert record_matches(record("x", source="crm", faq=True), task)
    assert not record_matches(record("x", source="crm", team="sales"), task)
    assert not record_matches(record("x", source="crm"), GEN)


def test_plain_record_becomes_text_chunks() -> None:
    text = "\n\n".join(f"Paragraph {i}. " + "word " * 150 for i in range(6))
    examples = examples_from_record(record(text), GEN)
    assert len(examples) > 1
    assert [e.example_id for e in examples] == [f"rec:doc-1:{n}" for n in range(len(examples))]
    budget = int(GEN.max_seq_len * 3)
    assert all(e.kind == "text" and len(e.text) <= budget for e in examples)
    assert all(e.domain == "wiki" and e.record_id == "doc-1" for e in examples)
    assert " ".join(" ".join(e.text.split()) for e in examples) == " ".join(text.split())


def test_faq_metadata_becomes_one_sft_pair() -> None:
    [example] = examples_from_record(
        record("ignored body", question="How do I reset?", answer="Click reset."), GEN
    )
    assert (example.kind, example.prompt, example.text) == (
        "sft",
        (("user", "How do I reset?"),),
        "Click reset.",
    )


def test_q_and_a_text_becomes_sft_pairs() -> None:
    text = "Q: What is A?\nA: The first letter.\nQ: And B?\nA: The second,\nwith two lines."
    examples = examples_from_record(record(text), GEN)
    assert [(e.prompt[0][1], e.text) for e in examples] == [
        ("What is A?", "The first letter."),
        ("And B?", "The second,\nwith two lines."),
    ]


def test_records_give_nothing_for_deletes_classification_and_other_sources() -> None:
    assert examples_from_record(record("", op="delete"), GEN) == []
    assert (
        examples_from_record(record("text"), CLS.model_copy(update={"knowledge_sources": ["wiki"]}))
        == []
    )
    assert examples_from_record(record("text", source="crm"), GEN) == []


def test_chunking_splits_long_sentences_and_unspaced_text() -> None:
    assert chunk_chars("a b c", 100) == ["a b c"]
    cjk = "退款政策" * 50
    chunks = chunk_chars(cjk, 32)
    assert "".join(chunks) == cjk and all(len(c) <= 32 for c in chunks)
    long_sentence = " ".join(f"w{i}" for i in range(100))
    chunks = chunk_chars(long_sentence, 40)
    assert all(len(c) <= 40 for c in chunks) and " ".join(chunks) == long_sentence


PSEUDO = Pseudonymizer(b"k" * 32)


def _scrub(text: str) -> str:
    return PSEUDO.pseudonymize(text).text


def test_raw_personal_data_written_straight_to_the_topic_is_pseudonymized_on_intake() -> None:
    raw = feedback(
        kind="correction",
        correction="Mail jane.doe@example.com or call +44 20 7946 0958",
        annotator="jane.doe@example.com",
        input=[{"role": "user", "content": "I am jane.doe@example.com"}],
        output="Hello jane.doe@example.com",
    )
    scrubbed = scrub_feedback(raw, _scrub)

    assert isinstance(scrubbed, FeedbackReceived)
    text = scrubbed.model_dump_json()
    assert "jane.doe" not in text and "7946" not in text and contains_raw_pii(text) == []
    assert scrubbed.correction == _scrub(raw.correction or "")
    assert scrubbed.annotator == _scrub("jane.doe@example.com")
    # already pseudonymized (what serving publishes): unchanged, so redeliveries count once
    assert scrub_feedback(scrubbed, _scrub) == scrubbed


def test_a_field_that_pseudonyms_push_past_its_limit_is_rejected_by_name_not_value() -> None:
    raw = feedback(rating=1, annotator="jane@example.com")
    rejected = scrub_feedback(raw, lambda text: text.replace("@", "@" + "x" * 500))

    assert isinstance(rejected, Rejection)
    assert rejected.reason is DeadLetterReason.INVALID_FIELD
    assert "annotator" in rejected.detail and "example.com" not in rejected.detail
