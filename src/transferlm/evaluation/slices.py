"""The task metric per slice of the data (by label, input length, or any column), each with a confidence interval,
and whether a slice is worse than the rest of the data by more than its noise.

A slice's metric is the mean of its examples' scores (``Task.example_scores``: 1/0 for a correct or wrong class,
token F1 for QA), so the slices of one grouping recombine, weighted by size, to the overall metric. The interval is
Wilson's score interval for 0/1 scores (Wilson, 1927) and the normal approximation otherwise. A slice is flagged
when a two-sided z-test of its mean against the mean of every other example rejects equality at ``ALPHA`` and the
slice is the worse one (Welch's standard error of a difference of two means).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

Z = 1.959964  # the two-sided 95 % normal quantile
ALPHA = 0.05


@dataclass(frozen=True)
class Slice:
    grouping: str  # what the data is sliced by: "label", "length", or a column's name
    value: str
    n: int
    metric: float
    low: float
    high: float
    rest: float | None  # the metric of every example outside the slice
    p_value: float | None  # of the slice's mean against the rest's
    flagged: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def sentence(self, metric: str) -> str:
        return (f"{self.grouping} = {self.value}: {metric} {self.metric:.3f} (95 % CI {self.low:.3f}-{self.high:.3f}, "
                f"n {self.n}) against {self.rest:.3f} on the other examples (p = {self.p_value:.2g})")


def interval(scores: Sequence[float]) -> tuple[float, float]:
    """A 95 % confidence interval of the mean of ``scores``."""
    n = len(scores)
    if n == 0:
        return math.nan, math.nan
    mean = sum(scores) / n
    if all(s in (0.0, 1.0) for s in scores):  # Wilson's score interval for a proportion
        centre = (mean + Z * Z / (2 * n)) / (1 + Z * Z / n)
        half = Z * math.sqrt(mean * (1 - mean) / n + Z * Z / (4 * n * n)) / (1 + Z * Z / n)
        return max(0.0, centre - half), min(1.0, centre + half)
    half = Z * math.sqrt(_variance(scores) / n)
    return mean - half, mean + half


def _variance(scores: Sequence[float]) -> float:
    n = len(scores)
    if n < 2:
        return 0.0
    mean = sum(scores) / n
    return sum((s - mean) ** 2 for s in scores) / (n - 1)


def compare_with_rest(inside: Sequence[float], outside: Sequence[float]) -> tuple[float | None, float | None]:
    """The rest's mean and the two-sided p-value of the difference (None where the rest is empty)."""
    if not outside or not inside:
        return None, None
    a, b = sum(inside) / len(inside), sum(outside) / len(outside)
    se = math.sqrt(_variance(inside) / len(inside) + _variance(outside) / len(outside))
    if se == 0:
        return b, 1.0 if a == b else 0.0
    z = (a - b) / se
    return b, math.erfc(abs(z) / math.sqrt(2))


def slices(scores: Sequence[float], groupings: dict[str, Sequence[Any]]) -> list[Slice]:
    """Every slice of every grouping (a value per example), largest first within a grouping."""
    found = []
    for grouping, values in groupings.items():
        members: dict[str, list[int]] = {}
        for i, value in enumerate(values):
            members.setdefault(str(value), []).append(i)
        for value, index in sorted(members.items(), key=lambda kv: (-len(kv[1]), kv[0])):
            chosen = set(index)
            inside = [scores[i] for i in index]
            outside = [s for i, s in enumerate(scores) if i not in chosen]
            rest, p = compare_with_rest(inside, outside)
            mean = sum(inside) / len(inside)
            low, high = interval(inside)
            flagged = p is not None and p < ALPHA and mean < rest
            found.append(Slice(grouping, value, len(inside), mean, low, high, rest, p, flagged))
    return found


def length_buckets(lengths: Sequence[int], buckets: int = 4) -> list[str]:
    """Each input's length quartile (by default), named by its token range, e.g. "129-256 tokens"."""
    if not lengths:
        return []
    ordered = sorted(lengths)
    edges = sorted({ordered[min(len(ordered) - 1, (k * len(ordered)) // buckets)] for k in range(1, buckets)})
    names = []
    for n in lengths:
        k = sum(n >= e for e in edges)
        low = edges[k - 1] if k else ordered[0]
        high = edges[k] - 1 if k < len(edges) else ordered[-1]
        names.append(f"{low}-{high} tokens")
    return names
