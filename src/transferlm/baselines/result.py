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
