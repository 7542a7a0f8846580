"""Where a model's transformer layers are, so strategies can freeze, decay or unfreeze by depth.

Depth 0 is the embeddings, 1..L the transformer layers bottom-up, L+1 the task head. Parameters of the
backbone outside the layers are placed by where the model registers them: before the layer stack
(embeddings: BERT's ``embeddings``, Llama's ``embed_tokens``, GPT-2's ``wte``/``wpe``) at depth 0, after
it (a final norm) in the top layer. The map is built on the
plain model and also reads names of the same model wrapped by peft.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from torch import nn

from transferlm.errors import ConfigError

# peft adds these around the names of wrapped modules; stripping them gives the plain model's names.
_PEFT_INFIXES = (".modules_to_save.default.", ".original_module.", ".base_layer.")


def plain_name(name: str) -> str:
    name = name.removeprefix("base_model.model.")
    for infix in _PEFT_INFIXES:
        name = name.replace(infix, ".")
    return name


def find_layer_stack(model: nn.Module) -> tuple[str, int]:
    """The dotted path and length of the longest ModuleList of identical blocks: the transformer layers."""
    best: tuple[str, int] | None = None
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) > 1 and len({type(m) for m in module}) == 1:
            if best is None or len(module) > best[1]:
                best = (name, len(module))
    if best is None:
        raise ConfigError(
            f"{type(model).__name__} has no stack of transformer layers that a layer-wise strategy could use; "
            "use strategy full, frozen, lora or bitfit"
        )
    return best


@dataclass(frozen=True)
class LayerMap:
    layers_path: str
    num_layers: int
    head: frozenset[str]  # plain names of the task head's parameters
    below: frozenset[str]  # plain names of the parameters registered before the layer stack

    @classmethod
    def of(cls, model: nn.Module, head: set[str]) -> LayerMap:
        path, count = find_layer_stack(model)
        below = []
        for name, _ in model.named_parameters():
            if name.startswith(f"{path}."):
                break
            below.append(plain_name(name))
        return cls(path, count, frozenset(head), frozenset(below) - frozenset(head))

    @property
    def head_depth(self) -> int:
        return self.num_layers + 1

    def depth(self, name: str) -> int:
        plain = plain_name(name)
        if plain in self.head:
            return self.head_depth
        match = re.search(rf"(?:^|\.){re.escape(self.layers_path)}\.(\d+)\.", plain)
        if match:
            return int(match.group(1)) + 1
        if plain in self.below:
            return 0
        return self.num_layers  # e.g. a final norm above the last layer

    def describe(self) -> str:
        return f"{self.num_layers} layers at {self.layers_path}"
