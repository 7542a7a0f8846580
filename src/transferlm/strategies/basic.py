"""``full``: everything trains. ``frozen``: the pretrained backbone is fixed and only the new head trains."""

from __future__ import annotations

from torch import nn

from transferlm.errors import ConfigError
from transferlm.strategies.base import STRATEGIES, Strategy
from transferlm.tasks.base import Task


class FullFineTuning(Strategy):
    name = "full"

    def apply(self, model: nn.Module, task: Task) -> nn.Module:
        for param in model.parameters():
            param.requires_grad_(True)
        return model


class FrozenBackbone(Strategy):
    name = "frozen"

    def apply(self, model: nn.Module, task: Task) -> nn.Module:
        head = task.head_parameter_names(model)
        if not head:
            raise ConfigError(
                f"strategy.name: frozen found no task-head parameters in {type(model).__name__}; use strategy full"
            )
        for name, param in model.named_parameters():
            param.requires_grad_(name in head)
        return model

    def on_train_mode(self, model: nn.Module) -> None:
        # A fixed backbone gives the head the same features as at inference: no dropout noise.
        getattr(model, model.base_model_prefix).eval()


STRATEGIES.register("full", FullFineTuning)
STRATEGIES.register("frozen", FrozenBackbone)
