"""Whether predicted probabilities mean what they say, and temperature scaling to make them.

- Expected calibration error (ECE): the examples binned by the confidence of their predicted class into
  ``ECE_BINS`` equal-width bins on [0, 1]; the mean over bins of |accuracy - mean confidence|, weighted by the
  bin's share of examples (Guo et al., 2017, "On Calibration of Modern Neural Networks", section 2).
- Classwise ECE: the same for each class's probability against whether the example is of that class, averaged
  over classes (Kull et al., 2019, "Beyond temperature scaling").
- Brier score: the mean over examples of the squared distance between the probability vector and the one-hot
  truth (Brier, 1950).
- Temperature scaling: one scalar T dividing the logits, fitted on validation by minimising the negative
  log-likelihood (Guo et al., 2017); the argmax, hence accuracy, is unchanged.
"""

from __future__ import annotations

import numpy as np
import torch

ECE_BINS = 15  # Guo et al. (2017) report ECE with 15 equal-width bins


def binned_gap(confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> float:
    """The mean |accuracy - confidence| over equal-width confidence bins, weighted by each bin's share."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    # bin k holds (edges[k], edges[k+1]]; a confidence of exactly 0 goes to the first bin
    which = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    gap = 0.0
    for k in range(bins):
        members = which == k
        if members.any():
            gap += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return float(gap)


def expected_calibration_error(probs: np.ndarray, targets: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE of class probabilities (n x classes) against class indices."""
    if len(targets) == 0:
        return 0.0
    predicted = probs.argmax(axis=1)
    return binned_gap(probs.max(axis=1), (predicted == targets).astype(float), bins)


def classwise_ece(probs: np.ndarray, targets: np.ndarray, bins: int = ECE_BINS) -> float:
    if len(targets) == 0:
        return 0.0
    return float(np.mean([binned_gap(probs[:, k], (targets == k).astype(float), bins)
                          for k in range(probs.shape[1])]))


def brier_score(probs: np.ndarray, targets: np.ndarray) -> float:
    if len(targets) == 0:
        return 0.0
    onehot = np.eye(probs.shape[1])[targets]
    return float(((probs - onehot) ** 2).sum(axis=1).mean())


def calibration_metrics(probs: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    return {"ece": expected_calibration_error(probs, targets), "classwise_ece": classwise_ece(probs, targets),
            "brier": brier_score(probs, targets)}


def fit_temperature(logits: torch.Tensor, targets: torch.Tensor, steps: int = 200) -> float:
    """The temperature T > 0 minimising the negative log-likelihood of ``softmax(logits / T)`` (optimised over
    log T, so T stays positive)."""
    logits, targets = logits.detach().double(), targets.detach().long()
    log_t = torch.zeros((), dtype=torch.double, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(logits / log_t.exp(), targets)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(log_t.detach().exp())
