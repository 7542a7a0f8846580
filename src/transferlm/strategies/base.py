"""Strategies decide what part of the pretrained model adapts. They act before the training loop.

A strategy picks the parameters that train (``trainable``); the two modifiers work on top of that
choice by depth: layer-wise learning-rate decay (one AdamW group per depth) and gradual unfreezing
(``on_epoch`` opens one more layer group, top down, each epoch).

A strategy may also change what the one loop trains on and finish the model after it: ``training_inputs``
swaps the module, task and examples (frozen: a head over cached backbone features; contrastive: a sentence
encoder on pairs of examples), and ``finish`` completes the model from the trained module (contrastive: fits
the head). Whatever a strategy swaps in, the run directory holds the task's usual model.
"""

from __future__ import annotations

import logging
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field
from torch import nn

from transferlm.config.schema import TrainConfig
from transferlm.config.selected import STRATEGY_SETTINGS, StrategySettings
from transferlm.errors import ConfigError
from transferlm.registry import Registry
from transferlm.strategies.layers import LayerMap
from transferlm.tasks.base import Features, Task
from transferlm.tasks.protocol import LoopTask

log = logging.getLogger(__name__)



class LayerDecay(StrategySettings):
    """Layer-wise learning-rate decay, for strategies that train layers of the backbone."""

    layer_lr_decay: float = Field(
        1.0,
        gt=0,
        le=1,
        description="Layer-wise learning-rate decay: the head trains at train.lr, the layer k below it at "
        "lr * decay**k, embeddings lowest (1 = off; 0.8-0.95 is usual).",
    )


class Adapting(LayerDecay):
    """Both modifiers: the settings of strategies that train the head together with (part of) the backbone."""

    gradual_unfreeze: bool = Field(
        False,
        description="Train only the head in the first epoch and unfreeze one more layer group (top down) "
        "each epoch (ULMFiT).",
    )


@dataclass(frozen=True)
class ParameterCount:
    trainable: int
    total: int

    @property
    def fraction(self) -> float:
        return self.trainable / self.total if self.total else 0.0

    def describe(self) -> str:
        return f"trainable parameters: {self.trainable:,} of {self.total:,} ({100 * self.fraction:.2f}%)"


@dataclass
class TrainingInputs:
    """What the loop trains: a module, the task that batches and scores it, training and validation examples.
    ``notes`` go into the run's metrics (e.g. whether features were cached)."""

    module: nn.Module
    task: LoopTask
    train: Features
    validation: Features
    notes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LoopContext:
    """What a strategy needs to compute anything before or after the loop: where it runs, and its seed."""

    device: Any
    autocast: Any
    pad_id: int
    batch_size: int  # for inference passes
    seed: int


def count_parameters(model: nn.Module) -> ParameterCount:
    params = list(model.parameters())
    return ParameterCount(sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params))


AUTO_EPOCHS, AUTO_MIN_STEPS, AUTO_MAX_EPOCHS = 3, 300, 30


@dataclass(frozen=True)
class EpochBudget:
    """What ``train.epochs: auto`` aims at: ``epochs`` passes, raised on small data so that training takes at least
    ``min_steps`` optimizer steps, at most ``max_epochs`` (``runs/recipes.py`` picks one per task and data size)."""

    epochs: float = AUTO_EPOCHS
    min_steps: int = AUTO_MIN_STEPS
    max_epochs: float = AUTO_MAX_EPOCHS


DEFAULT_BUDGET = EpochBudget()


