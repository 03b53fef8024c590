"""The invariant checker run after every fault scenario and at the end of the soak.

`observe.observe(...)` snapshots what the system holds (topics, Milvus, the learner's SQLite,
the adapter store, node logs) into an `Observed`; `check_all` runs the pure checks of
`invariants_data` (records, feedback), `invariants_adapters` (store, model events) and
`invariants_http` (5xx outside crash windows, versions named by answers) over it and returns a
`Report`: one `CheckResult` per invariant with its counts and violations. A scenario passes when
no check has a violation; `Report.summary()` gives the headline numbers (records, requests,
feedback, duplicates, losses).
"""

from __future__ import annotations

from tests.faults import invariants_adapters, invariants_data, invariants_http
from tests.faults.observe import Observed
from tests.faults.results import CheckResult, Report

__all__ = ["CheckResult", "Report", "check_all"]


def check_all(observed: Observed, scenario: str = "") -> Report:
    """Every invariant over one snapshot."""
    return Report(
        scenario,
        (
            invariants_data.check_records(observed),
            invariants_data.check_feedback(observed),
            invariants_adapters.check_adapters(observed),
            invariants_http.check_http(observed),
            invariants_http.check_versions(observed),
        ),
    )
