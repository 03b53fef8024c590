"""What a demo run found, as plain data (pure): the summary tables and the HTML report are both
rendered from a :class:`DemoResults`, so they always agree and are unit-tested without a stack."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

NOTES: dict[str, str] = {  # what a reader needs to weigh a matrix's numbers
    "support": "greedy 24-token answers move little after a few steps on a dozen corrections "
               "(F1 on a few questions is noisy); the gate's log-likelihood of the house-style "
               "answers is the learning signal",
}


@dataclass(frozen=True)
class IngestResult:
    """The knowledge step: records published and what the streams worker made of them."""

    published: int
    malformed: int
    indexed: int
    aliases: int
    chunks: int
    dead_letters: dict[str, int]
    pii: dict[str, int]
    seconds: float


@dataclass(frozen=True)
class VersionResult:
    """One adapter version the learner produced, from its manifest and the model events."""

    task: str
    version: str
    parent: str | None
    promoted: bool
    reason: str
    gate: dict[str, float]
    examples: int
    train_seconds: float
    feedback_request_ids: int
    activations: dict[str, float] = field(default_factory=dict)  # node -> s after promotion


@dataclass(frozen=True)
class EvalMatrix:
    """`values[row][column]`: `metric` of each version (row; "base" first) on each eval set."""

    task: str
    metric: str
    columns: tuple[str, ...]
    rows: tuple[str, ...]
    values: tuple[tuple[float, ...], ...]

    def __post_init__(self) -> None:
        if len(self.values) != len(self.rows) or any(
            len(row) != len(self.columns) for row in self.values
        ):
            raise ValueError(f"eval matrix of {self.task} is not {len(self.rows)} x "
                             f"{len(self.columns)}: {self.values}")

    def before_after(self) -> list[tuple[str, float, float]]:
        """(eval set, first row's value, last row's value) per column."""
        if not self.rows:
            return []
        return [(column, self.values[0][c], self.values[-1][c])
                for c, column in enumerate(self.columns)]

    def forgetting(self) -> list[tuple[str, float]]:
        """(eval set, best value of an earlier version - the last version's) per column, over
        versions only (the base row is where learning starts, not something to retain):
        > 0 means the last version forgot some of what an earlier one knew."""
        versions = self.values[1:]
        if len(versions) < 2:
            return []
        return [(column, max(row[c] for row in versions[:-1]) - versions[-1][c])
                for c, column in enumerate(self.columns)]


@dataclass(frozen=True)
class FeedbackResult:
    corrections: int = 0
    upvotes: int = 0
    downvotes: int = 0
    labels: int = 0
    disputed_items: int = 0
    noisy_labels: int = 0
    refused: int = 0


@dataclass(frozen=True)
class DemoResults:
    """Everything the summary and the report show."""

    scenario: str
    wall_seconds: float
    ingest: IngestResult
    questions: int
    grounded: int  # questions whose passages included a record that answers them
    scored_http: int
    streamed_scored: int
    feedback: FeedbackResult
    versions: tuple[VersionResult, ...]
    matrices: tuple[EvalMatrix, ...]
    latencies: dict[str, tuple[float, ...]]
    samples: tuple[tuple[str, str, str], ...] = ()  # (question, answer, cited record)
    nodes: tuple[str, ...] = ()
    step_seconds: dict[str, float] = field(default_factory=dict)
    feedback_request_ids: tuple[str, ...] = ()  # every request the apps sent feedback on

    def to_json(self) -> str:
        """Everything as JSON (for scripts and tests; the report is for people)."""
        return json.dumps(asdict(self), indent=2, sort_keys=True, allow_nan=False,
                          default=str) + "\n"


def percentile(values: Sequence[float], q: float) -> float:
    """The `q` quantile (0..1) by linear interpolation; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def gate_summary(gate: dict[str, float]) -> list[tuple[str, float, float]]:
    """(metric, candidate, champion) for the target and every guarded metric of a gate."""
    rows = []
    if "target.candidate" in gate:
        rows.append(("target", gate["target.candidate"], gate["target.champion"]))
    for key in sorted(gate):
        if key.endswith(".candidate") and not key.startswith("target."):
            name = key[: -len(".candidate")]
            rows.append((name, gate[key], gate.get(f"{name}.champion", math.nan)))
    return rows


def retention_rows(versions: Sequence[VersionResult]) -> list[tuple[str, str, str, float]]:
    """(task@version, guarded metric, regression, budget-relevant value) of every gate: how much
    each candidate regressed on retained data and the probe (negative = improved)."""
    rows = []
    for version in versions:
        for key, value in sorted(version.gate.items()):
            if key.endswith(".regression"):
                name = key[: -len(".regression")]
                rows.append((f"{version.task}@{version.version}", name, f"{value:+.4f}", value))
    return rows
