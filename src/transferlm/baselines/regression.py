"""Baselines without transfer for regression: the training mean, and TF-IDF features with ridge regression.

``mean`` is the floor every model must clear: it scores an RMSE equal to the targets' spread and no
correlation at all. ``ridge`` is the bag-of-words baseline, its L2 strength alpha chosen on the validation
split from a small grid, as tfidf's C is. Pairs are joined as tfidf joins them: words that predict the score
are learned, overlap between the two texts is not.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import torch

from transferlm.baselines.result import BaselineResult, scored_splits
from transferlm.baselines.tfidf import pair_texts
from transferlm.data.records import Record
from transferlm.tasks.base import Task

log = logging.getLogger(__name__)

ALPHA_GRID = (0.3, 1.0, 3.0, 10.0)


def run_mean(
    task: Task, train: Sequence[Record], evaluate: dict[str, Sequence[Record]], seed: int, select_on: str = "validation"
) -> BaselineResult:
    """Every prediction is the training mean (nothing to choose; ``seed`` and ``select_on`` are unused)."""
    began = time.perf_counter()
    mean = float(task.targets(train).double().mean())
    targets = {name: task.targets(records) for name, records in evaluate.items()}
    predicted = {name: torch.full_like(t, mean) for name, t in targets.items()}
    return BaselineResult(scored_splits(task, predicted, targets), round(time.perf_counter() - began, 2), 1,
                          {"mean": mean})


def run_ridge(
    task: Task, train: Sequence[Record], evaluate: dict[str, Sequence[Record]], seed: int, select_on: str = "validation"
) -> BaselineResult:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import Ridge

    began = time.perf_counter()
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2 if len(train) > 1000 else 1)
    x_train = vectorizer.fit_transform(pair_texts(train))
    y_train = task.targets(train).double().numpy()
    features = {name: vectorizer.transform(pair_texts(records)) for name, records in evaluate.items()}
    targets = {name: task.targets(records) for name, records in evaluate.items()}
    metric = task.default_metric
    best = None
    for alpha in ALPHA_GRID:
        model = Ridge(alpha=alpha, random_state=seed).fit(x_train, y_train)
        score = task.score(torch.from_numpy(model.predict(features[select_on])), targets[select_on])[metric]
        if best is None or (score > best[0] if task.greater_is_better(metric) else score < best[0]):
            best = (score, alpha, model)
    _, alpha, model = best
    seconds = time.perf_counter() - began
    predicted = {name: torch.from_numpy(model.predict(x)) for name, x in features.items()}
    log.info("ridge: %d features, alpha=%s chosen on %s (%s %.4f)", x_train.shape[1], alpha, select_on, metric, best[0])
    return BaselineResult(scored_splits(task, predicted, targets), round(seconds, 2), x_train.shape[1] + 1,
                          {"alpha": alpha, "features": x_train.shape[1]})
