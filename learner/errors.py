"""The learner's exceptions: one base, `LearnerError`, and a named subclass per failure kind.

Messages name the offending values; library errors are translated at the boundary
(`raise FisherError(...) from exc`) so callers catch `LearnerError` only.
"""

from __future__ import annotations


class LearnerError(RuntimeError):
    """Base of every error the learner raises on purpose."""


class FisherError(LearnerError):
    """The Fisher estimate cannot be computed: no samples, bad batches or bad parameters."""


class EwcStateError(LearnerError):
    """Fisher, anchor and parameters disagree (names, shapes) or an EWC state file is unreadable."""


class GateInputError(LearnerError):
    """The gate was given unusable evaluation results (no examples, mismatched or non-finite)."""


class InvalidTaskName(LearnerError):
    """A task name that is not a safe path segment (see `schemas.fields.TaskName`)."""


class InvalidVersion(LearnerError):
    """A version string that is not MAJOR.MINOR.PATCH, or a bump past the largest part."""


class VersionTaken(LearnerError):
    """Another learner already claimed this version of the task; versions are never reused."""


class TrainingError(LearnerError):
    """Training cannot start or went wrong (bad step count, non-finite loss)."""


class InvalidLineage(LearnerError):
    """A parent manifest's lineage entries (label set, domains, tokenizer) are malformed."""


class InvalidExample(LearnerError):
    """A training example with a bad kind, missing kind-specific field or malformed JSON."""


class InvalidVote(LearnerError):
    """A label vote with an empty field, or votes that cannot be aggregated together."""


class PendingStoreError(LearnerError):
    """The pending-example store is unusable: unreadable file, unknown schema, bad arguments."""


class ReviewNotFound(LearnerError):
    """No open review item for this task and item (never disputed, or already resolved)."""


class LabelNotInSet(LearnerError):
    """A label that is not in the task's label set."""


class LockLost(LearnerError):
    """The task lock is no longer held by this owner (expired or taken over)."""
