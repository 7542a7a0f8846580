"""Extractive QA's answer spans: the best legal span over a question's windows, and what decoding keeps of it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Span:
    score: float  # start logit + end logit
    window: int
    start: int  # token positions in that window, inclusive
    end: int


def best_span(
    windows: Sequence[tuple[np.ndarray, np.ndarray, Sequence[tuple[int, int] | None]]],
    n_best: int,
    max_answer_length: int,
) -> Span | None:
    """The highest-scoring legal span over all windows: each is (start logits, end logits, offsets, None
    outside the context). Only the ``n_best`` best starts and ends of a window are paired."""
    best: Span | None = None
    for w, (start, end, offsets) in enumerate(windows):
        in_context = np.array([o is not None for o in offsets], dtype=bool)
        if not in_context.any():
            continue
        starts = [int(i) for i in np.argsort(-np.where(in_context, start, -np.inf), kind="stable")[:n_best]
                  if in_context[i]]
        ends = [int(i) for i in np.argsort(-np.where(in_context, end, -np.inf), kind="stable")[:n_best]
                if in_context[i]]
        for s in starts:
            for e in ends:
                if e < s or e - s + 1 > max_answer_length:
                    continue
                score = float(start[s] + end[e])
                if best is None or score > best.score:
                    best = Span(score, w, s, e)
    return best


@dataclass(frozen=True)
class Decoded:
    """One question's decoding: its best span (None if no window has a legal one) and the null score."""

    text: str
    start: int | None  # character offsets into the context
    end: int | None
    probability: float  # the span's start x end probability in its window
    span_score: float
    null_score: float
    null_probability: float

    @property
    def null_margin(self) -> float:
        return self.null_score - self.span_score


def span_probability(start: np.ndarray, end: np.ndarray, s: int, e: int) -> float:
    """Start x end probability of the span (s, e): each a softmax over its window's positions."""

    def log_softmax(x: np.ndarray) -> np.ndarray:
        x = x.astype(np.float64)
        return x - (x.max() + np.log(np.exp(x - x.max()).sum()))

    return float(np.exp(log_softmax(start)[s] + log_softmax(end)[e]))
