"""Serving's exceptions: one base, `ServingError`, and a named subclass per failure kind.

Messages name the task, version or value involved; library errors are translated at the
boundary (`raise AdapterRefused(...) from exc`) so the API maps `ServingError` subclasses only.
"""

from __future__ import annotations


class ServingError(RuntimeError):
    """Base of every error serving raises on purpose."""


class UnknownTask(ServingError):
    """The task is not served on this node."""

    def __init__(self, task: object, known: list[str]) -> None:
        super().__init__(f"task {task!r} is not served here; known tasks: {known}")
        self.task = task


class UnknownVersion(ServingError):
    """The version does not exist in the adapter store, or is not loaded in the engine."""

    def __init__(self, task: str, version: object, detail: str = "") -> None:
        message = f"task {task!r} has no usable version {version!r}"
        super().__init__(f"{message}: {detail}" if detail else message)
        self.task = task
        self.version = version


class AdapterRefused(ServingError):
    """An adapter version failed verification, compatibility or the smoke probe; `reason` says
    which check and why. The version is not served."""

    def __init__(self, task: str, version: str, reason: str) -> None:
        super().__init__(f"adapter {task}@{version} refused: {reason}")
        self.task = task
        self.version = version
        self.reason = reason


class WrongTaskKind(ServingError):
    """Scoring asked of a generation task, or generation of a classification task."""

    def __init__(self, task: str, kind: str, wanted: str) -> None:
        super().__init__(f"task {task!r} is a {kind} task; {wanted} needs the other kind")
        self.task = task


class InvalidRequest(ServingError):
    """A request argument is out of range (empty input, max_tokens, temperature, prompt length)."""


class EngineClosed(ServingError):
    """The engine (or the registry) was closed; no more work is accepted."""
