"""A sliding-window word-overlap answer finder: extractive QA without learning.

After the sliding-window baseline of MCTest (Richardson et al., 2013), which the SQuAD paper also
reports (Rajpurkar et al., 2016): every short span of a context sentence is a candidate answer, scored
by the question words found within ``window`` words on either side of it, each weighted by how rare it
is in the passage (log(1 + 1/count)). Candidates may not contain a question word, begin or end with
punctuation, or be only stop words. The longest span and the window width are chosen on validation
from a small grid, as the other baselines choose their regularisation. It always answers (no "no
answer"), and is scored by the same SQuAD metrics as the models.
"""

from __future__ import annotations

import itertools
import logging
import re
import time
from collections.abc import Sequence

import numpy as np

from transferlm.baselines.result import BaselineResult
from transferlm.data.records import Record
from transferlm.evaluation.qa import example_scores, squad_metrics

log = logging.getLogger(__name__)

MAX_WORDS_GRID = (1, 2, 3, 4)
WINDOW_GRID = (3, 6, 12)
_WORD = re.compile(r"\w+|[^\w\s]")
_SENTENCE_END = {".", "!", "?", ";"}
STOP_WORDS = frozenset("""a an the of in on at to for from by with and or but is are was were be been being it its
this that these those which who whom whose what when where why how did do does done has have had as not no
than then there their they he she his her him we you i me my our your s""".split())


def _words(text: str) -> list[tuple[str, int, int]]:
    return [(m.group().lower(), m.start(), m.end()) for m in _WORD.finditer(text)]


def answer(question: str, context: str, max_words: int, window: int) -> str:
    """The best-scoring candidate span's text (the context's first word if there is no candidate)."""
    words = _words(context)
    if not words:
        return ""
    asked = {w for w, _, _ in _words(question) if w.isalnum() and w not in STOP_WORDS}
    tokens = [w for w, _, _ in words]
    n = len(tokens)
    counts: dict[str, int] = {}
    for token in tokens:
        counts[token] = counts.get(token, 0) + 1
    present = sorted(asked & counts.keys())
    candidates = _candidates(tokens, asked, max_words)
    if not candidates:
        return context[words[0][1]:words[0][2]]
    if not present:
        start, end = candidates[0]
        return context[words[start][1]:words[end - 1][2]]
    # prefix[q, k]: occurrences of question word q among the first k context words
    hits = np.array([[token == q for token in tokens] for q in present], dtype=np.int32)
    prefix = np.concatenate([np.zeros((len(present), 1), dtype=np.int32), hits.cumsum(axis=1)], axis=1)
    weight = np.array([np.log1p(1.0 / counts[q]) for q in present])
    spans = np.array(candidates)
    low = np.clip(spans[:, 0] - window, 0, n)
    high = np.clip(spans[:, 1] + window, 0, n)
    near = (prefix[:, high] - prefix[:, low]) > 0  # question words x candidates
    scores = weight @ near
    # Best score; among equals, the shortest span, then the earliest.
    best = min(range(len(candidates)), key=lambda i: (-scores[i], spans[i, 1] - spans[i, 0], spans[i, 0]))
    start, end = candidates[best]
    return context[words[start][1]:words[end - 1][2]]


def _candidates(tokens: Sequence[str], asked: set[str], max_words: int) -> list[tuple[int, int]]:
    """Word ranges [start, end) within one sentence that may be answers."""
    found = []
    for start in range(len(tokens)):
        for end in range(start + 1, min(start + max_words, len(tokens)) + 1):
            piece = tokens[start:end]
            if any(t in _SENTENCE_END for t in piece):
                break
            if not piece[0].isalnum() or not piece[-1].isalnum():
                continue
            if any(t in asked for t in piece) or all(t in STOP_WORDS or not t.isalnum() for t in piece):
                continue
            found.append((start, end))
    return found


def run_overlap(task, train: Sequence[Record], evaluate: dict[str, Sequence[Record]], seed: int,
                select_on: str = "validation") -> BaselineResult:
    began = time.perf_counter()
    metric = task.default_metric

    def predict(records, max_words, window):
        return [answer(r.text, r.text_pair, max_words, window) for r in records]

    def gold(records):
        return [[a.text for a in r.label] for r in records]

    best = None
    for max_words, window in itertools.product(MAX_WORDS_GRID, WINDOW_GRID):
        score = squad_metrics(predict(evaluate[select_on], max_words, window), gold(evaluate[select_on]))[metric]
        log.info("overlap: max_words=%d window=%d, %s on %s %.4f", max_words, window, metric, select_on, score)
        if best is None or score > best[0]:
            best = (score, max_words, window)
    _, max_words, window = best
    metrics = {}
    for name, records in evaluate.items():
        predicted, golds = predict(records, max_words, window), gold(records)
        metrics[name] = {**squad_metrics(predicted, golds),
                         "per_example": [example_scores(p, g)[1] for p, g in zip(predicted, golds, strict=True)]}
    return BaselineResult(metrics, round(time.perf_counter() - began, 2), 0,
                          {"max_words": max_words, "window": window})