class Strategy(ABC):
    name: str
    settings: ClassVar[type[StrategySettings]]  # the strategy's own settings: the keys of the run's ``strategy:``
    needs_layers = False  # whether trainable() reads self.layer_map
    default_lr = 5e-5  # train.lr: auto (BERT's fine-tuning range)

    def auto_epochs(self, steps_per_epoch: int, budget: EpochBudget = DEFAULT_BUDGET) -> float:
        """train.epochs: auto. By default three epochs, raised on small data so that training takes at least
        300 optimizer steps (a few dozen steps undertrain: 600 SST-2 rows, 3 epochs at batch 32 gave 71.7 % against
        75.7 % for 150 steps at batch 8), at most 30. The best evaluation picks the checkpoint, so the extra epochs
        cost time, not accuracy."""
        raised = math.ceil(budget.min_steps / max(steps_per_epoch, 1))
        return float(min(max(budget.epochs, raised), budget.max_epochs))

    def __init__(self, config: StrategySettings):
        if not isinstance(config, self.settings):
            raise ConfigError(f"strategy: strategy {self.name} takes {self.settings.__name__}, got "
                              f"{type(config).__name__}; build it with strategy_settings({self.name!r}, ...)")
        self.config = config
        self.layer_map: LayerMap | None = None
        self.chosen: set[str] = set()  # names of the parameters this strategy trains (at the end, if gradual)
        # The modifiers, off for strategies whose settings lack them (nothing of the backbone trains layer by layer).
        self.layer_lr_decay: float = getattr(config, "layer_lr_decay", 1.0)
        self.gradual_unfreeze: bool = getattr(config, "gradual_unfreeze", False)

    @property
    def uses_depth(self) -> bool:
        return self.layer_lr_decay < 1 or self.gradual_unfreeze

    @abstractmethod
    def trainable(self, model: nn.Module, task: Task) -> set[str]:
        """Names of the parameters that train."""

    def apply(self, model: nn.Module, task: Task) -> nn.Module:
        """Freeze (or wrap) the model; return the module to train."""
        self.inspect(model, task)
        self.chosen = self.trainable(model, task)
        for name, param in model.named_parameters():
            param.requires_grad_(name in self.chosen)
        return model

    def inspect(self, model: nn.Module, task: Task) -> set[str]:
        """The head's parameter names (there must be some); maps the layers when anything needs depth."""
        head = task.head_parameter_names(model)
        if not head and task.has_new_head:
            raise ConfigError(f"strategy {self.name}: found no task-head parameters in {type(model).__name__}")
        if self.uses_depth or self.needs_layers:
            self.layer_map = LayerMap.of(model, head)
        return head

    # --- hooks called by the training loop ---
    def on_train_mode(self, model: nn.Module) -> None:  # noqa: B027 (optional hook, not abstract)
        """Called after ``model.train()`` each step; a strategy may put fixed parts back in eval mode."""

    def on_epoch(self, model: nn.Module, epoch: int) -> None:
        """Gradual unfreezing: in epoch e the head and the e layer groups below it train."""
        if not self.gradual_unfreeze:
            return
        # Epoch 0 opens the head; a task without a new head (language modelling) starts at the top layer.
        top = self.layer_map.head_depth if self.layer_map.head else self.layer_map.num_layers
        lowest = top - epoch
        opened = 0
        for name, param in model.named_parameters():
            if name in self.chosen:
                param.requires_grad_(self.layer_map.depth(name) >= lowest)
                opened += param.numel() if param.requires_grad else 0
        log.info(
            "gradual unfreezing, epoch %d: depth >= %d trains (%s parameters)", epoch, max(lowest, 0), f"{opened:,}"
        )

    def param_groups(self, model: nn.Module, train: TrainConfig) -> list[dict]:
        """AdamW groups: no weight decay on biases and norms (BERT's recipe); with layer-wise decay, one
        pair of groups per depth at lr * decay**(distance below the head). The head's group comes first."""
        decay_rate = self.layer_lr_decay
        groups: dict[tuple[int, bool], list] = {}
        for name, param in model.named_parameters():
            if not param.requires_grad:
                continue
            depth = self.layer_map.depth(name) if decay_rate < 1 else 0
            groups.setdefault((depth, param.ndim >= 2), []).append(param)
        top = self.layer_map.head_depth if decay_rate < 1 else 0
        result = []
        for (depth, decays), params in sorted(groups.items(), key=lambda kv: (-kv[0][0], not kv[0][1])):
            result.append(
                {
                    "params": params,
                    "weight_decay": train.weight_decay if decays else 0.0,
                    "lr": train.lr * decay_rate ** (top - depth),
                }
            )
        return result

    # --- what the loop trains on, and what follows it ---
    def training_inputs(self, inputs: TrainingInputs, context: LoopContext) -> TrainingInputs:
        """The loop's inputs; by default the model and the task's examples as they are."""
        return inputs

    def finish(self, inputs: TrainingInputs, context: LoopContext) -> dict[str, Any]:
        """Complete the task's model after the loop (which has restored its best weights); returns notes for the
        run's metrics. By default there is nothing to do."""
        return {}

    # --- saving and loading the trained model ---
    def save(self, model: nn.Module, task: Task, root: Path) -> None:
        task.save_model(model, root)

    def load(self, task: Task, root: Path, base: Any) -> nn.Module:
        """``base`` resolves the pretrained model (path, tokenizer) for strategies that save only a delta."""
        return task.load_model(root)

    def resolved(self) -> StrategySettings:
        """The config with defaults chosen at run time filled in, to be saved with the run."""
        return self.config


STRATEGIES: Registry[type[Strategy]] = Registry("strategy", plugins="transferlm.strategies")


def register_strategy(strategy: type[Strategy]) -> type[Strategy]:
    """Register a strategy and its settings class under the strategy's name (one call per strategy)."""
    declared = strategy.settings.model_fields["name"].default
    if declared != strategy.name:
        raise ValueError(f"{strategy.__name__}.settings declares name {declared!r}, not {strategy.name!r}")
    STRATEGIES.register(strategy.name, strategy)
    STRATEGY_SETTINGS.register(strategy.name, strategy.settings)
    return strategy


def build_strategy(config: StrategySettings) -> Strategy:
    return STRATEGIES.get(config.name)(config)
