"""Fuzzing the learner's intake (pure): any decodable feedback event becomes examples, votes, a
rating signal, or one rejection with a dead-letter reason and a detail; any cleaned record
becomes valid examples or none. Hostile strings from tests/security/hostile.py everywhere."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from learner.examples import Example
from learner.intake import examples_from_record, route_feedback
from schemas import DeadLetterReason, RecordCleaned, SchemaError, Topic, decode, encode
from schemas.feedback import ChatMessage, FeedbackReceived
from schemas.tasks import TaskConfig
from tests.security.hostile import BAD_TASKS, STRINGS

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
NOW = datetime(2026, 1, 2, tzinfo=UTC)
TASKS = {
    "chat": TaskConfig(name="chat", kind="generation", base_model="tiny-llama",
                       knowledge_sources=["hostile", "lang=en"]),
    "intent": TaskConfig(name="intent", kind="classification", base_model="tiny-llama",
                         labels=["billing", "other"]),
}
_TEXT = st.one_of(st.sampled_from(sorted(s[:5000] for s in STRINGS.values())), st.text(max_size=40),
                  st.just(""), st.just("   "))
_ID = st.sampled_from(["r-1", "x", "../../etc", "a" * 256, "'; DROP TABLE x; --", "<script>",
                       "%s%n", "jane.roe@example.com"])


@st.composite
def _feedback(draw: st.DrawFn) -> FeedbackReceived | None:
    kind = draw(st.sampled_from(["rating", "correction", "label"]))
    payload = {"rating": draw(st.sampled_from([1, -1])), "correction": draw(_TEXT) or "fix",
               "label": draw(st.sampled_from(["billing", "other", "nope", *STRINGS.values()]))}
    messages = st.lists(st.builds(ChatMessage, role=st.sampled_from(
        ["system", "developer", "user", "assistant", "tool"]), content=_TEXT), min_size=1,
        max_size=3)
    fields = dict(
        schema_version=1, request_id=draw(_ID),
        task=draw(st.sampled_from(["chat"] * 6 + ["intent"] * 6 + ["unknown", *BAD_TASKS[:2]])),
        kind=kind,
        annotator=draw(st.one_of(st.none(), _ID)), adapter_version=draw(st.sampled_from(
            [None, "1.0.0", "1.0.0", "../1.0.0"])), input=draw(st.one_of(_TEXT, messages)),
        output=draw(_TEXT), served_at=NOW, received_at=NOW, **{kind: payload[kind]},
    )
    try:  # as the intake sees it: only what the codec accepts reaches the router
        return decode(Topic.FEEDBACK_EVENTS, encode(FeedbackReceived.model_construct(**fields)))
    except SchemaError:
        return None


@FUZZ
@given(event=_feedback())
def test_feedback_is_routed_or_rejected_with_a_reason(event: FeedbackReceived | None) -> None:
    if event is None:
        return
    routed = route_feedback(event, TASKS)
    if routed.rejection is not None:
        assert isinstance(routed.rejection.reason, DeadLetterReason) and routed.rejection.detail
        assert not (routed.examples or routed.votes or routed.rating)
        return
    for example in routed.examples:
        assert isinstance(example, Example) and example.task == event.task
    for vote in routed.votes:
        assert vote.label in (TASKS[event.task].labels or [])


@FUZZ
@given(text=_TEXT, source=st.sampled_from(["hostile", "other", *STRINGS.values()]),
       metadata=st.dictionaries(st.sampled_from(["lang", "question", "answer", "faq", "x"]),
                                st.one_of(_TEXT, st.booleans(), st.integers()), max_size=4))
def test_records_become_valid_examples_or_none(text: str, source: str, metadata: dict) -> None:
    try:
        record = RecordCleaned(
            schema_version=1, record_id="rec-1", op="upsert", source=source[:200] or "s",
            content_type="text/plain", text=text or "x", metadata=metadata, occurred_at=NOW,
            content_sha256="0" * 64, pii_replaced={}, cleaned_at=NOW,
        )
    except ValueError:
        return
    for task in TASKS.values():
        examples = examples_from_record(record, task)
        assert all(isinstance(e, Example) and e.record_id == "rec-1" for e in examples)
        assert all(len(e.text) <= max(16, task.max_seq_len * 3) for e in examples if e.kind ==
                   "text")
