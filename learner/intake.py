"""Feedback and record intake (pure): events in, examples / votes / ratings / rejections out.

The learner's consume loop calls `route_feedback` per `FeedbackReceived` and
`examples_from_record` per `RecordCleaned`, then writes the result to the pending store.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from pydantic import ValidationError

from learner.aggregate import ANONYMOUS, Vote
from learner.errors import InvalidExample, InvalidVote
from learner.examples import Example, ExampleKind, Turn
from lorafeed.textsplit import cjk_ratio
from schemas.dead_letters import DeadLetterReason
from schemas.feedback import ChatMessage, FeedbackReceived
from schemas.records import RecordCleaned
from schemas.tasks import TaskConfig

# Rough characters per token when sizing "text" chunks without a tokenizer.
CHARS_PER_TOKEN = 3.0
CJK_CHARS_PER_TOKEN = 1.0
_QA_PAIR = re.compile(r"(?:^|\n)\s*Q:\s*(.+?)\s*\n\s*A:\s*(.+?)(?=\n\s*Q:|\Z)", re.S)
_SENTENCE_END = re.compile(r"(?<=[.!?。！？;；])\s*")


@dataclass(frozen=True)
class RatingSignal:
    """A +1/-1 rating of an answer served by `version` (None = base model), for the watch."""

    task: str
    version: str | None
    request_id: str
    rating: int


@dataclass(frozen=True)
class Rejection:
    """Why a feedback event goes to the dead-letter topic."""

    reason: DeadLetterReason
    detail: str


@dataclass(frozen=True)
class Routed:
    """What one feedback event becomes; a rejection comes alone."""

    examples: tuple[Example, ...] = ()
    votes: tuple[Vote, ...] = ()
    rating: RatingSignal | None = None
    rejection: Rejection | None = None


def scrub_feedback(
    event: FeedbackReceived, pseudonymize: Callable[[str], str]
) -> FeedbackReceived | Rejection:
    """`event` with every free-text field pseudonymized once more.

    Serving nodes already pseudonymize what they publish and tokens are left as they are, so
    this changes nothing for them; it keeps raw PII out of the pending store when some other
    producer writes to feedback.events. A field the tokens push past its limit is a rejection
    naming the field (never its value).
    """
    values = event.model_dump()
    if isinstance(event.input, str):
        values["input"] = pseudonymize(event.input)
    else:
        values["input"] = [
            {"role": turn.role, "content": pseudonymize(turn.content)} for turn in event.input
        ]
    values["output"] = pseudonymize(event.output)
    for name in ("correction", "annotator"):
        if values[name] is not None:
            values[name] = pseudonymize(values[name])
    try:
        return FeedbackReceived.model_validate(values)
    except ValidationError as exc:
        fields = sorted({".".join(str(part) for part in error["loc"]) for error in exc.errors()})
        return Rejection(
            DeadLetterReason.INVALID_FIELD,
            f"{', '.join(fields)}: invalid once personal data is replaced by pseudonyms",
        )


def route_feedback(event: FeedbackReceived, tasks: Mapping[str, TaskConfig]) -> Routed:
    """Route one feedback event by task kind and feedback kind (see CONTRACTS.md rules)."""
    task = tasks.get(event.task)
    if task is None:
        return _reject(DeadLetterReason.UNKNOWN_TASK, f"task {event.task!r} is not configured")
    try:
        if task.kind == "classification":
            return _route_classification(event, task)
        return _route_generation(event)
    except (InvalidExample, InvalidVote) as exc:
        return _reject(DeadLetterReason.INVALID_FIELD, str(exc))


def _route_generation(event: FeedbackReceived) -> Routed:
    if event.kind == "label":
        return _reject(
            DeadLetterReason.KIND_NOT_FOR_TASK,
            f"label feedback on generation task {event.task!r}",
        )
    prompt = _prompt_turns(event.input)
    annotator = event.annotator or ANONYMOUS

    def make(kind: ExampleKind, text: str, rejected: str | None = None) -> Example:
        return Example(
            f"fb:{event.request_id}:{kind}:{annotator}",
            event.task,
            kind,
            prompt=prompt,
            text=text,
            rejected=rejected,
            request_id=event.request_id,
            passages=tuple(event.retrieved_passage_ids),
        )

    if event.kind == "correction":
        assert event.correction is not None
        examples = [make("sft", event.correction)]
        if event.output.strip() and event.output != event.correction:
            examples.append(make("preference", event.correction, rejected=event.output))
        return Routed(examples=tuple(examples))
    signal = _rating_signal(event)
    if not event.output.strip():
        return Routed(rating=signal)
    example = make("sft" if event.rating == 1 else "negative", event.output)
    return Routed(examples=(example,), rating=signal)


def _route_classification(event: FeedbackReceived, task: TaskConfig) -> Routed:
    if event.kind == "correction":
        return _reject(
            DeadLetterReason.KIND_NOT_FOR_TASK,
            f"correction feedback on classification task {event.task!r}",
        )
    if event.kind == "rating":
        return Routed(rating=_rating_signal(event))
    assert event.label is not None
    labels = task.labels or []
    if event.label not in labels:
        return _reject(
            DeadLetterReason.LABEL_NOT_IN_SET,
            f"label {event.label!r} not in task {task.name!r} labels {labels}",
        )
    if not isinstance(event.input, str):
        return _reject(
            DeadLetterReason.INVALID_FIELD,
            f"classification input must be text, got {len(event.input)} chat messages",
        )
    vote = Vote(
        task=event.task,
        item=event.request_id,
        annotator=event.annotator or ANONYMOUS,
        label=event.label,
        text=event.input,
    )
    return Routed(votes=(vote,))


def _prompt_turns(value: list[ChatMessage] | str) -> tuple[Turn, ...]:
    if isinstance(value, str):
        return (("user", value),) if value.strip() else ()
    return tuple((message.role, message.content) for message in value)


def _rating_signal(event: FeedbackReceived) -> RatingSignal:
    assert event.rating is not None
    version = None if event.adapter_version is None else str(event.adapter_version)
    return RatingSignal(event.task, version, event.request_id, int(event.rating))


def _reject(reason: DeadLetterReason, detail: str) -> Routed:
    return Routed(rejection=Rejection(reason, detail))


def record_matches(record: RecordCleaned, task: TaskConfig) -> bool:
    """Whether `task.knowledge_sources` selects `record`: a source name or "key=value" filter."""
    for selector in task.knowledge_sources:
        key, sep, value = selector.partition("=")
        if not sep:
            if record.source == selector:
                return True
        elif key in record.metadata and _metadata_str(record.metadata[key]) == value:
            return True
    return False


def _metadata_str(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def examples_from_record(record: RecordCleaned, task: TaskConfig) -> list[Example]:
    """Training examples from a cleaned record the task's knowledge sources select.

    FAQ-like records (metadata question+answer, or "Q: ... A: ..." text) give sft pairs on
    generation tasks; other text gives "text" chunks of about `max_seq_len` tokens. Deletes,
    classification tasks and unselected records give nothing.
    """
    if record.op != "upsert" or task.kind != "generation" or not record_matches(record, task):
        return []
    pairs = _qa_pairs(record)
    if pairs:
        return [
            Example(
                f"rec:{record.record_id}:{n}",
                task.name,
                "sft",
                prompt=(("user", question),),
                text=answer,
                domain=record.source,
                record_id=record.record_id,
            )
            for n, (question, answer) in enumerate(pairs)
        ]
    return [
        Example(
            f"rec:{record.record_id}:{n}",
            task.name,
            "text",
            text=chunk,
            domain=record.source,
            record_id=record.record_id,
        )
        for n, chunk in enumerate(chunk_chars(record.text, char_budget(record.text, task)))
    ]


def _qa_pairs(record: RecordCleaned) -> list[tuple[str, str]]:
    question = record.metadata.get("question")
    answer = record.metadata.get("answer")
    if isinstance(question, str) and isinstance(answer, str):
        return [(question.strip(), answer.strip())] if question.strip() and answer.strip() else []
    faq = record.metadata.get("faq") is True or record.text.lstrip().startswith("Q:")
    if not faq:
        return []
    found = [(q.strip(), a.strip()) for q, a in _QA_PAIR.findall(record.text)]
    return [(q, a) for q, a in found if q and a]


def char_budget(text: str, task: TaskConfig) -> int:
    """Characters per "text" chunk: `max_seq_len` tokens at a rough chars-per-token rate."""
    per_token = CJK_CHARS_PER_TOKEN if cjk_ratio(text) > 0.3 else CHARS_PER_TOKEN
    return max(16, int(task.max_seq_len * per_token))


def chunk_chars(text: str, budget: int) -> list[str]:
    """Greedy chunks of at most `budget` chars, cut at paragraphs, then sentences, then words."""
    chunks: list[str] = []
    current = ""
    for piece in _pieces(text, budget):
        joined = f"{current}\n\n{piece}" if current else piece
        if len(joined) <= budget:
            current = joined
            continue
        if current:
            chunks.append(current)
        current = piece
    if current:
        chunks.append(current)
    return chunks


def _pieces(text: str, budget: int) -> list[str]:
    pieces: list[str] = []
    for paragraph in (p.strip() for p in re.split(r"\n\s*\n", text)):
        if not paragraph:
            continue
        if len(paragraph) <= budget:
            pieces.append(paragraph)
            continue
        for sentence in (s.strip() for s in _SENTENCE_END.split(paragraph)):
            pieces.extend(_split_long(sentence, budget) if sentence else [])
    return pieces


def _split_long(sentence: str, budget: int) -> list[str]:
    if len(sentence) <= budget:
        return [sentence]
    out: list[str] = []
    current = ""
    for word in sentence.split():
        while len(word) > budget:  # a "word" longer than the budget (e.g. unspaced CJK)
            if current:
                out.append(current)
                current = ""
            out.append(word[:budget])
            word = word[budget:]
        joined = f"{current} {word}" if current else word
        if len(joined) <= budget:
            current = joined
        else:
            out.append(current)
            current = word
    if current:
        out.append(current)
    return out
