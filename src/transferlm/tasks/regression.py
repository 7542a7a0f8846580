"""Regression: one number per text or text pair (e.g. STS-B's similarity from 0 to 5).

The model predicts one output per example. With ``normalize``, it learns the targets standardised with the
training mean and standard deviation (kept in the task state), and every prediction is mapped back to the
target scale before it is scored or shown.

A text pair is read as one input under a new head (``task.pair_encoding: cross``), or each text is embedded on its
own and the output read off the two embeddings' cosine (``bi``, ``tasks/bi_encoder.py``), which starts from what a
sentence-embedding checkpoint already knows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field

from transferlm.config.schema import DataConfig
from transferlm.config.selected import TaskSettings
from transferlm.data.readers import summarise_lines
from transferlm.data.records import Record
from transferlm.errors import ConfigError
from transferlm.evaluation.regression import regression_metrics
from transferlm.tasks.base import Features, LossTerms, register_task
from transferlm.tasks.bi_encoder import BiEncoderRegressor, collate_pairs, encode_pairs, pair_lengths
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
    pair_encoding: Literal["auto", "cross", "bi"] = Field(
        "auto", description="Text pairs (data.text_pair_column): cross reads both texts as one input under a new "
        "head; bi embeds each text on its own (mean pooling) and predicts from the two embeddings' cosine, starting "
        "from the pretrained model's own similarity (each text cut by long_inputs truncate or head-tail). auto: bi "
        "on a sentence-embedding checkpoint (a sentence-transformers mean-pooling config), else cross.",
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
        self.low, self.high = 0.0, 1.0  # the training targets' range: where a bi-encoder's cosine starts mapped
        if data.text_pair_column:  # two texts: how similar the pretrained model finds them, with no training
            self.baselines = (*self.baselines, "cosine")
        self.bi = task.pair_encoding == "bi"
        if self.bi:
            _check_bi(task, data)

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
        self.low, self.high = float(values.min()), float(values.max())
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

    def build_model(self, path: Path, tokenizer: Any, pretrained: bool = True):
        if not self.bi:
            return super().build_model(path, tokenizer, pretrained)
        # A cosine of 0 starts at the lowest training target, 1 at the highest (Sentence-BERT's cosine objective).
        low, high = self.standardised(torch.tensor([self.low, self.high])).tolist()
        return BiEncoderRegressor.from_backbone(path, pretrained, scale=high - low, bias=low)

    def load_model(self, path: Path):
        return BiEncoderRegressor.load(path) if self.bi else super().load_model(path)

    def save_model(self, model, path: Path) -> None:
        if isinstance(model, BiEncoderRegressor):
            model.save(path)
        else:
            super().save_model(model, path)

    def feature_head(self, model):
        return model.feature_head() if isinstance(model, BiEncoderRegressor) else super().feature_head(model)

    # --- features ---
    def target(self, record: Record) -> float:
        return _number(record.label)  # on the target scale; the loss standardises

    def encode(self, tokenizer, records: Sequence[Record], max_length: int, with_labels: bool = True) -> Features:
        if not self.bi:
            return super().encode(tokenizer, records, max_length, with_labels)
        targets = [self.target(r) for r in records] if with_labels else None
        return encode_pairs(tokenizer, records, max_length, self.task_config.long_inputs, targets)

    def input_lengths(self, tokenizer: Any, records: Sequence[Record]) -> list[int]:
        return pair_lengths(tokenizer, records) if self.bi else super().input_lengths(tokenizer, records)

    def collate(self, items: Sequence[dict[str, Any]], pad_id: int) -> dict[str, torch.Tensor]:
        if not self.bi:
            return super().collate(items, pad_id)
        batch = collate_pairs(items, pad_id)
        if "labels" in items[0]:
            batch.update(self.collate_targets(items))
        return batch

    def explanation_inputs(self, tokenizer: Any, record: Record, max_length: int):
        if self.bi:
            raise ConfigError("explain: a bi-encoder (task.pair_encoding: bi) reads its two texts as two inputs, "
                              "which explain does not attribute yet; explain a cross-encoder run instead")
        return super().explanation_inputs(tokenizer, record, max_length)

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


def _check_bi(task: RegressionSettings, data: DataConfig) -> None:
    problems = []
    if not data.text_pair_column:
        problems.append("task.pair_encoding: bi compares two texts; set data.text_pair_column, or use cross")
    if task.long_inputs == "windows":
        problems.append("task.long_inputs: windows makes several inputs of one long text, and a bi-encoder "
                        "embeds each text in one pass; use truncate or head-tail (train resolves this itself)")
    if task.pooling == "cls":
        problems.append("task.pooling: cls; a bi-encoder embeds each text by the mean of its token states: set "
                        "task.pooling to mean or auto")
    if problems:
        raise ConfigError(problems)


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
