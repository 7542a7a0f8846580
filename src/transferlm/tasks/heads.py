"""A task head split from its backbone, so a frozen backbone's outputs can be computed once.

``FeatureHead`` keeps the whole model as its submodule: its state dict, checkpoints and the trained
head's parameters are the full model's, and after training the full model carries the trained head.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn


class FeatureHead(nn.Module):
    base_model_prefix = "backbone"  # what FrozenBackbone.on_train_mode puts in eval mode

    def __init__(
        self,
        model: nn.Module,
        extract: Callable[..., torch.Tensor],
        head: Callable[[torch.Tensor], Any],
        collate_features: Callable[[list[torch.Tensor]], torch.Tensor] = torch.stack,
    ):
        super().__init__()
        self.model = model
        self.extract = extract  # model inputs -> per-example features of the fixed backbone
        self._head = head  # features -> the model's usual outputs
        self.collate_features = collate_features
        prefix = f"{model.base_model_prefix}."
        # The modules outside the backbone (the head's dropout, classifier): train()/eval() switch only
        # these. Walking the whole backbone every step would cost more than the head's own step.
        self._head_modules = [m for name, m in model.named_modules() if name and not name.startswith(prefix)]
        self.backbone.eval()

    def train(self, mode: bool = True) -> FeatureHead:
        self.training = mode
        self.model.training = mode
        for module in self._head_modules:
            module.training = mode
        return self

    @property
    def backbone(self) -> nn.Module:
        return getattr(self.model, self.model.base_model_prefix)

    def forward(self, features: torch.Tensor) -> Any:
        return self._head(features)
