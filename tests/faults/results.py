"""What the invariant checks return: one `CheckResult` per invariant (counts and violations)
and a scenario's `Report` with its headline numbers (records, requests, feedback, duplicates,
losses)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

MAX_SHOWN = 12  # violations listed per check; the count covers them all


@dataclass(frozen=True)
class CheckResult:
    """One invariant: what it counted and what broke it (empty: it holds)."""

    name: str
    counts: Mapping[str, int]
    violations: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.violations

    def line(self) -> str:
        counts = ", ".join(f"{k} {v}" for k, v in self.counts.items())
        head = f"{'PASS' if self.ok else 'FAIL'} {self.name}: {counts}"
        shown = [f"    - {v}" for v in self.violations[:MAX_SHOWN]]
        more = len(self.violations) - MAX_SHOWN
        return "\n".join([head, *shown] + ([f"    ... {more} more"] if more > 0 else []))


@dataclass
class Violations:
    """Collects violation messages while a check runs."""

    items: list[str] = field(default_factory=list)

    def add(self, message: str) -> None:
        self.items.append(message)

    def result(self, name: str, counts: Mapping[str, int]) -> CheckResult:
        return CheckResult(name, dict(counts), tuple(self.items))


@dataclass(frozen=True)
class Report:
    scenario: str
    results: tuple[CheckResult, ...]

    @property
    def ok(self) -> bool:
        return all(result.ok for result in self.results)

    def count(self, check: str, key: str) -> int:
        for result in self.results:
            if result.name == check:
                return int(result.counts.get(key, 0))
        return 0

    def summary(self) -> dict[str, int]:
        """The headline numbers: records, requests, feedback, duplicates, losses."""
        return {
            "records": self.count("records", "accepted"),
            "requests": self.count("http", "requests"),
            "feedback": self.count("feedback", "accepted"),
            "duplicates": sum(r.counts.get("duplicates", 0) for r in self.results),
            "losses": sum(r.counts.get("losses", 0) for r in self.results),
        }

    def text(self) -> str:
        head = ", ".join(f"{k} {v}" for k, v in self.summary().items())
        lines = [f"== {self.scenario}: {'PASS' if self.ok else 'FAIL'} ({head})"]
        return "\n".join(lines + [result.line() for result in self.results])


REPORTS: list[Report] = []  # every scenario's report in this run, for the closing table
