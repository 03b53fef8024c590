"""Pure restart decisions for supervised services: backoff, streaks, health, failure.

No processes here: the supervisor feeds events and a clock in, and gets a new
:class:`Lifecycle` out, so the policy is unit-tested with plain numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

Phase = Literal["starting", "running", "healthy", "backoff", "failed", "stopped"]
_ALIVE: frozenset[str] = frozenset({"starting", "running", "healthy"})


class SupervisorError(RuntimeError):
    """A service spec is invalid, a service cannot be started, or a process would not stop."""


@dataclass(frozen=True)
class RestartPolicy:
    """Restart an exited service after ``backoff_initial`` seconds, doubling up to ``backoff_max``.

    After ``max_restarts`` consecutive restarts the service is marked failed; a run that lasted
    ``stable_after`` seconds starts a new streak (backoff and count reset).
    """

    max_restarts: int = 5
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    stable_after: float = 60.0

    def __post_init__(self) -> None:
        if self.max_restarts < 0:
            raise SupervisorError(f"max_restarts must be >= 0, got {self.max_restarts}")
        if not 0 < self.backoff_initial <= self.backoff_max:
            raise SupervisorError(
                f"need 0 < backoff_initial <= backoff_max, got {self.backoff_initial} "
                f"and {self.backoff_max}"
            )
        if self.stable_after <= 0:
            raise SupervisorError(f"stable_after must be > 0, got {self.stable_after}")

    def delay(self, attempt: int) -> float:
        """Seconds to wait before restart ``attempt`` (0-based) of a streak."""
        return min(self.backoff_max, self.backoff_initial * 2.0 ** min(attempt, 64))


@dataclass(frozen=True)
class Lifecycle:
    """Where one service stands. Changed only by the pure functions below."""

    phase: Phase = "stopped"
    streak: int = 0  # restarts since the last stable run: drives backoff and the failure limit
    restarts: int = 0  # restarts over this supervisor's life, for the status
    started_at: float | None = None
    retry_at: float | None = None
    exit_code: int | None = None


def started(life: Lifecycle, now: float, *, has_health: bool) -> Lifecycle:
    """The process was spawned at ``now``."""
    restarts = life.restarts + (1 if life.phase == "backoff" else 0)
    phase: Phase = "starting" if has_health else "running"
    return replace(life, phase=phase, restarts=restarts, started_at=now, retry_at=None)


def exited(policy: RestartPolicy, life: Lifecycle, now: float, code: int | None) -> Lifecycle:
    """The process exited at ``now`` on its own: schedule a restart, or give up."""
    ran = now - life.started_at if life.started_at is not None else 0.0
    streak = 0 if ran >= policy.stable_after else life.streak
    if streak >= policy.max_restarts:
        return replace(
            life, phase="failed", streak=streak, started_at=None, retry_at=None, exit_code=code
        )
    retry_at = now + policy.delay(streak)
    return replace(
        life, phase="backoff", streak=streak + 1, started_at=None, retry_at=retry_at, exit_code=code
    )


def checked(life: Lifecycle, healthy: bool) -> Lifecycle:
    """A health check of the running process returned ``healthy``."""
    if life.phase not in _ALIVE:
        return life
    if healthy:
        return replace(life, phase="healthy")
    return replace(life, phase="running" if life.phase == "healthy" else life.phase)


def halted(life: Lifecycle) -> Lifecycle:
    """The supervisor stopped the service (a failed service stays failed)."""
    phase: Phase = "failed" if life.phase == "failed" else "stopped"
    return replace(life, phase=phase, started_at=None, retry_at=None)


def next_action(life: Lifecycle, now: float) -> Literal["start", "wait", "none"]:
    """``start`` once a backoff has elapsed, ``wait`` during one, else ``none``."""
    if life.phase != "backoff" or life.retry_at is None:
        return "none"
    return "start" if now >= life.retry_at else "wait"
