"""Regression metrics: errors on the target scale and the rank/linear correlations STS-style tasks report."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import rankdata


def correlation(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson's r. A constant side (or fewer than two values) has no correlation to speak of: 0.0, rather
    than the NaN that would break checkpoint selection and make a constant predictor look undefined."""
    if len(x) < 2:
        return 0.0
    dx, dy = x - x.mean(), y - y.mean()
    denominator = float(np.sqrt((dx * dx).sum() * (dy * dy).sum()))
    return float((dx * dy).sum() / denominator) if denominator > 0 else 0.0


def regression_metrics(predicted: np.ndarray, target: np.ndarray) -> dict[str, Any]:
    """RMSE, MAE, Pearson and Spearman (Pearson of the ranks, ties averaged) of predictions against targets."""
    predicted, target = np.asarray(predicted, dtype=np.float64), np.asarray(target, dtype=np.float64)
    errors = predicted - target
    empty = len(target) == 0
    return {
        "rmse": 0.0 if empty else float(np.sqrt((errors * errors).mean())),
        "mae": 0.0 if empty else float(np.abs(errors).mean()),
        "pearson": correlation(predicted, target),
        "spearman": correlation(rankdata(predicted), rankdata(target)),
        "n": int(len(target)),
    }
