"""Regression: one number per text or text pair (e.g. STS-B's similarity from 0 to 5).

The model predicts one output per example. With ``normalize``, it learns the targets standardised with the
training mean and standard deviation (kept in the task state), and every prediction is mapped back to the
target scale before it is scored or shown.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field

from transferlm.config.schema import DataConfig
from transferlm.config.selected import TaskSettings
from transferlm.data.readers import summarise_lines
from transferlm.data.records import Record
from transferlm.evaluation.regression import regression_metrics
from transferlm.tasks.base import Features, LossTerms, register_task
from transferlm.tasks.long_inputs import LongInputSettings
from transferlm.tasks.pooling import PoolingSettings
from transferlm.tasks.sentence_head import SentenceHeadTask


class RegressionSettings(PoolingSettings, LongInputSettings, TaskSettings):
    type: Literal["regression"] = "regression"
    loss: Literal["mse", "huber"] = Field(
        "mse", description="mse (squared error), or huber: squared near the target, linear beyond huber_delta "
        "(less pulled by outlying targets).",
    )
    huber_delta: float = Field(
        1.0, gt=0, description="huber: where the loss turns linear, in the units the model predicts (training "
        "standard deviations when normalize is on).",
    )
    normalize: bool = Field(
        True, description="Train on targets standardised with the training mean and standard deviation (saved with "
        "the run); predictions are mapped back to the original scale.",
    )


class RegressionTask(SentenceHeadTask):
    name = "regression"
    pipeline_tag = "text-classification"
    settings = RegressionSettings
    default_metric = "spearman"
    metric_directions = {"rmse": False, "mae": False, "pearson": True, "spearman": True}
    baselines = ("mean", "ridge")
    label_dtype = torch.float

    def __init__(self, task: RegressionSettings, data: DataConfig):
        super().__init__(task, data)
        self.normalize = task.normalize
        self.mean, self.std = 0.0, 1.0  # of the training targets; fitted by fit_labels
        if data.text_pair_column:  # two texts: how similar the pretrained model finds them, with no training
            self.baselines = (*self.baselines, "cosine")

    # --- labels and the state saved with the run ---
    def label_profile(self, records: Sequence[Record]) -> dict[str, Any] | None:
        values = np.array([v for r in records if (v := _number(r.label)) is not None])
        if not len(values):
            return None
        return {"min": float(values.min()), "median": float(np.median(values)), "max": float(values.max()),
                "mean": float(values.mean()), "std": float(values.std())}

    def fit_labels(
        self, train: Sequence[Record], others: dict[str, Sequence[Record]], train_name: str = "train"
    ) -> list[str]:
        problems = self.check_labels({train_name: train, **others})
        if problems:
            return problems
        values = np.array([_number(r.label) for r in train], dtype=np.float64)
        self.mean, self.std = float(values.mean()), float(values.std())
        if self.std == 0:
            return [f"{train_name}: every training target is {self.mean:g}; regression needs targets that vary "
                    f"— check data.label_column ({self.data_config.label_column!r})"]
        return []

    def check_labels(self, splits: dict[str, Sequence[Record]]) -> list[str]:
        problems = []
        for where, records in splits.items():
            bad = [r.line for r in records if _number(r.label) is None]
            if bad:
                problems.append(summarise_lines(
                    where, f"have a label in column {self.data_config.label_column!r} that is not a finite number",
                    bad, "regression targets are numbers such as 3.8; fix those rows or check data.label_column",
                ))
        return problems

    def state(self) -> dict[str, Any]:
        return {"normalize": self.normalize, "mean": self.mean, "std": self.std}

    def load_state(self, state: dict[str, Any]) -> None:
        # The saved state wins over the settings: the model was trained on that scale.
        self.normalize, self.mean, self.std = state["normalize"], state["mean"], state["std"]

    def standardised(self, values: torch.Tensor) -> torch.Tensor:
        """Targets on the scale the model learns."""
        return (values - self.mean) / self.std if self.normalize else values

    def values(self, outputs: torch.Tensor) -> torch.Tensor:
        """Model outputs (one per row) back on the target scale."""
        outputs = outputs.float().reshape(-1)
        return outputs * self.std + self.mean if self.normalize else outputs

    # --- model ---
    def num_outputs(self) -> int:
        return 1

    def head_config(self) -> dict[str, Any]:
        return dict(num_labels=1, problem_type="regression")

    # --- features ---
    def target(self, record: Record) -> float:
        return _number(record.label)  # on the target scale; the loss standardises

    def targets(self, records: Sequence[Record]) -> torch.Tensor:
        """Targets on their own scale, as ``score`` takes them (also used by the baselines)."""
        return torch.tensor([self.target(r) for r in records], dtype=torch.float)

    # --- loss and outputs ---
    def loss(self, outputs, batch) -> LossTerms:
        predicted = outputs.logits.float().reshape(-1)
        target = self.standardised(batch["labels"].float())
        if self.task_config.loss == "huber":
            per_item = F.huber_loss(predicted, target, delta=self.task_config.huber_delta, reduction="none")
        else:
            per_item = F.mse_loss(predicted, target, reduction="none")
        return self.weighted(per_item, batch)

    def metrics(self, outputs: Sequence[torch.Tensor], features: Features) -> dict[str, Any]:
        rows, firsts = self.documents(outputs, features)
        return self.score(self.values(rows), self.collate_targets(firsts)["labels"])

    def score(self, predicted: torch.Tensor, targets: torch.Tensor) -> dict[str, Any]:
        """Metrics of predictions on the target scale (``values`` of the model's outputs, or a baseline's)."""
        return regression_metrics(predicted.double().numpy(), targets.double().numpy())

    def scores_per_example(self, predicted: torch.Tensor, targets: torch.Tensor) -> list[float] | None:
        return None  # Spearman is a property of the whole ranking: no per-example share

    def predictions(
        self, outputs: Sequence[torch.Tensor], features: Features, records: Sequence[Record]
    ) -> list[dict[str, Any]]:
        if not outputs:
            return []
        return [{"score": round(float(v), 6)} for v in self.values(self.documents(outputs, features)[0])]


def _number(label: Any) -> float | None:
    """A label as a finite float, or None (text that is not a number, a bool, NaN or infinity)."""
    if isinstance(label, bool):
        return None
    try:
        value = float(label.strip() if isinstance(label, str) else label)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


register_task(RegressionTask)
