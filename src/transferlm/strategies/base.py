"""Strategies decide what part of the pretrained model adapts. They act before the training loop."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass

from torch import nn

from transferlm.config.schema import StrategyConfig, TrainConfig
from transferlm.registry import Registry
from transferlm.tasks.base import Task

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ParameterCount:
    trainable: int
    total: int

    @property
    def fraction(self) -> float:
        return self.trainable / self.total if self.total else 0.0

    def describe(self) -> str:
        return f"trainable parameters: {self.trainable:,} of {self.total:,} ({100 * self.fraction:.2f}%)"


def count_parameters(model: nn.Module) -> ParameterCount:
    params = list(model.parameters())
    return ParameterCount(sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params))


class Strategy(ABC):
    name: str

    def __init__(self, config: StrategyConfig):
        self.config = config

    @abstractmethod
    def apply(self, model: nn.Module, task: Task) -> nn.Module:
        """Freeze/wrap the model; return the module to train (may be a wrapper)."""

    def on_train_mode(self, model: nn.Module) -> None:  # noqa: B027 (optional hook, not abstract)
        """Called after ``model.train()`` each step; a strategy may put fixed parts back in eval mode."""
        return None  # noqa: B027 (an optional hook, deliberately not abstract)

    def param_groups(self, model: nn.Module, train: TrainConfig) -> list[dict]:
        """AdamW groups: no weight decay on biases and normalisation weights (BERT's recipe)."""
        decay, no_decay = [], []
        for _name, param in model.named_parameters():
            if not param.requires_grad:
                continue
            (no_decay if param.ndim < 2 else decay).append(param)
        return [{"params": decay, "weight_decay": train.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


STRATEGIES: Registry[type[Strategy]] = Registry("strategy")


def build_strategy(config: StrategyConfig) -> Strategy:
    return STRATEGIES.get(config.name)(config)
