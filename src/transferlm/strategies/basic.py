"""Strategies that choose which existing parameters train: full, frozen, last-n, bitfit."""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import Literal

from pydantic import Field
from torch import nn

from transferlm.config.selected import StrategySettings
from transferlm.errors import ConfigError
from transferlm.strategies.base import Adapting, LoopContext, Strategy, TrainingInputs, register_strategy
from transferlm.strategies.feature_cache import CachedFeatureTask, cache_features
from transferlm.strategies.layers import plain_name
from transferlm.tasks.base import Task

log = logging.getLogger(__name__)


class FullSettings(Adapting):
    name: Literal["full"] = "full"


class FrozenSettings(StrategySettings):
    name: Literal["frozen"] = "frozen"
    cache_features: bool = Field(
        True,
        description="Compute the backbone's outputs once and train the head on them (same result, one inference "
        "pass instead of a forward pass per epoch).",
    )


class LastNSettings(Adapting):
    name: Literal["last-n"] = "last-n"
    layers: int = Field(gt=0, description="How many top transformer layers train (required).")


class BitFitSettings(Adapting):
    name: Literal["bitfit"] = "bitfit"


class FullFineTuning(Strategy):
    """Everything trains."""

    name = "full"
    settings = FullSettings

    def trainable(self, model: nn.Module, task: Task) -> set[str]:
        return {name for name, _ in model.named_parameters()}


class FrozenBackbone(Strategy):
    """The pretrained backbone is fixed (and kept in eval mode: no dropout); only the new head trains."""

    name = "frozen"
    settings = FrozenSettings
    default_lr = 1e-3  # a head alone (bench/README.md: the linear probe)

    def trainable(self, model: nn.Module, task: Task) -> set[str]:
        if not task.has_new_head:
            raise ConfigError(
                f"strategy frozen trains only a new task head, and {task.name} adds none (it trains the model's "
                "own pretrained head); use lora, last-n or full"
            )
        return task.head_parameter_names(model)

    def on_train_mode(self, model: nn.Module) -> None:
        # A fixed backbone gives the head the same features as at inference: no dropout noise.
        backbone = getattr(model, model.base_model_prefix)
        if backbone.training:  # a head over cached features never switches it back: skip the walk
            backbone.eval()

    def training_inputs(self, inputs: TrainingInputs, context: LoopContext) -> TrainingInputs:
        """With ``cache_features``: the head over the backbone's outputs, computed once, where the task can split
        the model (otherwise the backbone runs every step, as it says)."""
        if not self.config.cache_features:
            return inputs
        head = inputs.task.feature_head(inputs.module)
        if head is None:
            reason = f"task {inputs.task.name} cannot split {type(inputs.module).__name__} into backbone and head"
            log.warning("frozen: features not cached (%s); the backbone runs every step", reason)
            return replace(inputs, notes={**inputs.notes, "cached_features": False, "cache_reason": reason})
        began = time.perf_counter()
        head.to(context.device)  # the backbone runs where training will (the loop has not moved it yet)

        def cache(features):
            return cache_features(head, inputs.task, features, context.pad_id, context.batch_size, context.device,
                                  context.autocast)

        train, validation = cache(inputs.train), cache(inputs.validation)
        notes = {"cached_features": True, "feature_cache_seconds": round(time.perf_counter() - began, 2)}
        return TrainingInputs(head, CachedFeatureTask(inputs.task, head), train, validation, {**inputs.notes, **notes})


class LastLayers(Strategy):
    """The top N transformer layers (and anything above them) train with the head; the rest is fixed."""

    name = "last-n"
    settings = LastNSettings
    needs_layers = True

    def trainable(self, model: nn.Module, task: Task) -> set[str]:
        total = self.layer_map.num_layers
        n = self.config.layers
        if n > total:
            raise ConfigError(
                f"strategy.layers is {n}; this model has {total} transformer layers ({self.layer_map.describe()}), "
                f"so choose 1..{total} (or strategy full to train all, frozen to train none)"
            )
        lowest = total - n + 1
        return {name for name, _ in model.named_parameters() if self.layer_map.depth(name) >= lowest}


class BiasOnly(Strategy):
    """BitFit (Ben Zaken et al., 2022): only the bias terms of the backbone train, with the head."""

    name = "bitfit"
    settings = BitFitSettings
    default_lr = 5e-4  # BitFit's paper range (1e-4..1e-3)

    def trainable(self, model: nn.Module, task: Task) -> set[str]:
        head = task.head_parameter_names(model)
        biases = {name for name, _ in model.named_parameters() if plain_name(name).endswith(".bias")} - head
        if not biases:
            raise ConfigError(
                f"strategy bitfit: {type(model).__name__} has no bias parameters in its backbone, so only the "
                "head would train; use strategy frozen for that, or lora"
            )
        return head | biases


register_strategy(FullFineTuning)
register_strategy(FrozenBackbone)
register_strategy(LastLayers)
register_strategy(BiasOnly)
