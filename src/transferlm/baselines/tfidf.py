"""TF-IDF features + logistic regression (scikit-learn): the classic text-classification baseline.

The inverse regularisation strength C is chosen on the validation split from a small grid, as a fair
baseline should be tuned as much as the models it is compared with. Outputs are passed through the
task's own metrics (log-probabilities for softmax tasks, logits of the probabilities for multi-label),
so both sides are scored by the same code.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import numpy as np
import torch

from transferlm.baselines.result import BaselineResult
from transferlm.data.records import Record
from transferlm.tasks.base import Task

log = logging.getLogger(__name__)

C_GRID = (0.25, 1.0, 4.0, 16.0)


def pair_texts(records: Sequence[Record]) -> list[str]:
    """Each record as one text for a bag of words: a pair is joined around a [SEP] marker."""
    return [r.text if r.text_pair is None else f"{r.text} [SEP] {r.text_pair}" for r in records]


def _outputs(model, features, multi_label: bool) -> torch.Tensor:
    probs = np.clip(model.predict_proba(features), 1e-7, 1 - 1e-7)
    scores = np.log(probs / (1 - probs)) if multi_label else np.log(probs)
    return torch.from_numpy(scores).float()


def run_tfidf(
    task: Task, train: Sequence[Record], evaluate: dict[str, Sequence[Record]], seed: int, select_on: str = "validation"
) -> BaselineResult:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    began = time.perf_counter()
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2 if len(train) > 1000 else 1)
    x_train = vectorizer.fit_transform(pair_texts(train))
    y_train = task.targets(train).numpy()
    features = {name: vectorizer.transform(pair_texts(records)) for name, records in evaluate.items()}
    targets = {name: task.targets(records) for name, records in evaluate.items()}
    weight = "balanced" if task.task_config.class_weights == "auto" else None
    metric = task.default_metric
    best = None
    for c in C_GRID:
        linear = LogisticRegression(C=c, max_iter=2000, class_weight=weight, random_state=seed)
        model = OneVsRestClassifier(linear) if task.multi_label else linear
        model.fit(x_train, y_train)
        score = task.score(_outputs(model, features[select_on], task.multi_label), targets[select_on])[metric]
        if best is None or score > best[0]:
            best = (score, c, model)
    _, c, model = best
    seconds = time.perf_counter() - began
    metrics = {}
    for name in evaluate:
        outputs = _outputs(model, features[name], task.multi_label)
        metrics[name] = {
            **task.score(outputs, targets[name]),
            "per_example": task.scores_per_example(outputs, targets[name]),
        }
    log.info("tfidf: %d features, C=%s chosen on %s (%s %.4f)", x_train.shape[1], c, select_on, metric, best[0])
    n_outputs = y_train.shape[1] if task.multi_label else len(np.unique(y_train))
    parameters = x_train.shape[1] * (n_outputs if n_outputs > 2 or task.multi_label else 1)
    return BaselineResult(metrics, round(seconds, 2), parameters, {"C": c, "features": x_train.shape[1]})
