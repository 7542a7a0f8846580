"""The one training loop, shared by every task and strategy.

It yields after each optimizer step; evaluation, logging, checkpointing and early stopping are
done by whoever consumes it (``training.fit``). It runs unchanged on one process or under DDP.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from torch import nn

from transferlm.config.schema import TrainConfig
from transferlm.inference.batches import run_inference
from transferlm.strategies.base import DEFAULT_BUDGET, EpochBudget, Strategy
from transferlm.tasks.base import Features
from transferlm.tasks.protocol import LoopTask
from transferlm.training.checkpoint import TrainState, load_checkpoint, save_checkpoint
from transferlm.training.sampler import max_batch_tokens, plan_epoch, shard, token_chunks


@dataclass(frozen=True)
class StepResult:
    step: int
    epoch: int
    epoch_finished: bool
    loss: float  # mean loss per unit (example; token for tagging) over this step's global batch
    lr: float
    samples: int  # examples in this step, all processes together
    seconds: float


def linear_warmup_decay(warmup: int, total: int):
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total - step) / max(1, total - warmup))

    return factor


class TrainingLoop:
    def __init__(
        self,
        model: nn.Module,
        task: LoopTask,
        strategy: Strategy,
        features: Features,
        config: TrainConfig,
        accelerator: Accelerator,
        pad_id: int,
        budget: EpochBudget = DEFAULT_BUDGET,
    ):
        self.task, self.features, self.config, self.pad_id = task, features, config, pad_id
        self.strategy = strategy
        self.accelerator = accelerator
        self.global_batch = config.batch_size * accelerator.num_processes
        self.max_tokens = max_batch_tokens(config, accelerator.device.type)
        batches = math.ceil(len(features) / self.global_batch)
        self.steps_per_epoch = math.ceil(batches / config.grad_accum)
        self.epochs = strategy.auto_epochs(self.steps_per_epoch, budget) if config.epochs == "auto" else config.epochs
        self.total_steps = config.max_steps or max(math.ceil(self.epochs * self.steps_per_epoch),
                                                   config.min_steps or 0)
        optimizer = torch.optim.AdamW(
            strategy.param_groups(model, config), lr=config.lr, fused=accelerator.device.type in ("cpu", "cuda")
        )
        warmup = int(config.warmup_ratio * self.total_steps)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, linear_warmup_decay(warmup, self.total_steps))
        self.model, self.optimizer = accelerator.prepare(model, optimizer)
        self.scheduler = scheduler
        self.state = TrainState()

    @property
    def unwrapped(self) -> nn.Module:
        return self.accelerator.unwrap_model(self.model)

    def finished(self) -> bool:
        return self.state.step >= self.total_steps

    def steps(self) -> Iterator[StepResult]:
        while not self.finished():
            plan = plan_epoch(
                self.features.lengths,
                self.global_batch,
                self.config.seed,
                self.state.epoch,
                self.config.group_by_length,
            )
            if self.accelerator.num_processes > 1:
                plan = [b for b in plan if len(b) >= self.accelerator.num_processes]  # every rank needs data
            self.strategy.on_epoch(self.unwrapped, self.state.epoch)
            while self.state.batches_done_in_epoch < len(plan) and not self.finished():
                start = self.state.batches_done_in_epoch
                window = plan[start : start + self.config.grad_accum]
                result = self._step(window, epoch_finished=start + len(window) >= len(plan))
                yield result
            if self.state.batches_done_in_epoch >= len(plan):
                self.state.epoch += 1
                self.state.batches_done_in_epoch = 0

    def _step(self, window: list[list[int]], epoch_finished: bool) -> StepResult:
        began = time.perf_counter()
        self.model.train()
        self.strategy.on_train_mode(self.unwrapped)
        rank, world = self.accelerator.process_index, self.accelerator.num_processes
        # What the loss sums over in this optimizer step, all processes (known to each: the plan is global).
        count = sum(self.task.loss_units([self.features.items[j] for j in b]) for b in window)
        examples = sum(len(b) for b in window)
        loss_sum = torch.zeros((), device=self.accelerator.device)
        passes = [chunk for b in window
                  for chunk in token_chunks(shard(b, rank, world), self.features.lengths, self.max_tokens)]
        for i, chunk in enumerate(passes):
            items = [self.features.items[j] for j in chunk]
            collated = self.task.training_collate(items, self.pad_id)
            batch = {k: v.to(self.accelerator.device) for k, v in collated.items()}
            sync = i == len(passes) - 1
            with nullcontext() if sync else self.accelerator.no_sync(self.model), self.accelerator.autocast():
                terms = self.task.loss(self.task.forward(self.model, batch), batch)
                # DDP averages gradients over processes; scaling by world/count makes the result
                # sum(loss)/count over the whole step, however it was split into micro-batches.
                self.accelerator.backward(terms.total * world / (count or 1))
            loss_sum += terms.total.detach()
        if self.config.max_grad_norm:
            self.accelerator.clip_grad_norm_(self.model.parameters(), self.config.max_grad_norm)
        lr = self.scheduler.get_last_lr()[0]
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.state.step += 1
        self.state.batches_done_in_epoch += len(window)
        self.state.samples_seen += examples
        loss = self.accelerator.reduce(loss_sum, reduction="sum").item() / (count or 1)
        return StepResult(
            self.state.step, self.state.epoch, epoch_finished, loss, lr, examples, time.perf_counter() - began
        )

    def evaluate(self, features: Features) -> dict[str, Any]:
        outputs = run_inference(
            self.unwrapped,
            self.task,
            features,
            self.pad_id,
            batch_size=max(64, self.config.batch_size),
            device=self.accelerator.device,
            autocast=self.accelerator.autocast,
        )
        return self.task.metrics(outputs, features)

    def save(self, path: Path) -> None:
        if self.accelerator.is_main_process:
            save_checkpoint(path, self.unwrapped, self.optimizer, self.scheduler, self.state)
        self.accelerator.wait_for_everyone()

    def resume(self, path: Path) -> None:
        self.state = load_checkpoint(path, self.unwrapped, self.optimizer, self.scheduler)
