"""What the training loop, evaluation and batched inference call on a task: ``LoopTask``.

Every ``Task`` is one. A strategy may hand the loop a task of its own instead (the frozen strategy's
``CachedFeatureTask``, contrastive's ``PairTask``): it implements these members, openly, and nothing else of the
task reaches the loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import torch

from transferlm.tasks.base import Features, LossTerms

Batch = dict[str, torch.Tensor]
Items = Sequence[dict[str, Any]]


@runtime_checkable
class LoopTask(Protocol):
    unit_name: str  # what the training set is counted in (examples, pairs), for the run's log
    inference_batch_tokens: int  # padded tokens per inference forward pass, at most

    def training_collate(self, items: Items, pad_id: int) -> Batch:
        """A training batch (may draw afresh each time, e.g. masked-lm's masks)."""

    def collate(self, items: Items, pad_id: int) -> Batch:
        """A deterministic batch, for evaluation and inference."""

    def model_inputs(self, batch: Batch) -> Batch:
        """The part of a batch the module takes as keyword arguments."""

    def forward(self, module: Any, batch: Batch) -> Any:
        """The module's outputs on a batch (targets included: a task may skip outputs that no target reads)."""

    def loss_units(self, items: Items) -> int:
        """What ``loss`` sums over in these items; the loop divides by the total of an optimizer step."""

    def loss(self, outputs: Any, batch: Batch) -> LossTerms:
        """The un-normalised loss of the module's outputs on a batch."""

    def logits(self, outputs: Any) -> torch.Tensor:
        """The tensor inference keeps from the module's outputs."""

    def output_rows(self, output: torch.Tensor, items: Items) -> list[torch.Tensor]:
        """A batch's kept output, one unpadded row per item."""

    def metrics(self, outputs: Sequence[torch.Tensor], features: Features) -> dict[str, Any]:
        """Metrics of the output rows of ``features``' items."""

    def greater_is_better(self, metric: str) -> bool:
        """Whether a higher value of ``metric`` is an improvement (picks the best checkpoint)."""

