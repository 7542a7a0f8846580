"""Frozen-backbone training on cached features: one inference pass, then the head trains alone.

The backbone runs once in eval mode (no dropout), exactly as the uncached ``frozen`` strategy keeps it,
so both train the same head on the same numbers up to floating-point rounding of different padding.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import replace
from typing import Any

import torch

from transferlm.inference.batches import map_batches, on_inputs
from transferlm.tasks.base import INFERENCE_BATCH_TOKENS, Features, LossTerms, Task
from transferlm.tasks.heads import FeatureHead

log = logging.getLogger(__name__)


class CachedFeatureTask:
    """The loop's task for a head over cached features (a ``LoopTask``): batches carry the cached features instead
    of the backbone's inputs; the head's outputs are the model's, so loss, outputs and metrics are the task's."""

    unit_name = "examples"
    inference_batch_tokens = INFERENCE_BATCH_TOKENS

    def __init__(self, task: Task, head: FeatureHead):
        self.task, self.head = task, head

    def collate(self, items: Sequence[dict[str, Any]], pad_id: int) -> dict[str, torch.Tensor]:
        batch = self.task.collate_targets(items) if "labels" in items[0] else {}
        batch["features"] = self.head.collate_features([item["features"] for item in items])
        return batch

    training_collate = collate  # (not the task's: that one collates the backbone's inputs)

    def model_inputs(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"features": batch["features"]}

    def forward(self, module: torch.nn.Module, batch: dict[str, torch.Tensor]) -> Any:
        return module(**self.model_inputs(batch))

    # --- the task's own ---
    def loss_units(self, items: Sequence[dict[str, Any]]) -> int:
        return self.task.loss_units(items)

    def loss(self, outputs: Any, batch: dict[str, torch.Tensor]) -> LossTerms:
        return self.task.loss(outputs, batch)

    def logits(self, outputs: Any) -> torch.Tensor:
        return self.task.logits(outputs)

    def output_rows(self, output: torch.Tensor, items: Sequence[dict[str, Any]]) -> list[torch.Tensor]:
        return self.task.output_rows(output, items)

    def metrics(self, outputs: Sequence[torch.Tensor], features: Features) -> dict[str, Any]:
        return self.task.metrics(outputs, features)

    def greater_is_better(self, metric: str) -> bool:
        return self.task.greater_is_better(metric)


def cache_features(
    head: FeatureHead,
    task: Task,
    features: Features,
    pad_id: int,
    batch_size: int,
    device: torch.device | str,
    autocast: Callable[[], AbstractContextManager[Any]] = nullcontext,
) -> Features:
    """``features`` with each item extended by the fixed backbone's output for it."""
    began = time.perf_counter()
    extract = on_inputs(head.extract, task)
    rows = map_batches(extract, task, features, pad_id, batch_size, device, autocast)  # backbone: eval
    items = [{**item, "features": row} for item, row in zip(features.items, rows, strict=True)]
    log.info("cached backbone features of %d examples in %.1f s", len(items), time.perf_counter() - began)
    return replace(features, items=items)
