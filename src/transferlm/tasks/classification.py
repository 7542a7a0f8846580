"""Sequence classification: single-label (softmax) and multi-label (sigmoid + threshold)."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from typing import Any, Literal, Optional, Union

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field

from transferlm.config.selected import TaskSettings
from transferlm.data.readers import summarise_lines
from transferlm.data.records import Record
from transferlm.errors import ConfigError
from transferlm.evaluation.calibration import ECE_BINS, calibration_metrics, fit_temperature
from transferlm.evaluation.classification import multi_label_metrics, single_label_metrics
from transferlm.tasks.base import Features, LossTerms, register_task
from transferlm.tasks.labels import LabelMap, split_labels
from transferlm.tasks.long_inputs import LongInputSettings
from transferlm.tasks.pooling import PoolingSettings
from transferlm.tasks.sentence_head import SentenceHeadTask

log = logging.getLogger(__name__)


class ClassificationSettings(PoolingSettings, LongInputSettings, TaskSettings):
    type: Literal["classification"] = "classification"
    multi_label: bool = Field(
        False, description="Each example may carry several labels (sigmoid outputs, per-label threshold)."
    )
    threshold: float = Field(0.5, gt=0, lt=1, description="Multi-label decision threshold on each label's probability.")
    class_weights: Union[Literal["none", "auto"], list[float]] = Field(
        "none",
        description="Loss weights per class: none, auto (inverse train frequency), or a list in label order.",
    )
    label_delimiter: Optional[str] = Field(
        None, description="Splits a string label column into several labels (multi-label), e.g. '|'."
    )
    temperature_scaling: bool = Field(
        True, description="Single-label: after training, fit one temperature dividing the logits on validation "
        "(lowest negative log-likelihood), so that predicted probabilities match observed accuracy; saved with the run "
        "and used by predict, evaluate, export and serve. The predicted class never changes.",
    )


class ClassificationTask(SentenceHeadTask):
    name = "classification"
    pipeline_tag = "text-classification"
    settings = ClassificationSettings
    metric_directions = {"accuracy": True, "f1_macro": True, "f1_micro": True, "f1_weighted": True,
                         "subset_accuracy": True, "ece": False, "classwise_ece": False, "brier": False}
    baselines = ("tfidf",)

    def __init__(self, task, data):
        super().__init__(task, data)
        self.multi_label = task.multi_label
        self.label_dtype = torch.float if self.multi_label else torch.long  # multi-hot rows, or class indices
        self.default_metric = "f1_micro" if self.multi_label else "accuracy"
        self.label_map: LabelMap | None = None
        self.class_weights: list[float] | None = None
        self.temperature = 1.0  # divides the logits before softmax (temperature scaling); 1: as trained

    # --- labels ---
    def label_profile(self, records: Sequence[Record]) -> dict[str, Any] | None:
        counts = Counter(label for record in records for label in self.labels_of(record))
        return {"counts": dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))} if counts else None

    def labels_of(self, record: Record) -> tuple[str, ...]:
        return split_labels(record.label, self.task_config.label_delimiter)

    def split_key(self, record: Record) -> Any:
        return self.labels_of(record)

    def fit_labels(
        self, train: Sequence[Record], others: dict[str, Sequence[Record]], train_name: str = "train"
    ) -> list[str]:
        problems = self._shape_problems({train_name: train, **others})
        if problems:
            return problems
        counts = Counter(label for r in train for label in self.labels_of(r))
        self.label_map = LabelMap.from_values(list(counts))
        if len(self.label_map.labels) < 2:
            only = ", ".join(self.label_map.labels) or "none"
            problems.append(
                f"training data has only one class ({only}); classification needs at least two "
                f"— check data.label_column ({self.data_config.label_column!r}) and the file"
            )
        problems += self._unseen_label_problems(others)
        problems += self._set_class_weights(counts, len(train))
        return problems

    def check_labels(self, splits: dict[str, Sequence[Record]]) -> list[str]:
        return self._shape_problems(splits) or self._unseen_label_problems(splits)

    def _shape_problems(self, splits: dict[str, Sequence[Record]]) -> list[str]:
        if self.multi_label:
            return []
        problems = []
        for where, records in splits.items():
            multi = [r.line for r in records if len(self.labels_of(r)) != 1]
            if multi:
                problems.append(
                    summarise_lines(
                        where,
                        f"have several labels in column {self.data_config.label_column!r}",
                        multi,
                        "set task.multi_label: true (and task.label_delimiter for strings)",
                    )
                )
        return problems

    def _unseen_label_problems(self, others: dict[str, Sequence[Record]]) -> list[str]:
        known = set(self.label_map.labels)
        problems = []
        for split, records in others.items():
            unseen: dict[str, list[int]] = {}
            for r in records:
                for label in self.labels_of(r):
                    if label not in known:
                        unseen.setdefault(label, []).append(r.line)
            for label, lines in unseen.items():
                problems.append(
                    summarise_lines(
                        split,
                        f"have label {label!r}, which never occurs in training",
                        lines,
                        f"known labels are {', '.join(self.label_map.labels)}; add training "
                        "examples for it or remove those rows",
                    )
                )
        return problems

    def _set_class_weights(self, counts: Counter, n_train: int) -> list[str]:
        setting = self.task_config.class_weights
        labels = self.label_map.labels
        if setting == "none":
            self.class_weights = None
        elif setting == "auto":
            # Inverse frequency, scaled so a balanced data set gets all-ones (sklearn's "balanced").
            self.class_weights = [n_train / (len(labels) * counts[label]) for label in labels]
        elif len(setting) != len(labels):
            return [
                f"task.class_weights: {len(setting)} weights given for {len(labels)} labels "
                f"({', '.join(labels)}); give one per label in that order, or use auto"
            ]
        else:
            self.class_weights = list(setting)
        return []

    def state(self) -> dict[str, Any]:
        return {
            "label_map": self.label_map.to_dict(),
            "multi_label": self.multi_label,
            "class_weights": self.class_weights,
            "threshold": self.task_config.threshold,
            "temperature": self.temperature,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.label_map = LabelMap.from_dict(state["label_map"])
        self.class_weights = state.get("class_weights")
        self.temperature = state.get("temperature", 1.0)  # runs saved before temperature scaling: as trained

    # --- temperature scaling, fitted on validation after training ---
    @property
    def calibrates(self) -> bool:
        return self.task_config.temperature_scaling and not self.multi_label

    def calibrate(self, outputs: Sequence[torch.Tensor], features: Features) -> dict[str, Any] | None:
        if not self.calibrates or not outputs:
            return None
        logits, targets = self.document_logits(outputs, features)
        if bool((logits.argmax(dim=-1) == targets).all()):
            # No validation error: the likelihood keeps rising as the temperature falls to 0, so any fitted value
            # would only make every probability 1. Keep the model's own probabilities.
            log.info("classification: no temperature fitted: the model gets every validation example right")
            self.temperature = 1.0
            return {"temperature": 1.0, "skipped": "no validation error to calibrate on"}
        before = calibration_metrics(torch.softmax(logits, dim=-1).numpy(), targets.numpy())
        self.temperature = fit_temperature(logits, targets)
        after = calibration_metrics(self.decide(logits)[0], targets.numpy())
        log.info("classification: temperature %.3f fitted on validation; ECE %.4f -> %.4f (%d bins)",
                 self.temperature, before["ece"], after["ece"], ECE_BINS)
        return {"temperature": self.temperature, "ece_before": before["ece"], "ece_after": after["ece"],
                "ece_bins": ECE_BINS}

    # --- model ---
    def num_outputs(self) -> int:
        return len(self.label_map.labels)

    def head_config(self) -> dict[str, Any]:
        labels = self.label_map.labels
        return dict(num_labels=len(labels), id2label=dict(enumerate(labels)), label2id=self.label_map.index(),
                    problem_type="multi_label_classification" if self.multi_label else "single_label_classification")

    # --- features ---
    def targets(self, records: Sequence[Record]) -> torch.Tensor:
        """Targets as the loss and metrics take them: class indices, or multi-hot rows for multi-label."""
        return torch.tensor([self.target(r) for r in records], dtype=self.label_dtype)

    def target(self, record: Record):
        index = self.label_map.index()
        labels = self.labels_of(record)
        if not self.multi_label:
            return index[labels[0]]
        target = [0.0] * len(index)
        for label in labels:
            target[index[label]] = 1.0
        return target

    # --- loss and outputs ---
    def loss(self, outputs, batch) -> LossTerms:
        logits = outputs.logits.float()
        targets = batch["labels"]
        weight = None if self.class_weights is None else torch.tensor(self.class_weights, device=logits.device)
        if self.multi_label:
            per_label = F.binary_cross_entropy_with_logits(logits, targets, pos_weight=weight, reduction="none")
            per_item = per_label.mean(dim=1)
        else:
            per_item = F.cross_entropy(logits, targets, weight=weight, reduction="none")
        return self.weighted(per_item, batch)

    def decide(self, logits: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities (at the run's temperature; sigmoid for multi-label) and the decided classes of logits."""
        if self.multi_label:
            probs = torch.sigmoid(logits.float())
            return probs.numpy(), (probs >= self.task_config.threshold).int().numpy()
        probs = torch.softmax(logits.float() / self.temperature, dim=-1)
        return probs.numpy(), probs.argmax(dim=-1).numpy()

    def document_logits(self, outputs: Sequence[torch.Tensor], features: Features
                        ) -> tuple[torch.Tensor, torch.Tensor]:
        """One logits row per record (its windows aggregated) and the records' targets."""
        logits, firsts = self.documents(outputs, features)
        return logits, self.collate_targets(firsts)["labels"]

    def metrics(self, outputs: Sequence[torch.Tensor], features: Features) -> dict[str, Any]:
        return self.score(*self.document_logits(outputs, features))

    def score(self, logits: torch.Tensor, targets: torch.Tensor) -> dict[str, Any]:
        """Metrics of a logits matrix against targets as ``targets()`` gives them (also used by baselines)."""
        probs, decided = self.decide(logits)
        if self.multi_label:
            return multi_label_metrics(targets.int().numpy(), decided, self.label_map.labels)
        return {**single_label_metrics(targets.numpy(), decided, self.label_map.labels),
                **calibration_metrics(probs, targets.numpy())}

    def example_scores(self, outputs: Sequence[torch.Tensor], features: Features) -> list[float] | None:
        return self.scores_per_example(*self.document_logits(outputs, features))

    def scores_per_example(self, logits: torch.Tensor, targets: torch.Tensor) -> list[float] | None:
        if self.multi_label:
            return None  # micro F1 does not decompose into per-example scores
        _, decided = self.decide(logits)
        return (decided == targets.numpy()).astype(float).tolist()

    def explanation_target_names(self) -> list[str] | None:
        return [str(label) for label in self.label_map.index()]

    def explained_outputs(self, document: torch.Tensor, target: str | None) -> list[tuple[int, str]]:
        labels = self.label_map.labels
        if target is not None:
            index = self.label_map.index()
            if target not in index:
                raise ConfigError(f"explain.target: the model has no label {target!r}; its labels are "
                                  f"{', '.join(labels)}")
            chosen = [index[target]]
        else:
            _, decided = self.decide(document.unsqueeze(0))
            chosen = ([i for i, on in enumerate(decided[0]) if on] or [int(document.argmax())]) if self.multi_label \
                else [int(decided[0])]
        return [(i, str(self.label_map.external(labels[i]))) for i in chosen]

    def predictions(
        self, outputs: Sequence[torch.Tensor], features: Features, records: Sequence[Record]
    ) -> list[dict[str, Any]]:
        if not outputs:
            return []
        probs, decided = self.decide(self.documents(outputs, features)[0])
        labels = self.label_map.labels
        out = []
        for p, d in zip(probs, decided, strict=False):
            scores = {label: round(float(p[i]), 6) for i, label in enumerate(labels)}
            if self.multi_label:
                out.append(
                    {"labels": [self.label_map.external(labels[i]) for i in np.flatnonzero(d)], "probabilities": scores}
                )
            else:
                out.append({"label": self.label_map.external(labels[int(d)]), "probabilities": scores})
        return out


register_task(ClassificationTask)
