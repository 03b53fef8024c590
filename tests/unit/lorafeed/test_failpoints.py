"""Failpoints kill the process exactly where and when they are armed, and typos fail loudly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lorafeed import failpoints
from lorafeed.failpoints import FailpointError

SCRIPT = textwrap.dedent(
    """
    from lorafeed import failpoints
    POINT = failpoints.declare("test.mid_batch", "between two items of a batch")
    failpoints.declare("test.elsewhere", "never reached here")
    failpoints.check_armed()
    for i in range(3):
        print("before", i, flush=False)
        failpoints.failpoint(POINT)
        print("after", i, flush=False)
    print("done")
    """
)
# The child imports lorafeed from this checkout, installed or not.
ROOT = Path(failpoints.__file__).resolve().parents[1]


def run_script(armed: str | None) -> subprocess.CompletedProcess[str]:
    # Buffered stdout, so the test shows that the failpoint flushes before it kills.
    dropped = {failpoints.ENV_VAR, "PYTHONUNBUFFERED"}
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    if armed is not None:
        env[failpoints.ENV_VAR] = armed
    return subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.fixture(autouse=True)
def isolated_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(failpoints, "_registry", {})
    monkeypatch.delenv(failpoints.ENV_VAR, raising=False)
    failpoints.reload()


def test_armed_point_kills_the_process_there() -> None:
    result = run_script("test.mid_batch")

    assert result.returncode == -signal.SIGKILL
    # Buffered output written before the point is flushed; nothing after it is printed.
    assert result.stdout.splitlines() == ["before 0"]
    assert "failpoint test.mid_batch hit, pid " in result.stderr


def test_hit_count_fires_on_the_nth_pass() -> None:
    result = run_script("test.elsewhere,test.mid_batch@3")

    assert result.returncode == -signal.SIGKILL
    assert result.stdout.splitlines() == ["before 0", "after 0", "before 1", "after 1", "before 2"]


def test_unset_or_count_never_reached_has_no_effect() -> None:
    for armed in (None, "", "test.mid_batch@4"):
        result = run_script(armed)
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines()[-1] == "done"


def test_undeclared_armed_name_fails_check_in_subprocess() -> None:
    result = run_script("test.mid_bacth")

    assert result.returncode == 1
    assert "FailpointError" in result.stderr
    assert "test.mid_bacth" in result.stderr


def test_check_armed_names_the_undeclared_point() -> None:
    failpoints.declare("streams.after_upsert", "after upsert, before commit")
    failpoints.reload({failpoints.ENV_VAR: "streams.after_upsert,streams.after_upsret@2"})

    with pytest.raises(FailpointError, match=r"streams\.after_upsret") as info:
        failpoints.check_armed()
    assert "declared: streams.after_upsert" in str(info.value)


def test_check_armed_passes_when_declared_or_unarmed() -> None:
    failpoints.check_armed()
    failpoints.declare("learner.before_rename", "candidate written aside, not renamed")
    failpoints.reload({failpoints.ENV_VAR: "learner.before_rename@2"})
    failpoints.check_armed()
    assert failpoints.armed() == {"learner.before_rename": 2}


def test_unarmed_point_in_process_is_a_no_op() -> None:
    failpoints.reload({failpoints.ENV_VAR: "some.other"})
    for _ in range(3):
        failpoints.failpoint("learner.before_rename")


@pytest.mark.parametrize("name", ["", "Upper", "has space", "semi;colon", "a/b", "x@2"])
def test_bad_names_are_rejected(name: str) -> None:
    with pytest.raises(FailpointError, match="invalid failpoint name"):
        failpoints.declare(name, "whatever")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("Bad.Name", "invalid failpoint name 'Bad.Name'"),
        ("a.b@0", "invalid hit count '0'"),
        ("a.b@x", "invalid hit count 'x'"),
        ("a.b@", "invalid hit count ''"),
        ("a.b,a.b@2", "'a.b' is armed twice"),
    ],
)
def test_bad_env_values_are_rejected(value: str, message: str) -> None:
    with pytest.raises(FailpointError, match=message):
        failpoints.reload({failpoints.ENV_VAR: value})


def test_parse_skips_blanks_and_defaults_to_first_hit() -> None:
    assert failpoints.parse(" a.b , ,c:d@5,") == {"a.b": 1, "c:d": 5}


def test_declare_returns_name_and_registers_description() -> None:
    name = failpoints.declare("serving.after_load", "adapter loaded aside, before swap")

    assert name == "serving.after_load"
    assert failpoints.declared() == {"serving.after_load": "adapter loaded aside, before swap"}
    assert failpoints.declare(name, "adapter loaded aside, before swap") == name
    with pytest.raises(FailpointError, match="already declared"):
        failpoints.declare(name, "something else")
