"""Seed statistics, the negative-transfer verdict and the sample-efficiency statement."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

# A transferred model must beat the best baseline by more than this many standard errors of the
# difference (about 95 % one-sided confidence at 2) to count as a real gain.
NOISE_SE = 2.0


@dataclass(frozen=True)
class Summary:
    mean: float
    std: float | None  # sample standard deviation over seeds; None with one seed
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        n = len(values)
        mean = sum(values) / n
        std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else None
        return cls(mean, std, n)

    def standard_error(self, n_eval: int, proportion: bool) -> float:
        """Over seeds when there are several; with one seed, the sampling error of a proportion metric
        (accuracy, F1) on n_eval examples, sqrt(p(1-p)/n), or 0 when neither is known."""
        if self.std is not None:
            return self.std / math.sqrt(self.n)
        if proportion and n_eval > 0 and 0 <= self.mean <= 1:
            return math.sqrt(self.mean * (1 - self.mean) / n_eval)
        return 0.0

    def text(self, scale: float = 100.0) -> str:
        if self.std is None:
            return f"{scale * self.mean:.2f}"
        return f"{scale * self.mean:.2f} ± {scale * self.std:.2f}"


@dataclass(frozen=True)
class Verdict:
    difference: float  # member mean - best baseline mean
    noise: float  # NOISE_SE standard errors of that difference
    outcome: str  # "gain" (better beyond the noise), "tie" (within it: no gain from transfer), "negative" (worse)
    words: str

    @property
    def negative(self) -> bool:
        """Negative transfer: worse than the baseline beyond the noise (a tie is no gain, not negative)."""
        return self.outcome == "negative"


def paired_standard_error(a: Sequence[float], b: Sequence[float]) -> float:
    """Standard error of mean(a) - mean(b) when both score the same examples: the spread of the per-example
    differences. Much tighter than treating the two as independent when the models agree on most examples."""
    diffs = [x - y for x, y in zip(a, b, strict=True)]
    n = len(diffs)
    mean = sum(diffs) / n
    return math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1) / n) if n > 1 else 0.0


def verdict(
    member: str,
    summary: Summary,
    baseline: str,
    base: Summary,
    n_eval: int,
    proportion: bool,
    scale: float = 100.0,
    paired_se: float | None = None,
) -> Verdict:
    """``paired_se``: with one seed each, the paired error on the shared evaluation examples, if known."""
    se = paired_se
    if se is None:
        se = math.sqrt(summary.standard_error(n_eval, proportion) ** 2 + base.standard_error(n_eval, proportion) ** 2)
    diff, noise = summary.mean - base.mean, NOISE_SE * se
    delta = f"{scale * diff:+.2f} (noise ±{scale * noise:.2f})"
    if diff > noise:
        return Verdict(diff, noise, "gain", f"{member} beats {baseline} {delta}")
    if diff < -noise:
        return Verdict(diff, noise, "negative",
                       f"negative transfer: {member} is worse than {baseline} beyond the noise {delta}")
    return Verdict(diff, noise, "tie", f"no gain from transfer: {member} ties with {baseline} within the noise {delta}")


def labels_needed(curve: Sequence[tuple[int, float]], target: float) -> float | None:
    """Labelled examples a curve needs to reach ``target``: interpolated linearly in log(n) between the
    measured points; None if it never gets there."""
    points = sorted(curve)
    if not points:
        return None
    if points[0][1] >= target:
        return float(points[0][0])
    for (n0, y0), (n1, y1) in zip(points, points[1:], strict=False):
        if y1 >= target > y0:
            t = (target - y0) / (y1 - y0)
            return math.exp(math.log(n0) + t * (math.log(n1) - math.log(n0)))
    return None
