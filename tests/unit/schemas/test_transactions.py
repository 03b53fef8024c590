"""Transactions and scores: defaults, probability ranges, and a label that was scored."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from schemas.transactions import TransactionReceived, TransactionScored


def _score(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "schema_version": 1,
        "event_id": "tx-1",
        "task": "fraud",
        "adapter_version": "1.0.0",
        "label": "fraud",
        "probabilities": {"fraud": 0.8, "legit": 0.2},
        "low_margin": False,
        "scored_at": "2024-05-01T12:00:00Z",
    }
    data.update(changes)
    return data


def test_transaction_task_defaults_to_fraud() -> None:
    received = TransactionReceived.model_validate(
        {
            "schema_version": 1,
            "event_id": "tx-1",
            "fields": {"amount": 3},
            "occurred_at": "2024-05-01T12:00:00Z",
        }
    )
    assert received.task == "fraud"
    assert received.text is None


def test_score_label_must_be_scored() -> None:
    assert TransactionScored.model_validate(_score()).label == "fraud"
    with pytest.raises(ValidationError, match="label 'refund' is not among the scored labels"):
        TransactionScored.model_validate(_score(label="refund"))


@pytest.mark.parametrize(
    "probabilities",
    [{}, {"fraud": 1.5}, {"fraud": -0.1}, {"fraud": float("nan")}, {"fraud": float("inf")}],
)
def test_probabilities_are_checked(probabilities: dict[str, float]) -> None:
    with pytest.raises(ValidationError, match="probabilities"):
        TransactionScored.model_validate(_score(probabilities=probabilities))


def test_adapter_version_may_be_base_model() -> None:
    assert TransactionScored.model_validate(_score(adapter_version=None)).adapter_version is None
