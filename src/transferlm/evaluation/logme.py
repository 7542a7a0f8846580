"""LogME: how well fixed features suit a labelled task, without training (You et al., "LogME: Practical Assessment
of Pre-trained Models for Transfer Learning", ICML 2021).

The score is the log marginal likelihood (the evidence) of the labels under Bayesian linear regression on the
features, per example, with the prior precision ``alpha`` and the noise precision ``beta`` set to maximise it by
the paper's fixed-point iteration. A classification task is scored as one regression per class on the one-hot
targets, averaged. Higher is better; the values compare models on the same data and mean nothing on their own.

One decomposition of the feature matrix serves every target column, so a few thousand examples take well under a
second.
"""

from __future__ import annotations

import math

import numpy as np

MAX_ITERATIONS = 100
TOLERANCE = 1e-3  # relative change of alpha / beta between iterations at which the fixed point is taken


def _evidence(singular: np.ndarray, projected: np.ndarray, outside: float, n: int, d: int) -> float:
    """Maximised evidence per example of one target column.

    ``singular``: the feature matrix's singular values; ``projected``: the target projected on the left singular
    vectors; ``outside``: the squared norm of the target's part outside their span."""
    eigen = singular ** 2
    alpha, beta = 1.0, 1.0
    for _ in range(MAX_ITERATIONS):
        shrink = beta * eigen / (alpha + beta * eigen)
        gamma = float(shrink.sum())
        mean = beta * singular * projected / (alpha + beta * eigen)  # posterior mean in the right singular basis
        mean_sq = float((mean ** 2).sum())
        residual = float(((singular * mean - projected) ** 2).sum()) + outside
        new_alpha = gamma / max(mean_sq, 1e-12)
        new_beta = (n - gamma) / max(residual, 1e-12)
        done = abs(new_alpha - alpha) / alpha < TOLERANCE and abs(new_beta - beta) / beta < TOLERANCE
        alpha, beta = new_alpha, new_beta
        if done:
            break
    mean = beta * singular * projected / (alpha + beta * eigen)
    mean_sq = float((mean ** 2).sum())
    residual = float(((singular * mean - projected) ** 2).sum()) + outside
    log_det = float(np.log(alpha + beta * eigen).sum()) + (d - len(eigen)) * math.log(alpha)
    evidence = (n * math.log(beta) + d * math.log(alpha) - n * math.log(2 * math.pi) - beta * residual
                - alpha * mean_sq - log_det) / 2
    return evidence / n


def logme(features: np.ndarray, targets: np.ndarray, regression: bool = False) -> float:
    """LogME of ``features`` (n x d) for ``targets``: class indices (n,), or real values (n,) or (n, k) with
    ``regression``."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or len(features) != len(targets):
        raise ValueError(f"logme: features must be n x d with one target per row, got {features.shape} for "
                         f"{len(targets)} targets")
    n, d = features.shape
    if regression:
        columns = np.asarray(targets, dtype=np.float64).reshape(n, -1)
    else:
        labels = np.asarray(targets).astype(int)
        columns = (labels[:, None] == np.unique(labels)[None, :]).astype(np.float64)
    singular, projections = _spectrum(features, columns)
    scores = []
    for column, projected in zip(columns.T, projections.T, strict=True):
        outside = max(float(column @ column - projected @ projected), 0.0)
        scores.append(_evidence(singular, projected, outside, n, d))
    return float(np.mean(scores))


def _spectrum(features: np.ndarray, columns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The feature matrix's singular values, and each target column projected on its left singular vectors.

    With more examples than dimensions (the usual case) both come from the d x d Gram matrix, as in the paper's
    own implementation: an eigendecomposition of X'X instead of an SVD of X (12,000 NER tokens x 384 dims: a
    hundredth of the time). Directions whose singular value is below 1e-5 of the largest (1e-10 of the largest
    eigenvalue) are dropped as rank deficiency (a constant column, n < d)."""
    n, d = features.shape
    if n <= d:
        u, singular, _ = np.linalg.svd(features, full_matrices=False)
        keep = singular > singular.max(initial=0.0) * 1e-10
        return singular[keep], u[:, keep].T @ columns
    eigen, vectors = np.linalg.eigh(features.T @ features)
    keep = eigen > eigen.max(initial=0.0) * 1e-10
    singular = np.sqrt(eigen[keep])
    # u = X v / s, so u'y = v'(X'y) / s
    return singular, (vectors[:, keep].T @ (features.T @ columns)) / singular[:, None]
