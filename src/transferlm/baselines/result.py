"""What a fitted (non-neural) baseline returns to `compare` and `curve`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class BaselineResult:
    metrics: dict[str, dict[str, Any]]  # split -> task metrics, plus "per_example" (None where undefined)
    train_seconds: float
    parameters: int
    chosen: dict[str, Any]


def scored_splits(task, predicted: dict[str, Any], targets: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The task's metrics of each split's predictions (on the target scale), with its per-example scores."""
    return {name: {**task.score(predicted[name], targets[name]),
                   "per_example": task.scores_per_example(predicted[name], targets[name])} for name in predicted}
