"""Batched inference in length order (little padding), results returned in input order."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from torch import nn

from transferlm.tasks.base import Features, Task
from transferlm.training.sampler import inference_order


@torch.no_grad()
def map_batches(
    forward: Callable[..., torch.Tensor],
    task: Task,
    features: Features,
    pad_id: int,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
    autocast: Callable[[], AbstractContextManager[Any]] = nullcontext,
) -> tuple[list[torch.Tensor], list[torch.Tensor] | None]:
    """``forward(**model_inputs)`` over all examples: per-example output rows (float32, CPU) and targets."""
    outputs: list[torch.Tensor] = [None] * len(features)  # type: ignore[list-item]
    targets: list[torch.Tensor] = [None] * len(features)  # type: ignore[list-item]
    has_labels = len(features) > 0 and "labels" in features.items[0]
    for indices in inference_order(features.lengths, batch_size):
        batch = task.collate([features.items[i] for i in indices], pad_id)
        inputs = {k: v.to(device) for k, v in task.model_inputs(batch).items()}
        with autocast():
            result = forward(**inputs).float().cpu()
        for row, i in enumerate(indices):
            outputs[i] = result[row]
            if has_labels:
                targets[i] = batch["labels"][row]
    return outputs, targets if has_labels else None


def run_inference(
    model: nn.Module,
    task: Task,
    features: Features,
    pad_id: int,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
    autocast: Callable[[], AbstractContextManager[Any]] = nullcontext,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Return (outputs, targets) for every example; targets is None when the features carry no labels."""
    was_training = model.training
    model.eval()
    try:
        outputs, targets = map_batches(
            lambda **inputs: model(**inputs).logits, task, features, pad_id, batch_size, device, autocast
        )
    finally:
        model.train(was_training)
    if not outputs:
        return torch.empty(0), None
    return torch.stack(outputs), torch.stack(targets) if targets is not None else None
