"""Batched inference in length order (little padding), results returned in input order.

A backend is any ``forward(batch) -> tensor`` on a collated batch (targets included): the torch model behind
``torch_forward``, which lets the task call it (``task.forward``), or a callable of the model inputs alone, such as an
ONNX Runtime session (``inference.onnx_runtime.OnnxForward``), behind ``on_inputs``. The task batches the items and
cuts the rows either way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from torch import nn

from transferlm.tasks.base import INFERENCE_BATCH_TOKENS, Features
from transferlm.tasks.protocol import LoopTask


def inference_order(lengths: Sequence[int], batch_size: int,
                    max_tokens: int = INFERENCE_BATCH_TOKENS) -> list[list[int]]:
    """Length-sorted batches for inference (minimal padding) of at most ``batch_size`` items and ``max_tokens``
    padded tokens (an item longer than that alone); callers restore the input order."""
    order = sorted(range(len(lengths)), key=lambda j: lengths[j])
    batches: list[list[int]] = []
    for j in order:
        # ascending lengths: the item being added is the batch's longest
        if batches and len(batches[-1]) < batch_size and (len(batches[-1]) + 1) * lengths[j] <= max_tokens:
            batches[-1].append(j)
        else:
            batches.append([j])
    return batches


Forward = Callable[[dict[str, torch.Tensor]], torch.Tensor]


def torch_forward(model: nn.Module, task: LoopTask) -> Forward:
    """The torch backend: the model called by the task, its outputs reduced to the tensor the task keeps."""
    return lambda batch: task.logits(task.forward(model, batch))


def on_inputs(forward: Callable[..., torch.Tensor], task: LoopTask) -> Forward:
    """A backend that takes the model inputs as keyword arguments (an ONNX session, a feature extractor)."""
    return lambda batch: forward(**task.model_inputs(batch))


@torch.no_grad()
def map_batches(
    forward: Forward,
    task: LoopTask,
    features: Features,
    pad_id: int,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
    autocast: Callable[[], AbstractContextManager[Any]] = nullcontext,
) -> list[torch.Tensor]:
    """``forward(batch)`` over all items: one output row per item (float32, CPU, unpadded)."""
    rows: list[torch.Tensor] = [None] * len(features)  # type: ignore[list-item]
    for indices in inference_order(features.lengths, batch_size, task.inference_batch_tokens):
        items = [features.items[i] for i in indices]
        batch = {k: v.to(device) for k, v in task.collate(items, pad_id).items()}
        with autocast():
            result = forward(batch).float()
        # Rows are cut (or reduced: a language model's per-token losses) where the output is, then moved: a
        # batch's full-vocabulary logits never travel to the CPU.
        for i, row in zip(indices, task.output_rows(result, items), strict=True):
            rows[i] = row.cpu()
    return rows


def run_inference(
    model: nn.Module,
    task: LoopTask,
    features: Features,
    pad_id: int,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
    autocast: Callable[[], AbstractContextManager[Any]] = nullcontext,
) -> list[torch.Tensor]:
    """The task's output row (``task.logits``) for every item, in input order; model in eval mode meanwhile."""
    was_training = model.training
    model.eval()
    try:
        return map_batches(torch_forward(model, task), task, features, pad_id, batch_size, device, autocast)
    finally:
        model.train(was_training)
