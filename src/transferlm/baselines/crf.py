"""A linear-chain CRF on hand-made word features (sklearn-crfsuite): the classic pre-transfer NER system.

Features are the usual ones for CoNLL-style NER: the word, its case pattern and shape, prefixes and
suffixes, and the same for the neighbouring words. The L2 strength is chosen on validation from a small
grid, as a fair baseline is tuned as much as the models it is compared with. Scored by the task's own
metrics code.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence
from typing import Any

from transferlm.baselines.result import BaselineResult
from transferlm.data.records import Record

log = logging.getLogger(__name__)

C2_GRID = (0.01, 0.1, 1.0)


def _shape(word: str) -> str:
    return re.sub(r"(.)\1+", r"\1", re.sub(r"[A-Z]", "X", re.sub(r"[a-z]", "x", re.sub(r"\d", "d", word))))


def _word(word: str, prefix: str) -> dict[str, Any]:
    return {
        f"{prefix}lower": word.lower(),
        f"{prefix}title": word.istitle(),
        f"{prefix}upper": word.isupper(),
        f"{prefix}digit": word.isdigit(),
        f"{prefix}shape": _shape(word),
    }


def word_features(tokens: Sequence[str], i: int) -> dict[str, Any]:
    word = tokens[i]
    features: dict[str, Any] = {"bias": 1.0, **_word(word, ""), "suffix3": word[-3:].lower(),
                                "suffix2": word[-2:].lower(), "prefix3": word[:3].lower(), "length": min(len(word), 8)}
    for offset in (-2, -1, 1, 2):
        j = i + offset
        if 0 <= j < len(tokens):
            features.update(_word(tokens[j], f"{offset}:"))
        else:
            features[f"{offset}:edge"] = True
    return features


def sentence_features(record: Record) -> list[dict[str, Any]]:
    return [word_features(record.tokens, i) for i in range(len(record.tokens))]


def run_crf(task, train: Sequence[Record], evaluate: dict[str, Sequence[Record]], seed: int,
            select_on: str = "validation") -> BaselineResult:
    import sklearn_crfsuite

    began = time.perf_counter()
    x_train = [sentence_features(r) for r in train]
    y_train = [list(r.label) for r in train]
    features = {name: [sentence_features(r) for r in records] for name, records in evaluate.items()}
    gold = {name: [list(r.label) for r in records] for name, records in evaluate.items()}
    metric = task.default_metric
    best = None
    for c2 in C2_GRID:
        crf = sklearn_crfsuite.CRF(algorithm="lbfgs", c1=0.1, c2=c2, max_iterations=100,
                                   all_possible_transitions=True)
        crf.fit(x_train, y_train)
        score = task.score_tags(gold[select_on], crf.predict(features[select_on]))[metric]
        log.info("crf: c2=%s, %s on %s %.4f", c2, metric, select_on, score)
        if best is None or score > best[0]:
            best = (score, c2, crf)
    _, c2, crf = best
    seconds = time.perf_counter() - began
    metrics = {name: {**task.score_tags(gold[name], crf.predict(features[name])), "per_example": None}
               for name in evaluate}
    n_weights = len(crf.state_features_) + len(crf.transition_features_)
    return BaselineResult(metrics, round(seconds, 2), n_weights, {"c2": c2, "weights": n_weights})
