"""A scikit-learn estimator over transferlm: ``TransferClassifier`` fine-tunes a pretrained model on a list of texts,
so it works with ``cross_val_predict``, ``GridSearchCV``, pipelines and the libraries built on them.

    from transferlm.sklearn import TransferClassifier
    clf = TransferClassifier(model="minilm", strategy="frozen").fit(texts, labels)
    clf.predict_proba(["a new text"])

Each ``fit`` is a ``transferlm train`` run in a new folder of its own (``output/fit-*`` when ``output`` is given, else a
temporary folder), kept so that the fitted model can be reloaded (``transferlm.load(clf.run_dir_)``); a search over
many candidates leaves one per fit, so give ``output`` to keep them in one place."""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from transferlm.errors import DataError


def _texts(X: Any) -> list[str]:
    """One text per example: a list, a 1-d array or Series of strings, or a one-column 2-d array / DataFrame."""
    if hasattr(X, "to_numpy"):
        X = X.to_numpy()
    array = np.asarray(X, dtype=object)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise DataError(f"TransferClassifier takes one text per example (a list or 1-d array of strings); got an "
                        f"array of shape {array.shape}")
    bad = [i for i, x in enumerate(array) if not isinstance(x, str)]
    if bad:
        raise DataError(f"TransferClassifier takes texts; example {bad[0]} is a {type(array[bad[0]]).__name__} "
                        f"({len(bad)} examples are not strings)")
    return list(array)


def _merged(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


class TransferClassifier(ClassifierMixin, BaseEstimator):
    """Text classification by transfer: ``model`` (a bundled alias, a directory or a hub id) adapted with
    ``strategy`` (full, frozen, lora, ...). ``epochs``, ``lr``, ``batch_size``, ``max_length``: as in ``transferlm
    train`` (auto where not given); ``config``: any other run settings as a nested dict (``{"strategy": {"r": 8}}``)."""

    def __init__(self, model: str = "minilm", strategy: str = "full", epochs: float | str = "auto",
                 lr: float | str = "auto", batch_size: int | str = "auto", max_length: int | str = "auto",
                 seed: int = 42, config: dict[str, Any] | None = None, output: str | None = None):
        self.model = model
        self.strategy = strategy
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.max_length = max_length
        self.seed = seed
        self.config = config
        self.output = output

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        tags.non_deterministic = False
        return tags

    def fit(self, X: Iterable[str], y: Iterable[Any]) -> TransferClassifier:
        from transferlm.config.load import build_config
        from transferlm.models.load import quiet_loading
        from transferlm.runs.predictor import load
        from transferlm.runs.train import train

        texts, labels = _texts(X), list(y)
        if len(texts) != len(labels):
            raise DataError(f"TransferClassifier.fit: {len(texts)} texts but {len(labels)} labels")
        self.classes_ = np.array(sorted(set(labels), key=str))
        if len(self.classes_) < 2:
            raise DataError("TransferClassifier.fit: the labels hold one class; a classifier needs at least two")
        self._names = {str(c): i for i, c in enumerate(self.classes_)}
        if len(self._names) != len(self.classes_):
            raise DataError("TransferClassifier.fit: two different labels print the same; give distinct labels")
        # every fit gets a folder of its own (under ``output`` when given): clones in a search never share or wipe
        # one, and nothing the user keeps in ``output`` is overwritten
        parent = Path(self.output) if self.output else None
        if parent is not None:
            parent.mkdir(parents=True, exist_ok=True)
        output = tempfile.mkdtemp(prefix="fit-" if parent else "transferlm-sklearn-", dir=parent)
        settings = {
            "model": {"name": self.model, "max_length": self.max_length},
            "task": {"type": "classification"},
            "strategy": {"name": self.strategy},
            "data": {"train": [{"text": t, "label": str(label)} for t, label in zip(texts, labels, strict=True)]},
            "train": {"epochs": self.epochs, "lr": self.lr, "batch_size": self.batch_size, "seed": self.seed,
                      "progress": False},
            "output": output,
        }
        with quiet_loading():
            result = train(build_config(_merged(settings, self.config or {})), overwrite=True)
            self.run_dir_ = Path(result.run_dir)
            self.predictor_ = load(self.run_dir_)
        self.validation_ = result.summary.validation
        return self

    def predict_proba(self, X: Iterable[str]) -> np.ndarray:
        """Probabilities in the order of ``classes_`` (temperature-scaled, as ``transferlm predict`` gives them)."""
        check_is_fitted(self, "predictor_")
        predictions = self.predictor_.predict(_texts(X))
        proba = np.zeros((len(predictions), len(self.classes_)))
        for row, prediction in enumerate(predictions):
            for name, p in prediction["probabilities"].items():
                proba[row, self._names[str(name)]] = p
        return proba

    def predict(self, X: Iterable[str]) -> np.ndarray:
        check_is_fitted(self, "predictor_")
        return self.classes_[self.predict_proba(X).argmax(axis=1)]
